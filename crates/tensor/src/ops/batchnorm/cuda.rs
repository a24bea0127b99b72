//! The CUDA twin of `cpu.rs`: the same ops on [`CudaTensor`]s, launching
//! the kernels of `batchnorm.cu` beside this file. The API in `mod.rs` has
//! checked shapes, dtypes and devices; these functions trust them.

use crate::cuda::prelude::*;
use crate::ops::batchnorm::BnGeom;

/// Training-mode forward: `y = γ·(x − μ)/√(σ² + ε) + β` with batch
/// statistics per channel; updates the running statistics with `momentum`
/// (PyTorch's rule, unbiased variance).
/// Returns `[y, x̂, 1/√(σ²+ε), μ, σ²]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_norm_train(
    x: &CudaTensor,
    gamma: &CudaTensor,
    beta: &CudaTensor,
    running_mean: &mut CudaTensor,
    running_var: &mut CudaTensor,
    momentum: f64,
    eps: f64,
    g: BnGeom,
) -> Result<[CudaTensor; 5]> {
    let BnGeom { n, c, p } = g;
    let m = n * p;
    let dev = x.device().clone();
    let mut y = CudaTensor::uninit(&dev, x.shape())?;
    let mut x_hat = CudaTensor::uninit(&dev, x.shape())?;
    let mut mean = CudaTensor::uninit(&dev, &[c])?;
    let mut var = CudaTensor::uninit(&dev, &[c])?;
    let mut inv_std = CudaTensor::uninit(&dev, &[c])?;
    let unbias = if m > 1 {
        (m as f64 / (m as f64 - 1.0)) as f32
    } else {
        1.0
    };
    let (n32, c32, p32) = (n as u32, c as u32, p as u32);
    let (mom, eps32) = (momentum as f32, eps as f32);
    launch!(dev, "batchnorm.cu", "bn_stats_f32", cfg_rows(c);
        x.buf().raw(), mean.buf_mut()?.raw_mut(), var.buf_mut()?.raw_mut(),
        inv_std.buf_mut()?.raw_mut(), running_mean.buf_mut()?.raw_mut(),
        running_var.buf_mut()?.raw_mut(), &n32, &c32, &p32, &mom, &eps32, &unbias);
    let total = x.n32();
    launch!(dev, "batchnorm.cu", "bn_apply_train_f32", cfg_1d(x.numel());
        x.buf().raw(), gamma.buf().raw(), beta.buf().raw(), mean.buf().raw(),
        inv_std.buf().raw(), y.buf_mut()?.raw_mut(), x_hat.buf_mut()?.raw_mut(),
        &total, &c32, &p32);
    Ok([y, x_hat, inv_std, mean, var])
}

/// Evaluation-mode forward with running statistics:
/// `y = (x − r_μ)·γ/√(r_σ² + ε) + β`.
pub(crate) fn batch_norm_eval(
    x: &CudaTensor,
    gamma: &CudaTensor,
    beta: &CudaTensor,
    running_mean: &CudaTensor,
    running_var: &CudaTensor,
    eps: f64,
    g: BnGeom,
) -> Result<CudaTensor> {
    let BnGeom { c, p, .. } = g;
    let dev = x.device().clone();
    let mut y = CudaTensor::uninit(&dev, x.shape())?;
    let (total, c32, p32, eps32) = (x.n32(), c as u32, p as u32, eps as f32);
    launch!(dev, "batchnorm.cu", "bn_eval_f32", cfg_1d(x.numel());
        x.buf().raw(), gamma.buf().raw(), beta.buf().raw(), running_mean.buf().raw(),
        running_var.buf().raw(), y.buf_mut()?.raw_mut(), &total, &c32, &p32, &eps32);
    Ok(y)
}

/// Backward of [`batch_norm_train`]: returns `(dx, dγ, dβ)` with
/// `dβ = Σ dy`, `dγ = Σ dy·x̂`, `dx = (γ/√(σ²+ε))·(dy − dβ/M − x̂·dγ/M)`.
/// Returns `[dx, dγ, dβ]`.
pub(crate) fn batch_norm_backward(
    dy: &CudaTensor,
    gamma: &CudaTensor,
    x_hat: &CudaTensor,
    inv_std: &CudaTensor,
    g: BnGeom,
) -> Result<[CudaTensor; 3]> {
    let BnGeom { n, c, p } = g;
    let dev = dy.device().clone();
    let mut dx = CudaTensor::uninit(&dev, dy.shape())?;
    let mut dgamma = CudaTensor::zeros(&dev, &[c])?;
    let mut dbeta = CudaTensor::zeros(&dev, &[c])?;
    let (n32, c32, p32) = (n as u32, c as u32, p as u32);
    launch!(dev, "batchnorm.cu", "bn_bwd_sums_f32", cfg_rows(c);
        dy.buf().raw(), x_hat.buf().raw(), dgamma.buf_mut()?.raw_mut(),
        dbeta.buf_mut()?.raw_mut(), &n32, &c32, &p32);
    let inv_m = (1.0 / (n * p).max(1) as f64) as f32;
    let total = dy.n32();
    launch!(dev, "batchnorm.cu", "bn_bwd_dx_f32", cfg_1d(dy.numel());
        dy.buf().raw(), x_hat.buf().raw(), gamma.buf().raw(), inv_std.buf().raw(),
        dgamma.buf().raw(), dbeta.buf().raw(), dx.buf_mut()?.raw_mut(), &total, &c32, &p32,
        &inv_m);
    Ok([dx, dgamma, dbeta])
}
