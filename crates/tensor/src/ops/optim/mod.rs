//! Fused optimiser updates: one pass over a parameter tensor per step.

mod cpu;

use super::dev;
use crate::cuda::kernels::optim as cuda;
use crate::{Error, Result, Tensor};

/// Adam / AdamW hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamHyper {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay β₁.
    pub beta1: f64,
    /// Second-moment decay β₂.
    pub beta2: f64,
    /// Denominator ε.
    pub eps: f64,
    /// Weight decay λ.
    pub weight_decay: f64,
    /// AdamW (Loshchilov & Hutter): `θ ← θ·(1 − lr·λ)` before the Adam step.
    /// Otherwise Adam with coupled L2: `g ← g + λ·θ`.
    pub decoupled: bool,
}

fn check4(op: &'static str, p: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor) -> Result<()> {
    super::same_shape(op, p, g)?;
    super::same_shape(op, p, m)?;
    super::same_shape(op, p, v)
}

/// One Adam/AdamW step (PyTorch's formulation) at step number `t ≥ 1`:
///
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `θ ← θ − (lr/(1−β₁ᵗ))·m / (√v/√(1−β₂ᵗ) + ε)`.
pub fn adam_update(
    param: &mut Tensor,
    grad: &Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    h: &AdamHyper,
    t: u64,
) -> Result<()> {
    let op = "adam_update";
    check4(op, param, grad, m, v)?;
    if t == 0 {
        return Err(Error::InvalidArgument {
            op,
            why: "the step number starts at 1".into(),
        });
    }
    if !dev::same_kind(op, param, &[grad, m, v])? {
        return cpu::adam_update(param, grad, m, v, h, t);
    }
    let g = dev::get(op, grad)?;
    let (m, v) = (dev::get_mut(op, m)?, dev::get_mut(op, v)?);
    cuda::adam_update(dev::get_mut(op, param)?, g, m, v, h, t)
}

/// One SGD step with momentum μ and coupled weight decay λ (PyTorch's rule,
/// no dampening): `g ← g + λθ`, `b ← μb + g`, `θ ← θ − lr·b`.
pub fn sgd_momentum_update(
    param: &mut Tensor,
    grad: &Tensor,
    buf: &mut Tensor,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
) -> Result<()> {
    let op = "sgd_momentum_update";
    super::same_shape(op, param, grad)?;
    super::same_shape(op, param, buf)?;
    if !dev::same_kind(op, param, &[grad, buf])? {
        return cpu::sgd_momentum_update(param, grad, buf, lr, momentum, weight_decay);
    }
    let g = dev::get(op, grad)?;
    let b = dev::get_mut(op, buf)?;
    cuda::sgd_momentum_update(dev::get_mut(op, param)?, g, b, lr, momentum, weight_decay)
}
