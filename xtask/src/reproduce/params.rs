//! Table 5: trainable parameters per block, counted on the models
//! themselves (no training needed).

use anyhow::Result;
use noprop_models::{
    ClassEmbedding, ContConfig, ContMethod, DtConfig, EmbeddingKind, NoPropCont, NoPropDt,
};
use noprop_tensor::{DType, Tensor};
use serde::Serialize;

/// One row of Table 5.
#[derive(Clone, Debug, Serialize)]
pub struct ParamRow {
    /// Dataset.
    pub dataset: &'static str,
    /// Embedding.
    pub embedding: &'static str,
    /// Label dimension d.
    pub label_dim: usize,
    /// Trainable scalars of one DT block.
    pub dt: usize,
    /// Trainable scalars of the CT/FM network (`None` where the paper has
    /// no CT model: Tiny ImageNet).
    pub ct: Option<usize>,
}

fn embedding(kind: EmbeddingKind, classes: usize, d_img: usize) -> Result<ClassEmbedding> {
    Ok(match kind {
        EmbeddingKind::OneHot => ClassEmbedding::one_hot(classes),
        EmbeddingKind::Learned { dim } => ClassEmbedding::learned(classes, dim, 0),
        // Values do not matter for a count; the shape does.
        EmbeddingKind::Prototype => {
            ClassEmbedding::from_saved(kind, &Tensor::zeros(&[classes, d_img], DType::F32))?
        }
    })
}

/// Counts for the eleven dataset × embedding cells of Table 5: nine for
/// MNIST and CIFAR, and v2's two Tiny ImageNet rows (one-hot and
/// prototype, DT only, with the fourth conv of `ConvStack::Four`).
pub fn table5() -> Result<Vec<ParamRow>> {
    let mut rows = Vec::new();
    let all = [
        ("one-hot", EmbeddingKind::OneHot),
        ("dim20", EmbeddingKind::Learned { dim: 20 }),
        ("prototype", EmbeddingKind::Prototype),
    ];
    let tiny = [
        ("one-hot", EmbeddingKind::OneHot),
        ("prototype", EmbeddingKind::Prototype),
    ];
    for (dataset, image, classes, kinds, with_ct) in [
        ("mnist", (1, 28, 28), 10, &all[..], true),
        ("cifar10", (3, 32, 32), 10, &all[..], true),
        ("cifar100", (3, 32, 32), 100, &all[..], true),
        ("tiny-imagenet", (3, 64, 64), 200, &tiny[..], false),
    ] {
        let d_img = image.0 * image.1 * image.2;
        for &(name, kind) in kinds {
            let mut cfg = DtConfig::paper(image, classes, kind, 0);
            cfg.steps = 1; // the count is per block
            let mut dt = NoPropDt::new(cfg, embedding(kind, classes, d_img)?)?;
            let ct = if with_ct {
                let ct_cfg = ContConfig::paper(ContMethod::Ct, image, classes, kind, 0);
                Some(NoPropCont::new(ct_cfg, embedding(kind, classes, d_img)?)?.num_params())
            } else {
                None
            };
            let label_dim = match kind {
                EmbeddingKind::OneHot => classes,
                EmbeddingKind::Learned { dim } => dim,
                EmbeddingKind::Prototype => d_img,
            };
            rows.push(ParamRow {
                dataset,
                embedding: name,
                label_dim,
                dt: dt.params_per_block(),
                ct,
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts of the derivation in docs/REPRODUCTION.md's Table 5 (3×3
    /// pad 0 convs, BN as 2 per channel), for one MNIST row and v2's Tiny
    /// ImageNet rows: the fourth conv (128·256·9 + 256) and a 256·5·5 flatten.
    #[test]
    fn counts_match_the_derivation() {
        let rows = table5().expect("table 5");
        let find = |d: &str, e: &str| {
            rows.iter()
                .find(|r| r.dataset == d && r.embedding == e)
                .unwrap_or_else(|| panic!("row {d} {e}"))
        };
        assert_eq!(rows.len(), 11);
        assert_eq!(find("mnist", "one-hot").dt, 919_946);
        assert_eq!(find("mnist", "one-hot").ct, Some(867_722));
        // Image path 2,027,584 + label MLP 184,576 + head 190,792.
        let tiny = find("tiny-imagenet", "one-hot");
        assert_eq!((tiny.label_dim, tiny.dt, tiny.ct), (200, 2_402_952, None));
        // Two image paths + head.
        assert_eq!(find("tiny-imagenet", "prototype").dt, 4_245_960);
    }
}
