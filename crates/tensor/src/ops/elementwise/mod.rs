//! Element-wise arithmetic, ReLU and bias epilogues.
//!
//! Every op checks its operands here (same shape, same dtype, one device),
//! then runs `cpu.rs` or its CUDA twin `cuda.rs` (kernels in
//! `elementwise.cu`). The CUDA kernels are compiled with `--fmad=false`, so
//! they agree with the CPU bit for bit.

mod cpu;

use super::{dev, same_shape};
use crate::cuda::kernels::elementwise as cuda;
use crate::{Result, Tensor};

/// The binary element-wise ops, by the code the kernel switches on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Binary {
    Add = 0,
    Sub = 1,
    Mul = 2,
}

fn binary(op: &'static str, a: &Tensor, b: &Tensor, kind: Binary) -> Result<Tensor> {
    same_shape(op, a, b)?;
    match dev::all(op, [a, b])? {
        None => cpu::binary(a, b, kind),
        Some([a, b]) => Ok(dev::wrap(cuda::binary(a, b, kind)?)),
    }
}

/// `a + b` (same shape).
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("add", a, b, Binary::Add)
}

/// `a − b` (same shape).
pub fn sub(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("sub", a, b, Binary::Sub)
}

/// `a ⊙ b` (same shape).
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("mul", a, b, Binary::Mul)
}

/// `y += x`.
pub fn add_assign(y: &mut Tensor, x: &Tensor) -> Result<()> {
    axpy(y, 1.0, x)
}

/// `y ⊙= x`.
pub fn mul_assign(y: &mut Tensor, x: &Tensor) -> Result<()> {
    same_shape("mul_assign", y, x)?;
    if dev::same_kind("mul_assign", y, &[x])? {
        let x = dev::get("mul_assign", x)?;
        return cuda::mul_assign(dev::get_mut("mul_assign", y)?, x);
    }
    cpu::mul_assign(y, x)
}

/// `y += α·x` (BLAS axpy).
pub fn axpy(y: &mut Tensor, alpha: f64, x: &Tensor) -> Result<()> {
    same_shape("axpy", y, x)?;
    if dev::same_kind("axpy", y, &[x])? {
        let x = dev::get("axpy", x)?;
        return cuda::axpy(dev::get_mut("axpy", y)?, alpha, x);
    }
    cpu::axpy(y, alpha, x)
}

/// `α·a + β·b` as a new tensor.
pub fn add_scaled(alpha: f64, a: &Tensor, beta: f64, b: &Tensor) -> Result<Tensor> {
    same_shape("add_scaled", a, b)?;
    match dev::all("add_scaled", [a, b])? {
        None => cpu::add_scaled(alpha, a, beta, b),
        Some([a, b]) => Ok(dev::wrap(cuda::add_scaled(alpha, a, beta, b)?)),
    }
}

/// `α·x` as a new tensor.
pub fn scale(x: &Tensor, alpha: f64) -> Result<Tensor> {
    let mut y = x.clone();
    scale_in_place(&mut y, alpha)?;
    Ok(y)
}

/// `x ← α·x`.
pub fn scale_in_place(x: &mut Tensor, alpha: f64) -> Result<()> {
    match x.cuda_mut() {
        Some(t) => cuda::scale_in_place(t, alpha),
        None => cpu::scale_in_place(x, alpha),
    }
}

/// `x ← value` everywhere (the device path of [`Tensor::try_fill`]).
pub(crate) fn fill(x: &mut Tensor, value: f64) -> Result<()> {
    match x.cuda_mut() {
        Some(t) if value == 0.0 => t.zero(),
        Some(t) => cuda::fill(t, value),
        None => {
            cpu::fill(x, value);
            Ok(())
        }
    }
}

/// `max(x, 0)` as a new tensor.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    let mut y = x.clone();
    relu_in_place(&mut y)?;
    Ok(y)
}

/// `x ← max(x, 0)`.
pub fn relu_in_place(x: &mut Tensor) -> Result<()> {
    match x.cuda_mut() {
        Some(t) => cuda::relu_in_place(t),
        None => cpu::relu_in_place(x),
    }
}

/// ReLU backward from its output: `dx = dy · [y > 0]`.
pub fn relu_backward(dy: &Tensor, y: &Tensor) -> Result<Tensor> {
    let mut dx = dy.clone();
    relu_backward_in_place(&mut dx, y)?;
    Ok(dx)
}

/// `dy ← dy · [y > 0]` in place.
pub fn relu_backward_in_place(dy: &mut Tensor, y: &Tensor) -> Result<()> {
    same_shape("relu_backward", dy, y)?;
    if dev::same_kind("relu_backward", dy, &[y])? {
        let y = dev::get("relu_backward", y)?;
        return cuda::relu_backward_in_place(dev::get_mut("relu_backward", dy)?, y);
    }
    cpu::relu_backward_in_place(dy, y)
}

/// `y[i, :] += bias` (then ReLU when `relu`) for a `[M, N]` matrix and an
/// `[N]` bias of the same dtype and device.
fn bias_rows(op: &'static str, y: &mut Tensor, bias: &Tensor, relu: bool) -> Result<()> {
    super::rank(op, y, 2)?;
    bias.expect_shape(op, &[y.dim(1)])?;
    bias.expect_dtype(op, y.dtype())?;
    if dev::same_kind(op, y, &[bias])? {
        let b = dev::get(op, bias)?;
        return cuda::bias_rows(dev::get_mut(op, y)?, b, relu);
    }
    cpu::bias_rows(y, bias, relu)
}

/// `y[i, :] += bias` for a `[M, N]` matrix (the Linear epilogue).
pub fn add_bias_rows(y: &mut Tensor, bias: &Tensor) -> Result<()> {
    bias_rows("add_bias_rows", y, bias, false)
}

/// Fused epilogue `y[i, :] = max(y[i, :] + bias, 0)`.
pub fn bias_relu_rows(y: &mut Tensor, bias: &Tensor) -> Result<()> {
    bias_rows("bias_relu_rows", y, bias, true)
}
