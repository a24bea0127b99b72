//! The CPU reference of [`super`]: one rayon task per row; each row sums
//! in order, so results do not depend on the thread count. Operands were
//! checked by the API.

use rayon::prelude::*;

#[allow(unused_imports)]
use crate::ops::num::*;

use crate::{with_dtype, Elem, Result, Tensor};

fn softmax_row<T: Elem>(x: &[T], out: &mut [T]) {
    let mx = x.iter().copied().fold(T::neg_infinity(), T::max);
    let mut s = T::zero();
    for (o, &v) in out.iter_mut().zip(x) {
        *o = (v - mx).exp();
        s += *o;
    }
    let inv = T::one() / s;
    out.iter_mut().for_each(|o| *o *= inv);
}

pub(super) fn softmax(x: &Tensor) -> Result<Tensor> {
    let m = x.dim(1);
    let mut y = x.zeros_like();
    if m == 0 {
        return Ok(y);
    }
    with_dtype!(x.dtype(), T, {
        let xs = x.as_slice::<T>()?;
        y.as_mut_slice::<T>()?
            .par_chunks_mut(m)
            .zip(xs.par_chunks(m))
            .for_each(|(o, r)| softmax_row(r, o));
    });
    Ok(y)
}

pub(super) fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let m = x.dim(1);
    let mut y = x.zeros_like();
    if m == 0 {
        return Ok(y);
    }
    with_dtype!(x.dtype(), T, {
        let xs = x.as_slice::<T>()?;
        y.as_mut_slice::<T>()?
            .par_chunks_mut(m)
            .zip(xs.par_chunks(m))
            .for_each(|(o, r)| {
                let mx = r.iter().copied().fold(T::neg_infinity(), T::max);
                let mut s = T::zero();
                for &v in r {
                    s += (v - mx).exp();
                }
                let lse = mx + s.ln();
                for (oo, &v) in o.iter_mut().zip(r) {
                    *oo = v - lse;
                }
            });
    });
    Ok(y)
}

pub(super) fn softmax_backward(p: &Tensor, dp: &Tensor) -> Result<Tensor> {
    let m = p.dim(1);
    let mut dx = p.zeros_like();
    if m == 0 {
        return Ok(dx);
    }
    with_dtype!(p.dtype(), T, {
        let (ps, dps) = (p.as_slice::<T>()?, dp.as_slice::<T>()?);
        dx.as_mut_slice::<T>()?
            .par_chunks_mut(m)
            .zip(ps.par_chunks(m).zip(dps.par_chunks(m)))
            .for_each(|(o, (pr, dr))| {
                let mut s = T::zero();
                for (&a, &b) in pr.iter().zip(dr) {
                    s += a * b;
                }
                for ((oo, &a), &b) in o.iter_mut().zip(pr).zip(dr) {
                    *oo = a * (b - s);
                }
            });
    });
    Ok(dx)
}

pub(super) fn softmax_cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<(f64, Tensor)> {
    let (b, m) = (logits.dim(0), logits.dim(1));
    let mut grad = logits.zeros_like();
    if b == 0 {
        return Ok((0.0, grad));
    }
    let loss = with_dtype!(logits.dtype(), T, {
        let xs = logits.as_slice::<T>()?;
        let inv_b = T::one() / T::from_usize(b).unwrap_or(T::one());
        let losses: Vec<T> = grad
            .as_mut_slice::<T>()?
            .par_chunks_mut(m)
            .zip(xs.par_chunks(m))
            .zip(labels.par_iter())
            .map(|((g, r), &y)| {
                let mx = r.iter().copied().fold(T::neg_infinity(), T::max);
                let mut s = T::zero();
                for &v in r {
                    s += (v - mx).exp();
                }
                let lse = mx + s.ln();
                for (gg, &v) in g.iter_mut().zip(r) {
                    *gg = (v - lse).exp() * inv_b;
                }
                g[y] -= inv_b;
                lse - r[y]
            })
            .collect();
        let mut total = T::zero();
        for l in losses {
            total += l;
        }
        (total * inv_b).to_f64_lossless()
    });
    Ok((loss, grad))
}
