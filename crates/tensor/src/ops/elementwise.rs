//! Element-wise arithmetic, ReLU and bias epilogues.

use rayon::prelude::*;

#[allow(unused_imports)]
use super::num::*;

use super::{same_shape, CHUNK};
use crate::{with_dtype, Elem, Result, Tensor};

#[cfg(feature = "cuda")]
use super::dev;
#[cfg(feature = "cuda")]
use crate::cuda::ops as cu;

fn zip_map(
    op: &'static str,
    a: &Tensor,
    b: &Tensor,
    f32f: impl Fn(f32, f32) -> f32 + Sync,
    f64f: impl Fn(f64, f64) -> f64 + Sync,
) -> Result<Tensor> {
    same_shape(op, a, b)?;
    let mut out = a.zeros_like();
    match a.dtype() {
        crate::DType::F32 => map2(a.as_slice()?, b.as_slice()?, out.as_mut_slice()?, &f32f),
        crate::DType::F64 => map2(a.as_slice()?, b.as_slice()?, out.as_mut_slice()?, &f64f),
    }
    Ok(out)
}

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

/// `a + b` (same shape).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some([a, b]) = dev::all("add", [a, b])? {
        return Ok(dev::wrap(cu::add(a, b)?));
    }
    zip_map("add", a, b, |x, y| x + y, |x, y| x + y)
}

/// `a − b` (same shape).
pub fn sub(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some([a, b]) = dev::all("sub", [a, b])? {
        return Ok(dev::wrap(cu::sub(a, b)?));
    }
    zip_map("sub", a, b, |x, y| x - y, |x, y| x - y)
}

/// `a ⊙ b` (same shape).
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some([a, b]) = dev::all("mul", [a, b])? {
        return Ok(dev::wrap(cu::mul(a, b)?));
    }
    zip_map("mul", a, b, |x, y| x * y, |x, y| x * y)
}

/// `y += x`.
pub fn add_assign(y: &mut Tensor, x: &Tensor) -> Result<()> {
    axpy(y, 1.0, x)
}

/// `y ⊙= x`.
pub fn mul_assign(y: &mut Tensor, x: &Tensor) -> Result<()> {
    #[cfg(feature = "cuda")]
    if dev::same_kind("mul_assign", y, &[x])? {
        let x = dev::get("mul_assign", x)?;
        return cu::mul_assign(dev::get_mut("mul_assign", y)?, x);
    }
    same_shape("mul_assign", y, x)?;
    with_dtype!(x.dtype(), T, {
        update::<T>(y.as_mut_slice()?, x.as_slice()?, &|v, xv| *v *= xv);
    });
    Ok(())
}

/// `y += α·x` (BLAS axpy).
pub fn axpy(y: &mut Tensor, alpha: f64, x: &Tensor) -> Result<()> {
    #[cfg(feature = "cuda")]
    if dev::same_kind("axpy", y, &[x])? {
        let x = dev::get("axpy", x)?;
        return cu::axpy(dev::get_mut("axpy", y)?, alpha, x);
    }
    same_shape("axpy", y, x)?;
    with_dtype!(x.dtype(), T, {
        let a = T::from_f64_lossy(alpha);
        update::<T>(y.as_mut_slice()?, x.as_slice()?, &|v, xv| *v += a * xv);
    });
    Ok(())
}

/// `α·a + β·b` as a new tensor.
pub fn add_scaled(alpha: f64, a: &Tensor, beta: f64, b: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some([a, b]) = dev::all("add_scaled", [a, b])? {
        return Ok(dev::wrap(cu::add_scaled(alpha, a, beta, b)?));
    }
    same_shape("add_scaled", a, b)?;
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

/// `α·x` as a new tensor.
pub fn scale(x: &Tensor, alpha: f64) -> Result<Tensor> {
    let mut y = x.clone();
    scale_in_place(&mut y, alpha)?;
    Ok(y)
}

/// `x ← α·x`.
pub fn scale_in_place(x: &mut Tensor, alpha: f64) -> Result<()> {
    #[cfg(feature = "cuda")]
    if let Some(t) = x.cuda_mut() {
        return cu::scale_in_place(t, alpha);
    }
    with_dtype!(x.dtype(), T, {
        let a = T::from_f64_lossy(alpha);
        x.as_mut_slice::<T>()?
            .par_chunks_mut(CHUNK)
            .for_each(|c| c.iter_mut().for_each(|v| *v *= a));
    });
    Ok(())
}

/// `max(x, 0)` as a new tensor.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    let mut y = x.clone();
    relu_in_place(&mut y)?;
    Ok(y)
}

/// `x ← max(x, 0)`.
pub fn relu_in_place(x: &mut Tensor) -> Result<()> {
    #[cfg(feature = "cuda")]
    if let Some(t) = x.cuda_mut() {
        return cu::relu_in_place(t);
    }
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

/// ReLU backward from its output: `dx = dy · [y > 0]`.
pub fn relu_backward(dy: &Tensor, y: &Tensor) -> Result<Tensor> {
    let mut dx = dy.clone();
    relu_backward_in_place(&mut dx, y)?;
    Ok(dx)
}

/// `dy ← dy · [y > 0]` in place.
pub fn relu_backward_in_place(dy: &mut Tensor, y: &Tensor) -> Result<()> {
    #[cfg(feature = "cuda")]
    if dev::same_kind("relu_backward", dy, &[y])? {
        let y = dev::get("relu_backward", y)?;
        return cu::relu_backward_in_place(dev::get_mut("relu_backward", dy)?, y);
    }
    same_shape("relu_backward", dy, y)?;
    with_dtype!(y.dtype(), T, {
        update::<T>(dy.as_mut_slice()?, y.as_slice()?, &|d, yv| {
            if yv <= T::zero() {
                *d = T::zero()
            }
        });
    });
    Ok(())
}

fn bias_rows(op: &'static str, y: &mut Tensor, bias: &Tensor, relu: bool) -> Result<()> {
    #[cfg(feature = "cuda")]
    if dev::same_kind(op, y, &[bias])? {
        let b = dev::get(op, bias)?;
        let y = dev::get_mut(op, y)?;
        return if relu {
            cu::bias_relu_rows(y, b)
        } else {
            cu::add_bias_rows(y, b)
        };
    }
    super::rank(op, y, 2)?;
    let n = y.dim(1);
    bias.expect_shape(op, &[n])?;
    bias.expect_dtype(op, y.dtype())?;
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

/// `y[i, :] += bias` for a `[M, N]` matrix (the Linear epilogue).
pub fn add_bias_rows(y: &mut Tensor, bias: &Tensor) -> Result<()> {
    bias_rows("add_bias_rows", y, bias, false)
}

/// Fused epilogue `y[i, :] = max(y[i, :] + bias, 0)`.
pub fn bias_relu_rows(y: &mut Tensor, bias: &Tensor) -> Result<()> {
    bias_rows("bias_relu_rows", y, bias, true)
}
