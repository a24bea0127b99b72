//! The output classifier `p̂_θout(y | z_T)` (Eqs. 14–16).

use noprop_nn::layers::Linear;
use noprop_nn::state::{join, StateDict, StateVisitor};
use noprop_nn::{Mode, Module, ParamMut};
use noprop_tensor::ops::{self, Transpose};
use noprop_tensor::Tensor;

use crate::embedding::ClassEmbedding;
use crate::{Error, Result};

/// Which parameterisation of `p̂_θout(y | z)` to use.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum ClassifierKind {
    /// Eq. 14: `softmax(f_θout(z))`, `f_θout` linear `d → m`.
    Softmax,
    /// Eqs. 15–16: `ỹ = softmax(f_θout(z))·W_Embed`, then a softmax over
    /// `−‖ỹ − u_y‖²/(2σ²)` (the Bayes posterior with likelihood `N(ỹ | u_y, σ²)`).
    Posterior {
        /// σ (docs/DECISIONS.md § 12: 1 by default).
        sigma: f64,
    },
}

/// `p̂_θout`, one linear layer `d → m` plus the chosen read-out.
#[derive(Debug)]
pub struct OutputClassifier {
    /// `f_θout`.
    pub fc: Linear,
    /// The read-out.
    pub kind: ClassifierKind,
    cache: Option<(Tensor, Tensor)>,
}

/// Gradients of the classifier's inputs.
#[derive(Debug)]
pub struct ClassifierGrads {
    /// `∂L/∂z`.
    pub dz: Tensor,
    /// `∂L/∂W_Embed` (posterior read-out only).
    pub dembed: Option<Tensor>,
}

impl OutputClassifier {
    /// `d → m` with PyTorch's default init from `(seed, "classifier.fc")`.
    pub fn new(d: usize, classes: usize, kind: ClassifierKind, seed: u64) -> Self {
        OutputClassifier {
            fc: Linear::new(d, classes, seed, "classifier.fc"),
            kind,
            cache: None,
        }
    }

    /// Class scores whose softmax is `p̂(y | z)`: `[B, m]`.
    pub fn logits(&mut self, z: &Tensor, embed: &ClassEmbedding, mode: Mode) -> Result<Tensor> {
        let f = self.fc.forward(z, mode)?;
        match self.kind {
            ClassifierKind::Softmax => Ok(f),
            ClassifierKind::Posterior { sigma } => {
                if sigma <= 0.0 {
                    return Err(Error::Config {
                        what: format!("posterior classifier σ = {sigma} must be positive"),
                    });
                }
                let s = ops::softmax(&f)?;
                let ytilde = ops::matmul(&s, Transpose::No, &embed.weight, Transpose::No)?;
                let scores = neg_sq_dist(&ytilde, &embed.weight, sigma)?;
                if mode == Mode::Train {
                    self.cache = Some((s, ytilde));
                }
                Ok(scores)
            }
        }
    }

    /// Backward from `∂L/∂logits`.
    pub fn backward(
        &mut self,
        dlogits: &Tensor,
        embed: &ClassEmbedding,
    ) -> Result<ClassifierGrads> {
        match self.kind {
            ClassifierKind::Softmax => Ok(ClassifierGrads {
                dz: self.fc.backward(dlogits)?,
                dembed: None,
            }),
            ClassifierKind::Posterior { sigma } => {
                let (s, ytilde) = self.cache.take().ok_or(noprop_nn::Error::NoForwardCache {
                    layer: "OutputClassifier",
                })?;
                let w = &embed.weight;
                let inv = 1.0 / (sigma * sigma);
                // score_iy = −‖ỹ_i − u_y‖²/(2σ²):
                // ∂/∂ỹ_i = −(ỹ_i·Σ_y g_iy − (g·W)_i)/σ²,  ∂/∂u_y = ((gᵀ·ỹ)_y − (Σ_i g_iy)·u_y)/σ².
                let g = dlogits;
                let gw = ops::matmul(g, Transpose::No, w, Transpose::No)?;
                let rowsum = ops::row_sums(g)?;
                let mut dy = ops::scale_rows(&ytilde, &rowsum)?;
                ops::axpy(&mut dy, -1.0, &gw)?;
                ops::scale_in_place(&mut dy, -inv)?;
                let gty = ops::matmul(g, Transpose::Yes, &ytilde, Transpose::No)?;
                let colsum = ops::sum_rows(g)?;
                let mut dw = ops::scale_rows(w, &colsum)?;
                ops::scale_in_place(&mut dw, -1.0)?;
                ops::add_assign(&mut dw, &gty)?;
                ops::scale_in_place(&mut dw, inv)?;
                // ỹ = s·W: ∂s = ∂ỹ·Wᵀ, ∂W += sᵀ·∂ỹ.
                let ds = ops::matmul(&dy, Transpose::No, w, Transpose::Yes)?;
                ops::gemm_into(&mut dw, true, &s, Transpose::Yes, &dy, Transpose::No)?;
                let df = ops::softmax_backward(&s, &ds)?;
                Ok(ClassifierGrads {
                    dz: self.fc.backward(&df)?,
                    dembed: Some(dw),
                })
            }
        }
    }

    /// Move `f_θout` to `device`.
    pub fn to_device(&mut self, device: &noprop_tensor::Device) -> Result<()> {
        self.cache = None;
        Ok(self.fc.to_device(device)?)
    }

    /// Parameters `classifier.fc.weight`, `classifier.fc.bias`.
    pub fn params(&mut self) -> Vec<ParamMut<'_>> {
        noprop_nn::prefixed("classifier.fc", self.fc.params())
    }
}

/// `{prefix}.fc.weight`, `{prefix}.fc.bias`: `f_θout`.
impl StateDict for OutputClassifier {
    fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> noprop_nn::Result<()> {
        self.fc.visit_state(&join(prefix, "fc"), v)
    }
}

/// `s_iy = −‖a_i − w_y‖²/(2σ²)` for `a: [B, d]`, `w: [m, d]`, as
/// `−(‖a_i‖² + ‖w_y‖² − 2·a_i·w_y)/(2σ²)` ([`ops::sq_dist_scores`]).
fn neg_sq_dist(a: &Tensor, w: &Tensor, sigma: f64) -> Result<Tensor> {
    let cross = ops::matmul(a, Transpose::No, w, Transpose::Yes)?;
    let an = ops::row_dots(a, a)?;
    let wn = ops::row_dots(w, w)?;
    let k = 1.0 / (2.0 * sigma * sigma);
    Ok(ops::sq_dist_scores(&cross, &an, &wn, k)?)
}
