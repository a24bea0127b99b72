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
    /// Trainable scalars of the CT/FM network.
    pub ct: usize,
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

/// Counts for the nine dataset × embedding cells of Table 5.
pub fn table5() -> Result<Vec<ParamRow>> {
    let mut rows = Vec::new();
    for (dataset, image, classes) in [
        ("mnist", (1, 28, 28), 10),
        ("cifar10", (3, 32, 32), 10),
        ("cifar100", (3, 32, 32), 100),
    ] {
        let d_img = image.0 * image.1 * image.2;
        for (name, kind) in [
            ("one-hot", EmbeddingKind::OneHot),
            ("dim20", EmbeddingKind::Learned { dim: 20 }),
            ("prototype", EmbeddingKind::Prototype),
        ] {
            let mut cfg = DtConfig::paper(image, classes, kind, 0);
            cfg.steps = 1; // the count is per block
            let mut dt = NoPropDt::new(cfg, embedding(kind, classes, d_img)?)?;
            let ct_cfg = ContConfig::paper(ContMethod::Ct, image, classes, kind, 0);
            let mut ct = NoPropCont::new(ct_cfg, embedding(kind, classes, d_img)?)?;
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
                ct: ct.num_params(),
            });
        }
    }
    Ok(rows)
}
