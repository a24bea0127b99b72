//! Host kernels of the per-row ops. Rows are independent, so the rayon
//! split is one task per row (fixed by the shape); every per-row sum adds the
//! columns in index order, so results do not depend on the thread count.

use rayon::prelude::*;

#[allow(unused_imports)]
use crate::ops::num::*;

use super::time_frequencies;
use crate::{with_dtype, Elem, Result, Tensor};

/// The coefficients of `k` as `f64` (exact for either dtype).
fn coeffs(k: &Tensor) -> Result<Vec<f64>> {
    k.try_to_vec_f64()
}

pub(super) fn scale_rows(x: &Tensor, k: &Tensor) -> Result<Tensor> {
    let d = x.dim(1);
    let k = coeffs(k)?;
    let mut out = x.zeros_like();
    with_dtype!(x.dtype(), T, {
        let xs = x.as_slice::<T>()?;
        let os = out.as_mut_slice::<T>()?;
        if d > 0 {
            os.par_chunks_mut(d).enumerate().for_each(|(i, row)| {
                let ki = k[i];
                for (j, v) in row.iter_mut().enumerate() {
                    *v = T::from_f64_lossy(xs[i * d + j].to_f64_lossless() * ki);
                }
            });
        }
    });
    Ok(out)
}

pub(super) fn combine_rows(
    alpha: &Tensor,
    a: &Tensor,
    beta: &Tensor,
    b: &Tensor,
) -> Result<Tensor> {
    let d = a.dim(1);
    let (ka, kb) = (coeffs(alpha)?, coeffs(beta)?);
    let mut out = a.zeros_like();
    with_dtype!(a.dtype(), T, {
        let (sa, sb) = (a.as_slice::<T>()?, b.as_slice::<T>()?);
        let so = out.as_mut_slice::<T>()?;
        if d > 0 {
            so.par_chunks_mut(d).enumerate().for_each(|(i, row)| {
                let (al, be) = (T::from_f64_lossy(ka[i]), T::from_f64_lossy(kb[i]));
                for (j, v) in row.iter_mut().enumerate() {
                    *v = al * sa[i * d + j] + be * sb[i * d + j];
                }
            });
        }
    });
    Ok(out)
}

/// `Σ_j a_ij·b_ij` (or `Σ_j a_ij` without `b`) in `f64`, column order.
pub(super) fn row_dots(a: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let (rows, d) = (a.dim(0), a.dim(1));
    let mut out = vec![0f64; rows];
    with_dtype!(a.dtype(), T, {
        let sa = a.as_slice::<T>()?;
        let sb = match b {
            Some(b) => Some(b.as_slice::<T>()?),
            None => None,
        };
        out.par_iter_mut().enumerate().for_each(|(i, o)| {
            let mut s = 0f64;
            for j in i * d..(i + 1) * d {
                s += match sb {
                    Some(sb) => sa[j].to_f64_lossless() * sb[j].to_f64_lossless(),
                    None => sa[j].to_f64_lossless(),
                };
            }
            *o = s;
        });
    });
    Tensor::from_vec(out, &[rows])
}

pub(super) fn row_max_abs(a: &Tensor) -> Result<Tensor> {
    let (rows, d) = (a.dim(0), a.dim(1));
    let mut out = vec![0f64; rows];
    with_dtype!(a.dtype(), T, {
        let sa = a.as_slice::<T>()?;
        out.par_iter_mut().enumerate().for_each(|(i, o)| {
            *o = sa[i * d..(i + 1) * d]
                .iter()
                .fold(0.0f64, |m, v| m.max(v.to_f64_lossless().abs()));
        });
    });
    Tensor::from_vec(out, &[rows])
}

pub(super) fn argmax_rows(x: &Tensor) -> Result<Vec<usize>> {
    let (rows, m) = (x.dim(0), x.dim(1));
    let mut out = vec![0usize; rows];
    with_dtype!(x.dtype(), T, {
        let v = x.as_slice::<T>()?;
        out.par_iter_mut().enumerate().for_each(|(i, o)| {
            let r = &v[i * m..(i + 1) * m];
            let mut best = 0;
            for j in 1..m {
                if r[j] > r[best] {
                    best = j;
                }
            }
            *o = best;
        });
    });
    Ok(out)
}

pub(super) fn sq_dist_scores(cross: &Tensor, an: &Tensor, wn: &Tensor, k: f64) -> Result<Tensor> {
    let m = cross.dim(1);
    let (an, wn) = (an.try_to_vec_f64()?, wn.try_to_vec_f64()?);
    let mut out = cross.zeros_like();
    with_dtype!(cross.dtype(), T, {
        let c = cross.as_slice::<T>()?;
        let o = out.as_mut_slice::<T>()?;
        if m > 0 {
            o.par_chunks_mut(m).enumerate().for_each(|(i, row)| {
                for (y, v) in row.iter_mut().enumerate() {
                    let s = -(an[i] + wn[y] - 2.0 * c[i * m + y].to_f64_lossless()) * k;
                    *v = T::from_f64_lossy(s);
                }
            });
        }
    });
    Ok(out)
}

pub(super) fn time_embedding(t: &Tensor, b: usize, dim: usize) -> Result<Tensor> {
    let h = dim / 2;
    let w = time_frequencies(h);
    let mut y = Tensor::zeros(&[b, dim], t.dtype());
    with_dtype!(t.dtype(), T, {
        let ts = t.as_slice::<T>()?;
        let ys = y.as_mut_slice::<T>()?;
        ys.par_chunks_mut(dim).enumerate().for_each(|(i, row)| {
            let tv = ts[i].to_f64_lossless();
            for (k, &wk) in w.iter().enumerate() {
                let a = tv * wk;
                row[k] = T::from_f64_lossy(a.sin());
                row[h + k] = T::from_f64_lossy(a.cos());
            }
        });
    });
    Ok(y)
}

pub(super) fn time_embedding_backward(t: &Tensor, dy: &Tensor, dim: usize) -> Result<Tensor> {
    let h = dim / 2;
    let w = time_frequencies(h);
    let mut dt = t.zeros_like();
    with_dtype!(t.dtype(), T, {
        let ts = t.as_slice::<T>()?;
        let dys = dy.as_slice::<T>()?;
        let out = dt.as_mut_slice::<T>()?;
        out.par_iter_mut().enumerate().for_each(|(i, o)| {
            let tv = ts[i].to_f64_lossless();
            let mut s = 0.0f64;
            for (k, &wk) in w.iter().enumerate() {
                let a = tv * wk;
                s += wk
                    * (a.cos() * dys[i * dim + k].to_f64_lossless()
                        - a.sin() * dys[i * dim + h + k].to_f64_lossless());
            }
            *o = T::from_f64_lossy(s);
        });
    });
    Ok(dt)
}
