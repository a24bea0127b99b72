//! Row-wise softmax, log-softmax and the fused softmax cross-entropy.

use rayon::prelude::*;

#[allow(unused_imports)]
use super::num::*;

use crate::{with_dtype, Elem, Error, Result, Tensor};

fn rows(op: &'static str, x: &Tensor) -> Result<(usize, usize)> {
    super::rank(op, x, 2)?;
    Ok((x.dim(0), x.dim(1)))
}

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

/// `softmax(x)_ij = exp(x_ij − max_j x_ij) / Σ_k exp(x_ik − max_j x_ij)` per row.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(t) = x.cuda() {
        return Ok(super::dev::wrap(crate::cuda::ops::softmax(t)?));
    }
    let (_, m) = rows("softmax", x)?;
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

/// `log_softmax(x)_ij = x_ij − max − ln Σ_k exp(x_ik − max)` per row.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(t) = x.cuda() {
        return Ok(super::dev::wrap(crate::cuda::ops::log_softmax(t)?));
    }
    let (_, m) = rows("log_softmax", x)?;
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

/// Backward of softmax given its output `p` and upstream `dp`:
/// `dx_ij = p_ij·(dp_ij − Σ_k dp_ik·p_ik)`.
pub fn softmax_backward(p: &Tensor, dp: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some([p, dp]) = super::dev::all("softmax_backward", [p, dp])? {
        return Ok(super::dev::wrap(crate::cuda::ops::softmax_backward(p, dp)?));
    }
    let (_, m) = rows("softmax_backward", p)?;
    super::same_shape("softmax_backward", p, dp)?;
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

/// Fused softmax cross-entropy over a batch.
///
/// `L = (1/B)·Σ_i −log softmax(x_i)[y_i]`; returns `(L, ∂L/∂x)` with
/// `∂L/∂x_ij = (softmax(x_i)_j − [j = y_i]) / B`.
pub fn softmax_cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<(f64, Tensor)> {
    #[cfg(feature = "cuda")]
    if let Some(t) = logits.cuda() {
        let (l, g) = crate::cuda::ops::softmax_cross_entropy(t, labels)?;
        return Ok((l, super::dev::wrap(g)));
    }
    let (b, m) = rows("softmax_cross_entropy", logits)?;
    if labels.len() != b {
        return Err(Error::LengthMismatch {
            op: "softmax_cross_entropy (labels)",
            shape: logits.shape().to_vec(),
            needed: b,
            len: labels.len(),
        });
    }
    if let Some((row, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= m) {
        return Err(Error::LabelOutOfRange {
            op: "softmax_cross_entropy",
            row,
            label,
            classes: m,
        });
    }
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
