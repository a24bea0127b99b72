//! The CUDA twin of `cpu.rs`: the same ops on [`CudaTensor`]s, launching
//! the kernels of `softmax.cu` beside this file. The API in `mod.rs` has
//! checked shapes, dtypes and devices; these functions trust them.

use crate::cuda::prelude::*;

/// Softmax (or log-softmax when `log`) of every row.
pub(crate) fn softmax_like(x: &CudaTensor, log: bool) -> Result<CudaTensor> {
    let (rows, cols) = (x.dim(0), x.dim(1));
    let dev = x.device().clone();
    let mut y = CudaTensor::uninit(&dev, x.shape())?;
    let c32 = cols as u32;
    let cfg = if cols == 0 { None } else { cfg_rows(rows) };
    if log {
        launch!(dev, "softmax.cu", "log_softmax_rows_f32", cfg;
            x.buf().raw(), y.buf_mut()?.raw_mut(), &c32);
    } else {
        launch!(dev, "softmax.cu", "softmax_rows_f32", cfg;
            x.buf().raw(), y.buf_mut()?.raw_mut(), &c32);
    }
    Ok(y)
}

/// Backward of softmax given its output `p` and upstream `dp`:
/// `dx_ij = p_ij·(dp_ij − Σ_k dp_ik·p_ik)`.
pub(crate) fn softmax_backward(p: &CudaTensor, dp: &CudaTensor) -> Result<CudaTensor> {
    let (rows, cols) = (p.dim(0), p.dim(1));
    let dev = p.device().clone();
    let mut dx = CudaTensor::uninit(&dev, p.shape())?;
    let c32 = cols as u32;
    launch!(dev, "softmax.cu", "softmax_backward_rows_f32",
        if cols == 0 { None } else { cfg_rows(rows) };
        p.buf().raw(), dp.buf().raw(), dx.buf_mut()?.raw_mut(), &c32);
    Ok(dx)
}

/// Fused softmax cross-entropy over a batch:
/// `L = (1/B)·Σ_i −log softmax(x_i)[y_i]`; returns `(L, ∂L/∂x)` with
/// `∂L/∂x_ij = (softmax(x_i)_j − [j = y_i]) / B`. The per-row losses are
/// added on the host in row order (this synchronises the stream).
pub(crate) fn softmax_cross_entropy(
    logits: &CudaTensor,
    labels: &[usize],
) -> Result<(f64, CudaTensor)> {
    let b = logits.dim(0);
    let m = logits.dim(1);
    let dev = logits.device().clone();
    let mut grad = CudaTensor::uninit(&dev, logits.shape())?;
    if b == 0 {
        return Ok((0.0, grad));
    }
    let lab = upload_u32(&dev, "softmax_cross_entropy", labels)?;
    let mut losses = CudaTensor::uninit(&dev, &[b])?;
    let inv_b = 1.0f32 / b as f32;
    let c32 = m as u32;
    launch!(dev, "softmax.cu", "softmax_xent_rows_f32", cfg_rows(b);
        logits.buf().raw(), lab.raw(), grad.buf_mut()?.raw_mut(), losses.buf_mut()?.raw_mut(),
        &c32, &inv_b);
    let mut total = 0f32;
    for l in losses.to_vec()? {
        total += l;
    }
    Ok(((total * inv_b) as f64, grad))
}
