//! The CPU reference of [`super`]: every sum runs in a fixed order, per
//! fixed-size chunk, then the chunk partials in index order — independent
//! of the thread count.

use rayon::prelude::*;

#[allow(unused_imports)]
use crate::ops::num::*;

use crate::ops::CHUNK;
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

pub(super) fn sum(x: &Tensor) -> Result<f64> {
    with_dtype!(x.dtype(), T, {
        Ok(chunked_sum::<T>(x.as_slice()?, |v| v).to_f64_lossless())
    })
}

pub(super) fn sum_sq(x: &Tensor) -> Result<f64> {
    with_dtype!(x.dtype(), T, {
        Ok(chunked_sum::<T>(x.as_slice()?, |v| v * v).to_f64_lossless())
    })
}

pub(super) fn dot(a: &Tensor, b: &Tensor) -> Result<f64> {
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

pub(super) fn sum_rows(x: &Tensor) -> Result<Tensor> {
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
