//! The CUDA twin of `cpu.rs`: the per-row ops on [`CudaTensor`]s, launching
//! the kernels of `rows.cu` beside this file. The API in `mod.rs` has
//! checked shapes, dtypes and devices, and every device tensor's size fits
//! the kernels' 32-bit arguments (checked when it was allocated).

use crate::cuda::prelude::*;

pub(crate) fn scale_rows(x: &CudaTensor, k: &CudaTensor) -> Result<CudaTensor> {
    let (n, d) = (x.n32(), x.dim(1) as u32);
    let dev = x.device().clone();
    let mut out = CudaTensor::uninit(&dev, x.shape())?;
    launch!(dev, "rows.cu", "scale_rows_f32", cfg_1d(x.numel());
        x.buf().raw(), k.buf().raw(), out.buf_mut()?.raw_mut(), &n, &d);
    Ok(out)
}

pub(crate) fn combine_rows(
    alpha: &CudaTensor,
    a: &CudaTensor,
    beta: &CudaTensor,
    b: &CudaTensor,
) -> Result<CudaTensor> {
    let (n, d) = (a.n32(), a.dim(1) as u32);
    let dev = a.device().clone();
    let mut out = CudaTensor::uninit(&dev, a.shape())?;
    launch!(dev, "rows.cu", "combine_rows_f32", cfg_1d(a.numel());
        alpha.buf().raw(), a.buf().raw(), beta.buf().raw(), b.buf().raw(),
        out.buf_mut()?.raw_mut(), &n, &d);
    Ok(out)
}

/// Row dot products with `b` (kernel mode 0), or row sums without (mode 1,
/// `b` unused).
pub(crate) fn row_reduce(a: &CudaTensor, b: Option<&CudaTensor>) -> Result<CudaTensor> {
    let mode = if b.is_some() { 0 } else { 1 };
    let b = b.unwrap_or(a);
    let (rows, d) = (a.dim(0), a.dim(1) as u32);
    let rows32 = rows as u32;
    let dev = a.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[rows])?;
    launch!(dev, "rows.cu", "row_reduce_f32", cfg_1d(rows);
        a.buf().raw(), b.buf().raw(), out.buf_mut()?.raw_mut(), &rows32, &d, &mode);
    Ok(out)
}

pub(crate) fn row_max_abs(a: &CudaTensor) -> Result<CudaTensor> {
    let (rows, d) = (a.dim(0), a.dim(1) as u32);
    let rows32 = rows as u32;
    let dev = a.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[rows])?;
    launch!(dev, "rows.cu", "row_max_abs_f32", cfg_1d(rows);
        a.buf().raw(), out.buf_mut()?.raw_mut(), &rows32, &d);
    Ok(out)
}

pub(crate) fn argmax_rows(x: &CudaTensor) -> Result<Vec<usize>> {
    let (rows, m) = (x.dim(0), x.dim(1) as u32);
    let rows32 = rows as u32;
    let dev = x.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[rows])?;
    launch!(dev, "rows.cu", "argmax_rows_f32", cfg_1d(rows);
        x.buf().raw(), out.buf_mut()?.raw_mut(), &rows32, &m);
    // Indices below 2^24 are exact in f32; the class count is far below.
    Ok(out.to_vec()?.into_iter().map(|v| v as usize).collect())
}

pub(crate) fn sq_dist_scores(
    cross: &CudaTensor,
    an: &CudaTensor,
    wn: &CudaTensor,
    k: f64,
) -> Result<CudaTensor> {
    let (n, m) = (cross.n32(), cross.dim(1) as u32);
    let dev = cross.device().clone();
    let mut out = CudaTensor::uninit(&dev, cross.shape())?;
    launch!(dev, "rows.cu", "sq_dist_scores_f32", cfg_1d(cross.numel());
        cross.buf().raw(), an.buf().raw(), wn.buf().raw(), out.buf_mut()?.raw_mut(),
        &n, &m, &k);
    Ok(out)
}

pub(crate) fn time_embedding(t: &CudaTensor, b: usize, dim: usize) -> Result<CudaTensor> {
    let h = dim / 2;
    let h32 = h as u32;
    let dev = t.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[b, dim])?;
    let n = out.n32() / 2;
    launch!(dev, "rows.cu", "time_embedding_f32", cfg_1d(b * h);
        t.buf().raw(), out.buf_mut()?.raw_mut(), &n, &h32);
    Ok(out)
}

pub(crate) fn time_embedding_backward(
    t: &CudaTensor,
    dy: &CudaTensor,
    dim: usize,
) -> Result<CudaTensor> {
    let rows = t.numel();
    let (rows32, h32) = (rows as u32, (dim / 2) as u32);
    let dev = t.device().clone();
    let mut out = CudaTensor::uninit(&dev, t.shape())?;
    launch!(dev, "rows.cu", "time_embedding_backward_f32", cfg_1d(rows);
        t.buf().raw(), dy.buf().raw(), out.buf_mut()?.raw_mut(), &rows32, &h32);
    Ok(out)
}
