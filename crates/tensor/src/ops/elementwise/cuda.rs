//! The CUDA twin of `cpu.rs`: the same ops on [`CudaTensor`]s, launching the
//! kernels of `elementwise.cu` beside this file. The API in `mod.rs` has
//! checked shapes, dtypes and devices; these functions trust them.

use crate::cuda::prelude::*;
use crate::ops::elementwise::Binary;

pub(crate) fn binary(a: &CudaTensor, b: &CudaTensor, kind: Binary) -> Result<CudaTensor> {
    let dev = a.device().clone();
    let mut out = CudaTensor::uninit(&dev, a.shape())?;
    let (n, code) = (a.n32(), kind as i32);
    launch!(dev, "elementwise.cu", "binary_f32", cfg_1d(a.numel());
        a.buf().raw(), b.buf().raw(), out.buf_mut()?.raw_mut(), &n, &code);
    Ok(out)
}

pub(crate) fn mul_assign(y: &mut CudaTensor, x: &CudaTensor) -> Result<()> {
    let dev = y.device().clone();
    let n = y.n32();
    launch!(dev, "elementwise.cu", "mul_assign_f32", cfg_1d(y.numel());
        y.buf_mut()?.raw_mut(), x.buf().raw(), &n);
    Ok(())
}

pub(crate) fn axpy(y: &mut CudaTensor, alpha: f64, x: &CudaTensor) -> Result<()> {
    let dev = y.device().clone();
    let (n, a) = (y.n32(), alpha as f32);
    launch!(dev, "elementwise.cu", "axpy_f32", cfg_1d(y.numel());
        y.buf_mut()?.raw_mut(), x.buf().raw(), &n, &a);
    Ok(())
}

pub(crate) fn add_scaled(
    alpha: f64,
    a: &CudaTensor,
    beta: f64,
    b: &CudaTensor,
) -> Result<CudaTensor> {
    let dev = a.device().clone();
    let mut out = CudaTensor::uninit(&dev, a.shape())?;
    let (n, al, be) = (a.n32(), alpha as f32, beta as f32);
    launch!(dev, "elementwise.cu", "add_scaled_f32", cfg_1d(a.numel());
        a.buf().raw(), b.buf().raw(), out.buf_mut()?.raw_mut(), &n, &al, &be);
    Ok(out)
}

pub(crate) fn scale_in_place(x: &mut CudaTensor, alpha: f64) -> Result<()> {
    let dev = x.device().clone();
    let (n, a) = (x.n32(), alpha as f32);
    launch!(dev, "elementwise.cu", "scale_f32", cfg_1d(x.numel());
        x.buf_mut()?.raw_mut(), &n, &a);
    Ok(())
}

pub(crate) fn fill(x: &mut CudaTensor, value: f64) -> Result<()> {
    let dev = x.device().clone();
    let (n, v) = (x.n32(), value as f32);
    launch!(dev, "elementwise.cu", "fill_f32", cfg_1d(x.numel());
        x.buf_mut()?.raw_mut(), &n, &v);
    Ok(())
}

pub(crate) fn relu_in_place(x: &mut CudaTensor) -> Result<()> {
    let dev = x.device().clone();
    let n = x.n32();
    launch!(dev, "elementwise.cu", "relu_f32", cfg_1d(x.numel());
        x.buf_mut()?.raw_mut(), &n);
    Ok(())
}

pub(crate) fn relu_backward_in_place(dy: &mut CudaTensor, y: &CudaTensor) -> Result<()> {
    let dev = dy.device().clone();
    let n = dy.n32();
    launch!(dev, "elementwise.cu", "relu_backward_f32", cfg_1d(dy.numel());
        dy.buf_mut()?.raw_mut(), y.buf().raw(), &n);
    Ok(())
}

/// The Linear epilogue `y[i, :] += bias` (ReLU fused when `relu`); its
/// kernel lives in `gemm.cu` beside the GEMM it follows.
pub(crate) fn bias_rows(y: &mut CudaTensor, bias: &CudaTensor, relu: bool) -> Result<()> {
    let (rows, cols) = (y.dim(0), y.dim(1));
    let dev = y.device().clone();
    let (r, c, flag) = (rows as u32, cols as u32, relu as i32);
    launch!(dev, "gemm.cu", "bias_rows_f32", cfg_1d(rows * cols);
        y.buf_mut()?.raw_mut(), bias.buf().raw(), &r, &c, &flag);
    Ok(())
}
