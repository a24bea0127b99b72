//! Class embeddings `W_Embed ∈ R^{m×d}` (docs/DECISIONS.md, note F and § 13).

use std::str::FromStr;

use ndarray::Array2;
use ndarray_rand::rand_distr::StandardNormal;
use ndarray_rand::RandomExt;
use noprop_nn::init::rng_for;
use noprop_nn::state::{join, StateDict, StateVisitor};
use noprop_nn::ParamMut;
use noprop_tensor::ops::{self, Transpose};
use noprop_tensor::{DType, Tensor};
use rand::seq::index::sample;

use crate::block::ImageDims;
use crate::{Error, Result};

/// Which class embedding a model uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbeddingKind {
    /// Fixed identity, `d = m`.
    OneHot,
    /// Learned, `d` dimensions (the paper uses 20): orthonormal rows when
    /// `d ≥ m`, otherwise rows drawn from `N(0, I/d)`.
    Learned {
        /// The embedding dimension.
        dim: usize,
    },
    /// Learned, `d` = image size, initialised with one prototype image per class.
    Prototype,
}

impl FromStr for EmbeddingKind {
    type Err = Error;
    /// `one-hot`, `dim20` (or `dim=20`, `dimN`), `prototype`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "one-hot" | "onehot" => Ok(EmbeddingKind::OneHot),
            "prototype" => Ok(EmbeddingKind::Prototype),
            _ => {
                let n = s.strip_prefix("dim=").or_else(|| s.strip_prefix("dim"));
                match n.and_then(|n| n.parse::<usize>().ok()) {
                    Some(dim) if dim > 0 => Ok(EmbeddingKind::Learned { dim }),
                    _ => Err(Error::Config {
                        what: format!("unknown embedding `{s}` (one-hot, dim20, prototype)"),
                    }),
                }
            }
        }
    }
}

impl std::fmt::Display for EmbeddingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmbeddingKind::OneHot => write!(f, "one-hot"),
            EmbeddingKind::Learned { dim } => write!(f, "dim{dim}"),
            EmbeddingKind::Prototype => write!(f, "prototype"),
        }
    }
}

/// How a learned `d`-dimensional embedding (`dimN`) starts: the paper's
/// embedding-initialisation ablation (Figure 7 of arXiv 2503.24322 v2,
/// Figure 5 of v1) compares the three at `d` = image size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmbeddingInit {
    /// Orthonormal rows: Gram–Schmidt on the rows of [`EmbeddingInit::Random`]
    /// (needs `d ≥ m`).
    Orthogonal,
    /// One prototype image per class ([`ClassEmbedding::prototype`]; needs
    /// `d` = image size).
    Prototype,
    /// Rows drawn from `N(0, I/d)` (norm ≈ 1, like the orthonormal rows).
    Random,
}

impl EmbeddingInit {
    /// The name used on the command line and in results.
    pub const fn as_str(self) -> &'static str {
        match self {
            EmbeddingInit::Orthogonal => "orthogonal",
            EmbeddingInit::Prototype => "prototype",
            EmbeddingInit::Random => "random",
        }
    }
}

impl std::fmt::Display for EmbeddingInit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EmbeddingKind {
    /// The embedding dimension `d` for images `image` and `classes` classes:
    /// `m` (one-hot), `dim` (learned) or `C·H·W` (prototype).
    pub fn dim_for(self, image: ImageDims, classes: usize) -> usize {
        match self {
            EmbeddingKind::OneHot => classes,
            EmbeddingKind::Learned { dim } => dim,
            EmbeddingKind::Prototype => image.0 * image.1 * image.2,
        }
    }
}

/// The class embedding matrix and its gradient accumulator.
#[derive(Clone, Debug)]
pub struct ClassEmbedding {
    /// Which kind this is.
    pub kind: EmbeddingKind,
    /// `W_Embed`, `[m, d]`; row `y` is `u_y`.
    pub weight: Tensor,
    grad: Tensor,
}

impl ClassEmbedding {
    /// The fixed one-hot embedding `W = I_m`.
    pub fn one_hot(classes: usize) -> Self {
        let mut w = Tensor::zeros(&[classes, classes], DType::F32);
        if let Ok(s) = w.as_mut_slice::<f32>() {
            for i in 0..classes {
                s[i * classes + i] = 1.0;
            }
        }
        Self::from_weight(EmbeddingKind::OneHot, w)
    }

    /// A learned `d`-dimensional embedding with the default start:
    /// [`ClassEmbedding::orthogonal`] ("orthogonal when possible") when `d ≥ m`,
    /// otherwise [`ClassEmbedding::random`] ("randomly otherwise").
    pub fn learned(classes: usize, dim: usize, seed: u64) -> Self {
        if dim >= classes {
            Self::orthogonalized(Self::gaussian_rows(classes, dim, seed), dim)
        } else {
            Self::random(classes, dim, seed)
        }
    }

    /// A learned `d`-dimensional embedding whose rows are drawn from
    /// `N(0, I/d)` (the scale gives rows of norm ≈ 1 like the orthonormal
    /// case), from `(seed, "embed.weight")`.
    pub fn random(classes: usize, dim: usize, seed: u64) -> Self {
        let w32 = Self::gaussian_rows(classes, dim, seed).mapv(|v| v as f32);
        Self::from_weight(EmbeddingKind::Learned { dim }, Tensor::from_ndarray(&w32))
    }

    /// A learned `d`-dimensional embedding with orthonormal rows: Gram–Schmidt
    /// on the rows of [`ClassEmbedding::random`] (same seed, same draws). An
    /// error when `d < m` (at most `d` rows can be orthonormal).
    pub fn orthogonal(classes: usize, dim: usize, seed: u64) -> Result<Self> {
        if dim < classes {
            return Err(Error::Config {
                what: format!(
                    "an orthogonal embedding needs d ≥ m: {classes} classes cannot have orthonormal rows in {dim} dimensions"
                ),
            });
        }
        Ok(Self::orthogonalized(
            Self::gaussian_rows(classes, dim, seed),
            dim,
        ))
    }

    /// `[m, d]` rows drawn from `N(0, I/d)` with `(seed, "embed.weight")`.
    fn gaussian_rows(classes: usize, dim: usize, seed: u64) -> Array2<f64> {
        let mut rng = rng_for(seed, "embed.weight");
        let g: Array2<f64> = Array2::random_using((classes, dim), StandardNormal, &mut rng);
        g.mapv(|v| v / (dim as f64).sqrt())
    }

    /// Gram–Schmidt on the rows of `w` (`d ≥ m`), as a learned embedding.
    fn orthogonalized(mut w: Array2<f64>, dim: usize) -> Self {
        for i in 0..w.nrows() {
            for j in 0..i {
                let proj = w.row(i).dot(&w.row(j));
                let rj = w.row(j).to_owned();
                w.row_mut(i).scaled_add(-proj, &rj);
            }
            let norm = w.row(i).dot(&w.row(i)).sqrt();
            w.row_mut(i).mapv_inplace(|v| v / norm);
        }
        let w32 = w.mapv(|v| v as f32);
        Self::from_weight(EmbeddingKind::Learned { dim }, Tensor::from_ndarray(&w32))
    }

    /// The prototype embedding (docs/DECISIONS.md § 13): for each class, the training
    /// image (as the network sees it, after normalisation) with the smallest
    /// median Euclidean distance to the other images of its class, over a
    /// seeded random subset of at most `max_per_class` images of that class.
    ///
    /// `images` is `[n, d]` (flattened), `labels` has `n` entries.
    pub fn prototype(
        images: &Tensor,
        labels: &[usize],
        classes: usize,
        max_per_class: usize,
        seed: u64,
    ) -> Result<Self> {
        if images.rank() != 2 || images.dim(0) != labels.len() {
            return Err(Error::Config {
                what: format!(
                    "prototype init needs [n, d] images and n labels, got {:?} and {}",
                    images.shape(),
                    labels.len()
                ),
            });
        }
        let d = images.dim(1);
        let mut w = Tensor::zeros(&[classes, d], DType::F32);
        for c in 0..classes {
            let members: Vec<usize> = labels
                .iter()
                .enumerate()
                .filter(|(_, &l)| l == c)
                .map(|(i, _)| i)
                .collect();
            if members.is_empty() {
                return Err(Error::Config {
                    what: format!("class {c} has no training image to be its prototype"),
                });
            }
            let mut rng = rng_for(seed, &format!("prototype.{c}"));
            let chosen: Vec<usize> = if members.len() > max_per_class {
                let mut idx: Vec<usize> = sample(&mut rng, members.len(), max_per_class)
                    .into_iter()
                    .map(|i| members[i])
                    .collect();
                idx.sort_unstable();
                idx
            } else {
                members
            };
            let x = ops::gather_rows(&images.to_dtype(DType::F64), &chosen)?;
            let gram = ops::matmul(&x, Transpose::No, &x, Transpose::Yes)?;
            let g = gram.as_slice::<f64>()?;
            let k = chosen.len();
            let mut best = (f64::INFINITY, 0usize);
            for i in 0..k {
                // Squared distances to the others (the median of squares has the same argmin).
                let mut dist: Vec<f64> = (0..k)
                    .filter(|&j| j != i)
                    .map(|j| (g[i * k + i] + g[j * k + j] - 2.0 * g[i * k + j]).max(0.0))
                    .collect();
                let med = if dist.is_empty() {
                    0.0
                } else {
                    let mid = dist.len() / 2;
                    let (_, m, _) = dist.select_nth_unstable_by(mid, |a, b| a.total_cmp(b));
                    *m
                };
                if med < best.0 {
                    best = (med, i);
                }
            }
            let row = ops::gather_rows(images, &[chosen[best.1]])?;
            let src = row.to_vec_f32();
            w.as_mut_slice::<f32>()?[c * d..(c + 1) * d].copy_from_slice(&src);
        }
        Ok(Self::from_weight(EmbeddingKind::Prototype, w))
    }

    /// An embedding of `kind` with a given `W_Embed` (`[m, d]`), e.g. restored
    /// from a checkpoint; converted to f32.
    pub fn from_saved(kind: EmbeddingKind, weight: &Tensor) -> Result<Self> {
        if weight.rank() != 2 {
            return Err(Error::Config {
                what: format!("W_Embed must be [m, d], got {:?}", weight.shape()),
            });
        }
        Ok(Self::from_weight(kind, weight.to_dtype(DType::F32)))
    }

    fn from_weight(kind: EmbeddingKind, weight: Tensor) -> Self {
        ClassEmbedding {
            kind,
            grad: weight.zeros_like(),
            weight,
        }
    }

    /// Whether `W_Embed` is trained (everything but one-hot).
    pub fn trainable(&self) -> bool {
        self.kind != EmbeddingKind::OneHot
    }

    /// Number of classes `m`.
    pub fn classes(&self) -> usize {
        self.weight.dim(0)
    }

    /// Embedding dimension `d`.
    pub fn dim(&self) -> usize {
        self.weight.dim(1)
    }

    /// `u_y` for each label: `[B, d]`.
    pub fn lookup(&self, labels: &[usize]) -> Result<Tensor> {
        Ok(ops::gather_rows(&self.weight, labels)?)
    }

    /// The gradient accumulator `∂L/∂W_Embed`.
    pub fn grad_mut(&mut self) -> &mut Tensor {
        &mut self.grad
    }

    /// `W_Embed` as an optimiser parameter (`None` when fixed).
    pub fn param(&mut self) -> Option<ParamMut<'_>> {
        if !self.trainable() {
            return None;
        }
        Some(ParamMut {
            name: "embed.weight".into(),
            value: &mut self.weight,
            grad: &mut self.grad,
        })
    }

    /// Zero the gradient.
    pub fn zero_grad(&mut self) {
        self.grad.fill(0.0);
    }

    /// Move `W_Embed` and its gradient to `device`.
    pub fn to_device(&mut self, device: &noprop_tensor::Device) -> Result<()> {
        self.weight = self.weight.to_device(device)?;
        self.grad = self.grad.to_device(device)?;
        Ok(())
    }
}

/// `{prefix}.weight`: `W_Embed` (saved for every kind; a one-hot one is the identity).
impl StateDict for ClassEmbedding {
    fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> noprop_nn::Result<()> {
        v.tensor(&join(prefix, "weight"), &mut self.weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(e: &ClassEmbedding) -> Vec<Vec<f64>> {
        let (m, d) = (e.classes(), e.dim());
        let w = e.weight.to_vec_f32();
        (0..m)
            .map(|i| w[i * d..(i + 1) * d].iter().map(|&v| v as f64).collect())
            .collect()
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn orthogonal_rows_are_orthonormal_and_random_ones_are_not() {
        let o = rows(&ClassEmbedding::orthogonal(10, 64, 3).unwrap());
        let r = rows(&ClassEmbedding::random(10, 64, 3));
        let mut worst_r = 0.0f64;
        for i in 0..10 {
            assert!((dot(&o[i], &o[i]) - 1.0).abs() < 1e-5);
            for j in 0..i {
                assert!(dot(&o[i], &o[j]).abs() < 1e-5, "rows {i},{j}");
                worst_r = worst_r.max(dot(&r[i], &r[j]).abs());
            }
        }
        // Gaussian rows of norm ≈ 1 in 64 dimensions overlap by ≈ 1/8.
        assert!(worst_r > 0.05, "random rows look orthogonal: {worst_r}");
        // The first orthogonal row is the first random row, normalised.
        let n0 = dot(&r[0], &r[0]).sqrt();
        for (a, b) in o[0].iter().zip(&r[0]) {
            assert!((a - b / n0).abs() < 1e-5);
        }
    }

    #[test]
    fn learned_defaults_to_orthogonal_when_it_can() {
        let l = ClassEmbedding::learned(10, 20, 5);
        let o = ClassEmbedding::orthogonal(10, 20, 5).unwrap();
        assert_eq!(l.weight.to_vec_f32(), o.weight.to_vec_f32());
        let l = ClassEmbedding::learned(10, 4, 5);
        let r = ClassEmbedding::random(10, 4, 5);
        assert_eq!(l.weight.to_vec_f32(), r.weight.to_vec_f32());
        assert_eq!(r.kind, EmbeddingKind::Learned { dim: 4 });
        let e = ClassEmbedding::orthogonal(10, 4, 5)
            .unwrap_err()
            .to_string();
        assert!(e.contains("d ≥ m"), "{e}");
    }
}
