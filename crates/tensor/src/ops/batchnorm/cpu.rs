//! The CPU reference of [`super`]: each channel's sums run sequentially in
//! a fixed order, channels in parallel, so the result does not depend on
//! the thread count. Operands were checked by the API.

use rayon::prelude::*;

#[allow(unused_imports)]
use crate::ops::num::*;

use super::{BatchNormSaved, BnGeom};
use crate::{with_dtype, Elem, Result, Tensor};

#[allow(clippy::too_many_arguments)]
pub(super) fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &mut Tensor,
    running_var: &mut Tensor,
    momentum: f64,
    eps: f64,
    g: BnGeom,
) -> Result<(Tensor, BatchNormSaved)> {
    let BnGeom { n, c, p } = g;
    let m = n * p;
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

pub(super) fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    g: BnGeom,
) -> Result<Tensor> {
    let BnGeom { c, p, .. } = g;
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

pub(super) fn batch_norm_backward(
    dy: &Tensor,
    gamma: &Tensor,
    saved: &BatchNormSaved,
    g: BnGeom,
) -> Result<(Tensor, Tensor, Tensor)> {
    let BnGeom { n, c, p } = g;
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
