//! The CUDA twin of `cpu.rs`: the same ops on [`CudaTensor`]s, launching
//! the kernels of `optim.cu` beside this file. The API in `mod.rs` has
//! checked shapes, dtypes and devices; these functions trust them.

use crate::cuda::prelude::*;
use crate::ops::AdamHyper;

/// One fused Adam/AdamW step (PyTorch's formulation) at step `t ≥ 1`, one
/// kernel per parameter tensor:
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `θ ← θ − (lr/(1−β₁ᵗ))·m / (√v/√(1−β₂ᵗ) + ε)`.
pub(crate) fn adam_update(
    param: &mut CudaTensor,
    grad: &CudaTensor,
    m: &mut CudaTensor,
    v: &mut CudaTensor,
    h: &AdamHyper,
    t: u64,
) -> Result<()> {
    let bc1 = 1.0 - h.beta1.powf(t as f64);
    let bc2 = 1.0 - h.beta2.powf(t as f64);
    let c = |x: f64| x as f32;
    let (b1, b2, eps) = (c(h.beta1), c(h.beta2), c(h.eps));
    let step = c(h.lr / bc1);
    let sqrt_bc2 = c(bc2.sqrt());
    let wd = c(h.weight_decay);
    let decay = c(1.0 - h.lr * h.weight_decay);
    let decoupled = h.decoupled as i32;
    let dev = param.device().clone();
    let n = param.n32();
    launch!(dev, "optim.cu", "adam_f32", cfg_1d(param.numel());
        param.buf_mut()?.raw_mut(), grad.buf().raw(), m.buf_mut()?.raw_mut(),
        v.buf_mut()?.raw_mut(), &n, &b1, &b2, &eps, &step, &sqrt_bc2, &wd, &decay, &decoupled);
    Ok(())
}

/// One fused SGD step with momentum μ and coupled weight decay λ:
/// `g ← g + λθ`, `b ← μb + g`, `θ ← θ − lr·b`.
pub(crate) fn sgd_momentum_update(
    param: &mut CudaTensor,
    grad: &CudaTensor,
    buf: &mut CudaTensor,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
) -> Result<()> {
    let dev = param.device().clone();
    let (n, lr, mu, wd) = (param.n32(), lr as f32, momentum as f32, weight_decay as f32);
    launch!(dev, "optim.cu", "sgd_momentum_f32", cfg_1d(param.numel());
        param.buf_mut()?.raw_mut(), grad.buf().raw(), buf.buf_mut()?.raw_mut(), &n, &lr, &mu, &wd);
    Ok(())
}
