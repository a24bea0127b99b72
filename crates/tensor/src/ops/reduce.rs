//! Reductions. Every sum runs in a fixed order: per fixed-size chunk, then
//! the chunk partials in index order — independent of the thread count.

use rayon::prelude::*;

#[allow(unused_imports)]
use super::num::*;

use super::CHUNK;
use crate::{with_dtype, Elem, Result, Tensor};

fn chunked_sum<T: Elem>(x: &[T], f: impl Fn(T) -> T + Sync) -> T {
    let partial: Vec<T> = x
        .par_chunks(CHUNK)
        .map(|c| {
            let mut s = T::zero();
            for &v in c {
                s += f(v);
            }
            s
        })
        .collect();
    let mut s = T::zero();
    for p in partial {
        s += p;
    }
    s
}

/// `Σ x` (accumulated in the tensor's dtype), returned as `f64`.
pub fn sum(x: &Tensor) -> Result<f64> {
    #[cfg(feature = "cuda")]
    if let Some(t) = x.cuda() {
        return crate::cuda::ops::sum(t);
    }
    with_dtype!(x.dtype(), T, {
        Ok(chunked_sum::<T>(x.as_slice()?, |v| v).to_f64_lossless())
    })
}

/// `Σ x / numel` (0 for an empty tensor).
pub fn mean(x: &Tensor) -> Result<f64> {
    let n = x.numel();
    Ok(if n == 0 { 0.0 } else { sum(x)? / n as f64 })
}

/// `Σ x²`.
pub fn sum_sq(x: &Tensor) -> Result<f64> {
    #[cfg(feature = "cuda")]
    if let Some(t) = x.cuda() {
        return crate::cuda::ops::sum_sq(t);
    }
    with_dtype!(x.dtype(), T, {
        Ok(chunked_sum::<T>(x.as_slice()?, |v| v * v).to_f64_lossless())
    })
}

/// `Σ a ⊙ b`.
pub fn dot(a: &Tensor, b: &Tensor) -> Result<f64> {
    #[cfg(feature = "cuda")]
    if let Some([a, b]) = super::dev::all("dot", [a, b])? {
        return crate::cuda::ops::dot(a, b);
    }
    super::same_shape("dot", a, b)?;
    with_dtype!(a.dtype(), T, {
        let (av, bv) = (a.as_slice::<T>()?, b.as_slice::<T>()?);
        let partial: Vec<T> = av
            .par_chunks(CHUNK)
            .zip(bv.par_chunks(CHUNK))
            .map(|(x, y)| {
                let mut s = T::zero();
                for (&p, &q) in x.iter().zip(y) {
                    s += p * q;
                }
                s
            })
            .collect();
        let mut s = T::zero();
        for p in partial {
            s += p;
        }
        Ok(s.to_f64_lossless())
    })
}

/// Column sums of a `[M, N]` matrix: `[N]` (the bias gradient of a Linear layer).
pub fn sum_rows(x: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(t) = x.cuda() {
        return Ok(super::dev::wrap(crate::cuda::ops::sum_rows(t)?));
    }
    super::rank("sum_rows", x, 2)?;
    let (m, n) = (x.dim(0), x.dim(1));
    let mut out = Tensor::zeros(&[n], x.dtype());
    const COLS: usize = 64;
    with_dtype!(x.dtype(), T, {
        let xs = x.as_slice::<T>()?;
        out.as_mut_slice::<T>()?
            .par_chunks_mut(COLS)
            .enumerate()
            .for_each(|(bi, o)| {
                let c0 = bi * COLS;
                for r in 0..m {
                    let row = &xs[r * n + c0..r * n + c0 + o.len()];
                    for (acc, &v) in o.iter_mut().zip(row) {
                        *acc += v;
                    }
                }
            });
    });
    Ok(out)
}
