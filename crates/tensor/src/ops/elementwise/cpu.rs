//! The CPU reference of [`super`]: rayon over fixed chunks of
//! [`CHUNK`](crate::ops::CHUNK) elements, so results do not depend on the
//! thread count. Operands were checked by the API.

use rayon::prelude::*;

#[allow(unused_imports)]
use crate::ops::num::*;

use super::Binary;
use crate::ops::CHUNK;
use crate::{with_dtype, Elem, Result, Tensor};

fn map2<T: Elem>(a: &[T], b: &[T], o: &mut [T], f: &(impl Fn(T, T) -> T + Sync)) {
    o.par_chunks_mut(CHUNK).enumerate().for_each(|(i, oc)| {
        let s = i * CHUNK;
        for (j, v) in oc.iter_mut().enumerate() {
            *v = f(a[s + j], b[s + j]);
        }
    });
}

fn update<T: Elem>(y: &mut [T], x: &[T], f: &(impl Fn(&mut T, T) + Sync)) {
    y.par_chunks_mut(CHUNK).enumerate().for_each(|(i, yc)| {
        let s = i * CHUNK;
        for (j, v) in yc.iter_mut().enumerate() {
            f(v, x[s + j]);
        }
    });
}

pub(super) fn binary(a: &Tensor, b: &Tensor, kind: Binary) -> Result<Tensor> {
    let mut out = a.zeros_like();
    with_dtype!(a.dtype(), T, {
        let (sa, sb, so) = (
            a.as_slice::<T>()?,
            b.as_slice::<T>()?,
            out.as_mut_slice::<T>()?,
        );
        match kind {
            Binary::Add => map2(sa, sb, so, &|x, y| x + y),
            Binary::Sub => map2(sa, sb, so, &|x, y| x - y),
            Binary::Mul => map2(sa, sb, so, &|x, y| x * y),
        }
    });
    Ok(out)
}

pub(super) fn mul_assign(y: &mut Tensor, x: &Tensor) -> Result<()> {
    with_dtype!(x.dtype(), T, {
        update::<T>(y.as_mut_slice()?, x.as_slice()?, &|v, xv| *v *= xv);
    });
    Ok(())
}

pub(super) fn axpy(y: &mut Tensor, alpha: f64, x: &Tensor) -> Result<()> {
    with_dtype!(x.dtype(), T, {
        let a = T::from_f64_lossy(alpha);
        update::<T>(y.as_mut_slice()?, x.as_slice()?, &|v, xv| *v += a * xv);
    });
    Ok(())
}

pub(super) fn add_scaled(alpha: f64, a: &Tensor, beta: f64, b: &Tensor) -> Result<Tensor> {
    let mut out = a.zeros_like();
    with_dtype!(a.dtype(), T, {
        let (al, be) = (T::from_f64_lossy(alpha), T::from_f64_lossy(beta));
        map2::<T>(
            a.as_slice()?,
            b.as_slice()?,
            out.as_mut_slice()?,
            &|x, y| al * x + be * y,
        );
    });
    Ok(out)
}

pub(super) fn scale_in_place(x: &mut Tensor, alpha: f64) -> Result<()> {
    with_dtype!(x.dtype(), T, {
        let a = T::from_f64_lossy(alpha);
        x.as_mut_slice::<T>()?
            .par_chunks_mut(CHUNK)
            .for_each(|c| c.iter_mut().for_each(|v| *v *= a));
    });
    Ok(())
}

pub(super) fn relu_in_place(x: &mut Tensor) -> Result<()> {
    with_dtype!(x.dtype(), T, {
        x.as_mut_slice::<T>()?.par_chunks_mut(CHUNK).for_each(|c| {
            c.iter_mut().for_each(|v| {
                if *v < T::zero() {
                    *v = T::zero()
                }
            })
        });
    });
    Ok(())
}

pub(super) fn relu_backward_in_place(dy: &mut Tensor, y: &Tensor) -> Result<()> {
    with_dtype!(y.dtype(), T, {
        update::<T>(dy.as_mut_slice()?, y.as_slice()?, &|d, yv| {
            if yv <= T::zero() {
                *d = T::zero()
            }
        });
    });
    Ok(())
}

pub(super) fn bias_rows(y: &mut Tensor, bias: &Tensor, relu: bool) -> Result<()> {
    let n = y.dim(1);
    if n == 0 {
        return Ok(());
    }
    with_dtype!(y.dtype(), T, {
        let b = bias.as_slice::<T>()?;
        y.as_mut_slice::<T>()?.par_chunks_mut(n).for_each(|row| {
            for (v, &bv) in row.iter_mut().zip(b) {
                let s = *v + bv;
                *v = if relu && s < T::zero() { T::zero() } else { s };
            }
        });
    });
    Ok(())
}

/// `x ← value` everywhere.
pub(super) fn fill(x: &mut Tensor, value: f64) {
    x.fill(value);
}
