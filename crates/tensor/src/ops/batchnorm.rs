//! Batch normalisation over `[N, C]` or `[N, C, H, W]` (statistics per channel).
//!
//! Training: `μ_c = mean(x_c)`, `σ²_c = mean((x_c − μ_c)²)` (biased),
//! `x̂ = (x − μ_c)/√(σ²_c + ε)`, `y = γ_c·x̂ + β_c`. Running statistics use
//! PyTorch's rule: `r ← (1 − m)·r + m·s` with the *unbiased* variance.
//! Each channel's sums run sequentially in a fixed order, channels in
//! parallel, so the result does not depend on the thread count.

use rayon::prelude::*;

#[allow(unused_imports)]
use super::num::*;

use crate::{with_dtype, Elem, Error, Result, Tensor};

/// What the training forward keeps for the backward pass.
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

fn geometry(op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
    match x.rank() {
        2 => Ok((x.dim(0), x.dim(1), 1)),
        4 => Ok((x.dim(0), x.dim(1), x.dim(2) * x.dim(3))),
        _ => Err(Error::InvalidShape {
            op,
            shape: x.shape().to_vec(),
            why: "batch norm needs [N, C] or [N, C, H, W]",
        }),
    }
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
    #[cfg(feature = "cuda")]
    if super::dev::same_kind(
        "batch_norm_train",
        x,
        &[gamma, beta, running_mean, running_var],
    )? {
        use super::dev::{get, get_mut, wrap};
        let op = "batch_norm_train";
        let (xc, g, b) = (get(op, x)?, get(op, gamma)?, get(op, beta)?);
        let rm = get_mut(op, running_mean)?;
        let rv = get_mut(op, running_var)?;
        let (y, s) = crate::cuda::ops::batch_norm_train(xc, g, b, rm, rv, momentum, eps)?;
        return Ok((
            wrap(y),
            BatchNormSaved {
                x_hat: wrap(s.x_hat),
                inv_std: wrap(s.inv_std),
                mean: wrap(s.mean),
                var: wrap(s.var),
            },
        ));
    }
    let (n, c, p) = geometry("batch_norm_train", x)?;
    for t in [gamma, beta, &*running_mean, &*running_var] {
        t.expect_shape("batch_norm_train (per-channel tensor)", &[c])?;
        t.expect_dtype("batch_norm_train", x.dtype())?;
    }
    let m = n * p;
    if m == 0 {
        return Err(Error::InvalidShape {
            op: "batch_norm_train",
            shape: x.shape().to_vec(),
            why: "needs at least one value per channel",
        });
    }
    let dtype = x.dtype();
    let mut y = Tensor::zeros(x.shape(), dtype);
    let mut x_hat = Tensor::zeros(x.shape(), dtype);
    let mut mean = Tensor::zeros(&[c], dtype);
    let mut var = Tensor::zeros(&[c], dtype);
    let mut inv_std = Tensor::zeros(&[c], dtype);
    with_dtype!(dtype, T, {
        let xs = x.as_slice::<T>()?;
        let stats: Vec<(T, T)> = (0..c)
            .into_par_iter()
            .map(|ci| {
                let mut s = T::zero();
                for ni in 0..n {
                    for &v in &xs[(ni * c + ci) * p..(ni * c + ci + 1) * p] {
                        s += v;
                    }
                }
                let mu = s / T::from_usize(m).unwrap_or(T::one());
                let mut q = T::zero();
                for ni in 0..n {
                    for &v in &xs[(ni * c + ci) * p..(ni * c + ci + 1) * p] {
                        q += (v - mu) * (v - mu);
                    }
                }
                (mu, q / T::from_usize(m).unwrap_or(T::one()))
            })
            .collect();
        let eps_t = T::from_f64_lossy(eps);
        let mom = T::from_f64_lossy(momentum);
        let unbias = if m > 1 {
            T::from_f64_lossy(m as f64 / (m as f64 - 1.0))
        } else {
            T::one()
        };
        {
            let (ms, vs, is) = (
                mean.as_mut_slice::<T>()?,
                var.as_mut_slice::<T>()?,
                inv_std.as_mut_slice::<T>()?,
            );
            let rm = running_mean.as_mut_slice::<T>()?;
            let rv = running_var.as_mut_slice::<T>()?;
            for (ci, &(mu, v)) in stats.iter().enumerate() {
                ms[ci] = mu;
                vs[ci] = v;
                is[ci] = T::one() / (v + eps_t).sqrt();
                rm[ci] = (T::one() - mom) * rm[ci] + mom * mu;
                rv[ci] = (T::one() - mom) * rv[ci] + mom * v * unbias;
            }
        }
        let (g, b) = (gamma.as_slice::<T>()?, beta.as_slice::<T>()?);
        let (ms, is) = (mean.as_slice::<T>()?, inv_std.as_slice::<T>()?);
        y.as_mut_slice::<T>()?
            .par_chunks_mut(c * p)
            .zip(x_hat.as_mut_slice::<T>()?.par_chunks_mut(c * p))
            .enumerate()
            .for_each(|(ni, (yr, hr))| {
                for ci in 0..c {
                    for j in 0..p {
                        let k = ci * p + j;
                        let h = (xs[ni * c * p + k] - ms[ci]) * is[ci];
                        hr[k] = h;
                        yr[k] = g[ci] * h + b[ci];
                    }
                }
            });
    });
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

/// Evaluation-mode forward with running statistics.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some([x, g, b, rm, rv]) = super::dev::all(
        "batch_norm_eval",
        [x, gamma, beta, running_mean, running_var],
    )? {
        return Ok(super::dev::wrap(crate::cuda::ops::batch_norm_eval(
            x, g, b, rm, rv, eps,
        )?));
    }
    let (_, c, p) = geometry("batch_norm_eval", x)?;
    for t in [gamma, beta, running_mean, running_var] {
        t.expect_shape("batch_norm_eval (per-channel tensor)", &[c])?;
        t.expect_dtype("batch_norm_eval", x.dtype())?;
    }
    let mut y = Tensor::zeros(x.shape(), x.dtype());
    if c * p == 0 {
        return Ok(y);
    }
    with_dtype!(x.dtype(), T, {
        let xs = x.as_slice::<T>()?;
        let (g, b) = (gamma.as_slice::<T>()?, beta.as_slice::<T>()?);
        let (rm, rv) = (running_mean.as_slice::<T>()?, running_var.as_slice::<T>()?);
        let eps_t = T::from_f64_lossy(eps);
        let scale: Vec<T> = (0..c).map(|ci| g[ci] / (rv[ci] + eps_t).sqrt()).collect();
        y.as_mut_slice::<T>()?
            .par_chunks_mut(c * p)
            .enumerate()
            .for_each(|(ni, yr)| {
                for ci in 0..c {
                    for j in 0..p {
                        let k = ci * p + j;
                        yr[k] = (xs[ni * c * p + k] - rm[ci]) * scale[ci] + b[ci];
                    }
                }
            });
    });
    Ok(y)
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
    #[cfg(feature = "cuda")]
    if let Some([dy, g, xh, is, mu, var]) = super::dev::all(
        "batch_norm_backward",
        [
            dy,
            gamma,
            &saved.x_hat,
            &saved.inv_std,
            &saved.mean,
            &saved.var,
        ],
    )? {
        use super::dev::wrap;
        let s = crate::cuda::ops::BatchNormSaved {
            x_hat: xh.clone(),
            inv_std: is.clone(),
            mean: mu.clone(),
            var: var.clone(),
        };
        let (dx, dg, db) = crate::cuda::ops::batch_norm_backward(dy, g, &s)?;
        return Ok((wrap(dx), wrap(dg), wrap(db)));
    }
    let (n, c, p) = geometry("batch_norm_backward", dy)?;
    dy.expect_shape("batch_norm_backward", saved.x_hat.shape())?;
    gamma.expect_shape("batch_norm_backward", &[c])?;
    let dtype = dy.dtype();
    let mut dx = Tensor::zeros(dy.shape(), dtype);
    let mut dgamma = Tensor::zeros(&[c], dtype);
    let mut dbeta = Tensor::zeros(&[c], dtype);
    let m = n * p;
    with_dtype!(dtype, T, {
        let dys = dy.as_slice::<T>()?;
        let hs = saved.x_hat.as_slice::<T>()?;
        let sums: Vec<(T, T)> = (0..c)
            .into_par_iter()
            .map(|ci| {
                let (mut sb, mut sg) = (T::zero(), T::zero());
                for ni in 0..n {
                    let r = (ni * c + ci) * p..(ni * c + ci + 1) * p;
                    for (&d, &h) in dys[r.clone()].iter().zip(&hs[r]) {
                        sb += d;
                        sg += d * h;
                    }
                }
                (sb, sg)
            })
            .collect();
        {
            let (dg, db) = (dgamma.as_mut_slice::<T>()?, dbeta.as_mut_slice::<T>()?);
            for (ci, &(sb, sg)) in sums.iter().enumerate() {
                db[ci] = sb;
                dg[ci] = sg;
            }
        }
        let g = gamma.as_slice::<T>()?;
        let is = saved.inv_std.as_slice::<T>()?;
        let inv_m = T::one() / T::from_usize(m.max(1)).unwrap_or(T::one());
        if c * p > 0 {
            dx.as_mut_slice::<T>()?
                .par_chunks_mut(c * p)
                .enumerate()
                .for_each(|(ni, dr)| {
                    for ci in 0..c {
                        let (sb, sg) = sums[ci];
                        let k0 = g[ci] * is[ci];
                        for j in 0..p {
                            let k = ci * p + j;
                            let i = ni * c * p + k;
                            dr[k] = k0 * (dys[i] - sb * inv_m - hs[i] * sg * inv_m);
                        }
                    }
                });
        }
    });
    Ok((dx, dgamma, dbeta))
}
