//! Batch normalisation over `[N, C]` or `[N, C, H, W]` (statistics per channel).
//!
//! Training: `μ_c = mean(x_c)`, `σ²_c = mean((x_c − μ_c)²)` (biased),
//! `x̂ = (x − μ_c)/√(σ²_c + ε)`, `y = γ_c·x̂ + β_c`. Running statistics use
//! PyTorch's rule: `r ← (1 − m)·r + m·s` with the *unbiased* variance.

mod cpu;

use super::dev;
use crate::cuda::kernels::batchnorm as cuda;
use crate::{Error, Result, Tensor};

/// What the training forward keeps for the backward pass (on the input's device).
#[derive(Clone, Debug)]
pub struct BatchNormSaved {
    /// The normalised input `x̂`, same shape as `x`.
    pub x_hat: Tensor,
    /// `1/√(σ² + ε)` per channel.
    pub inv_std: Tensor,
    /// Batch mean per channel.
    pub mean: Tensor,
    /// Batch (biased) variance per channel.
    pub var: Tensor,
}

/// `x` as `[n, c, p]`: batch, channels, values per channel per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BnGeom {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) p: usize,
}

/// The geometry of `x`, and every per-channel tensor checked to be `[c]`
/// of `x`'s dtype.
fn geometry(op: &'static str, x: &Tensor, per_channel: &[&Tensor]) -> Result<BnGeom> {
    let g = match x.rank() {
        2 => BnGeom {
            n: x.dim(0),
            c: x.dim(1),
            p: 1,
        },
        4 => BnGeom {
            n: x.dim(0),
            c: x.dim(1),
            p: x.dim(2) * x.dim(3),
        },
        _ => {
            return Err(Error::InvalidShape {
                op,
                shape: x.shape().to_vec(),
                why: "batch norm needs [N, C] or [N, C, H, W]",
            })
        }
    };
    for t in per_channel {
        t.expect_shape(op, &[g.c])?;
        t.expect_dtype(op, x.dtype())?;
    }
    Ok(g)
}

/// Training-mode forward. Returns `y` and the saved tensors; updates
/// `running_mean`/`running_var` in place with `momentum`.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &mut Tensor,
    running_var: &mut Tensor,
    momentum: f64,
    eps: f64,
) -> Result<(Tensor, BatchNormSaved)> {
    let op = "batch_norm_train";
    let g = geometry(op, x, &[gamma, beta, running_mean, running_var])?;
    if g.n * g.p == 0 {
        return Err(Error::InvalidShape {
            op,
            shape: x.shape().to_vec(),
            why: "needs at least one value per channel",
        });
    }
    if !dev::same_kind(op, x, &[gamma, beta, running_mean, running_var])? {
        return cpu::batch_norm_train(x, gamma, beta, running_mean, running_var, momentum, eps, g);
    }
    let (xc, gc, bc) = (dev::get(op, x)?, dev::get(op, gamma)?, dev::get(op, beta)?);
    let rm = dev::get_mut(op, running_mean)?;
    let rv = dev::get_mut(op, running_var)?;
    let [y, x_hat, inv_std, mean, var] =
        cuda::batch_norm_train(xc, gc, bc, rm, rv, momentum, eps, g)?.map(dev::wrap);
    Ok((
        y,
        BatchNormSaved {
            x_hat,
            inv_std,
            mean,
            var,
        },
    ))
}

/// Evaluation-mode forward with running statistics:
/// `y = (x − r_μ)·γ/√(r_σ² + ε) + β`.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let op = "batch_norm_eval";
    let g = geometry(op, x, &[gamma, beta, running_mean, running_var])?;
    match dev::all(op, [x, gamma, beta, running_mean, running_var])? {
        None => cpu::batch_norm_eval(x, gamma, beta, running_mean, running_var, eps, g),
        Some([x, ga, b, rm, rv]) => Ok(dev::wrap(cuda::batch_norm_eval(x, ga, b, rm, rv, eps, g)?)),
    }
}

/// Backward of [`batch_norm_train`]: returns `(dx, dγ, dβ)`.
///
/// `dβ = Σ dy`, `dγ = Σ dy·x̂`, `dx = (γ/√(σ²+ε))·(dy − dβ/M − x̂·dγ/M)`
/// with `M = N·H·W`.
pub fn batch_norm_backward(
    dy: &Tensor,
    gamma: &Tensor,
    saved: &BatchNormSaved,
) -> Result<(Tensor, Tensor, Tensor)> {
    let op = "batch_norm_backward";
    let g = geometry(op, dy, &[gamma, &saved.inv_std])?;
    dy.expect_shape(op, saved.x_hat.shape())?;
    saved.x_hat.expect_dtype(op, dy.dtype())?;
    match dev::all(op, [dy, gamma, &saved.x_hat, &saved.inv_std])? {
        None => cpu::batch_norm_backward(dy, gamma, saved, g),
        Some([dy, ga, xh, is]) => {
            let [dx, dg, db] = cuda::batch_norm_backward(dy, ga, xh, is, g)?.map(dev::wrap);
            Ok((dx, dg, db))
        }
    }
}
