//! Sequential training of a one-hidden-layer network with gradient boosting
//! (Emami & Martínez-Muñoz, "Sequential Training of Neural Networks with
//! Gradient Boosting", IEEE Access 11, 2023).
//!
//! The network `F(x) = Σ_{t=1}^{T} f_t(x)`, `f_t(x) = V_t f(W_t x + b_t) + c_t`,
//! is one hidden layer of `T·J` units whose output weights are split into `T`
//! stages of `J` units. Stage `t` is trained alone, after stages `1…t−1`
//! are frozen, to fit the pseudo-residuals of the multinomial log-loss at
//! the current model, `r = y − softmax(F_{t−1}(x))` (the negative gradient
//! with respect to the logits), by least squares,
//! `ℓ_t = (1/B) Σ_i ‖f_t(x_i) − r_i‖²` — the gradient-boosting step of
//! Friedman (2001) with a network of `J` units as the base learner and unit
//! shrinkage. Stages follow one another every `epochs_per_stage` epochs
//! (`min(epoch / epochs_per_stage, T − 1)`, a pure function of the epoch so
//! that a resumed run trains the same stage). Summing the stages' outputs is
//! exactly the merged `T·J`-unit network; switching off the last-trained
//! stages ([`Relative::predict_stages`]) gives the accuracy against the
//! number of active stages.

use noprop_nn::Mode;
use noprop_tensor::{ops, Tensor};

use super::mlp::one_hot;
use super::Relative;
use crate::{Error, Result};

/// The stage trained during `epoch` (0-based).
pub fn stage_of(epoch: usize, epochs_per_stage: usize, stages: usize) -> usize {
    (epoch / epochs_per_stage.max(1)).min(stages.saturating_sub(1))
}

/// `F_k(x) = Σ_{t<k} f_t(x)` (zeros for `k = 0`).
fn ensemble(m: &mut Relative, x: &Tensor, k: usize) -> Result<Tensor> {
    let mut f = Tensor::zeros(&[x.dim(0), m.config.classes], x.dtype());
    for net in m.nets.iter_mut().take(k) {
        ops::add_assign(&mut f, &net.forward(x, Mode::Eval)?)?;
    }
    Ok(f)
}

/// One step on the current stage's least-squares fit to the pseudo-residuals.
pub(crate) fn train_batch(
    m: &mut Relative,
    x: &Tensor,
    y: &[usize],
    epoch: usize,
) -> Result<(f64, usize)> {
    let s = stage_of(epoch, m.config.epochs_per_stage, m.config.stages);
    let prev = ensemble(m, x, s)?;
    let r = ops::sub(
        &one_hot(y, m.config.classes, x.dtype())?,
        &ops::softmax(&prev)?,
    )?;
    let out = m.nets[s].forward(x, Mode::Train)?;
    let diff = ops::sub(&out, &r)?;
    let b = y.len().max(1) as f64;
    m.nets[s].backward(&ops::scale(&diff, 2.0 / b)?)?;
    m.update(&[s])?;
    m.stages_trained = m.stages_trained.max(s as u64 + 1);
    Ok((ops::sum_sq(&diff)? / b, 1))
}

/// `argmax F_k(x)`.
pub(crate) fn predict(m: &mut Relative, x: &Tensor, k: usize) -> Result<Vec<usize>> {
    let f = ensemble(m, x, k)?;
    Ok(noprop_models::dt::argmax_rows(&f)?)
}

impl Relative {
    /// Gradient boosting: predictions of the first `k` stages only (the
    /// last-trained `T − k` switched off).
    pub fn predict_stages(&mut self, x: &Tensor, k: usize) -> Result<Vec<usize>> {
        if self.config.method != super::RelativeMethod::GradBoost || k == 0 || k > self.nets.len() {
            return Err(Error::Config {
                what: format!(
                    "predict_stages({k}) needs grad-boost and 1 ≤ k ≤ {}",
                    self.nets.len()
                ),
            });
        }
        let x = self.flat(x)?;
        predict(self, &x, k)
    }
}
