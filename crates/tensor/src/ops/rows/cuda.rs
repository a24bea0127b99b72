//! CUDA twins of the per-row ops (kernels in `rows.cu`). The shapes were
//! checked by the dispatching functions in `mod.rs`; here only the device
//! of every operand and the 32-bit sizes are checked.

use cudarc::driver::PushKernelArg;

use crate::cuda::{cfg_1d, sync_launches, CudaTensor, SYNC_ENV};
use crate::{Error, Result};

/// Launch kernel `$name` of `rows.cu` on `$dev`'s stream with `$cfg` (an
/// `Option<LaunchConfig>`: `None` launches nothing) and the arguments; the
/// same macro as `crate::cuda::ops`'s.
macro_rules! launch {
    ($dev:expr, $file:literal, $name:literal, $cfg:expr; $($arg:expr),* $(,)?) => {{
        if let Some(cfg) = $cfg {
            let f = $dev.func($file, $name)?;
            let stream = $dev.stream().clone();
            let mut b = stream.launch_builder(&f);
            $( b.arg($arg); )*
            // SAFETY: the arguments match the kernel's parameter list in
            // `$file` one for one (pointers, then 32-bit sizes, floats and
            // flags as declared), and the sizes passed bound every index the
            // kernel touches inside the buffers, which the caller checked.
            unsafe { b.launch(cfg) }.map_err(|e| Error::CudaLaunch {
                kernel: $name,
                why: e.to_string(),
            })?;
            if sync_launches() {
                stream.synchronize().map_err(|e| Error::CudaLaunch {
                    kernel: $name,
                    why: format!("failed while running ({}=1 synchronises after every launch): {e}", SYNC_ENV),
                })?;
            }
        }
    }};
}

fn same_device(op: &'static str, ts: &[&CudaTensor]) -> Result<()> {
    if ts.iter().any(|t| t.device() != ts[0].device()) {
        let gpus: Vec<String> = ts
            .iter()
            .map(|t| format!("cuda:{}", t.device().ordinal()))
            .collect();
        return Err(Error::InvalidArgument {
            op,
            why: format!("operands on different GPUs ({})", gpus.join(", ")),
        });
    }
    Ok(())
}

/// The kernels count in `unsigned int` below `2^31` (see `common.cuh`).
fn fits_u32(op: &'static str, shape: &[usize], n: usize) -> Result<u32> {
    if n > i32::MAX as usize {
        return Err(Error::InvalidShape {
            op,
            shape: shape.to_vec(),
            why: "more than 2^31 − 1 elements: CUDA kernels use 32-bit sizes",
        });
    }
    Ok(n as u32)
}

fn n32(op: &'static str, t: &CudaTensor) -> Result<u32> {
    fits_u32(op, t.shape(), t.numel())
}

pub(super) fn scale_rows(x: &CudaTensor, k: &CudaTensor) -> Result<CudaTensor> {
    same_device("scale_rows", &[x, k])?;
    let (n, d) = (n32("scale_rows", x)?, x.dim(1) as u32);
    let dev = x.device().clone();
    let mut out = CudaTensor::uninit(&dev, x.shape())?;
    launch!(dev, "rows.cu", "scale_rows_f32", cfg_1d(x.numel());
        x.buf().raw(), k.buf().raw(), out.buf_mut()?.raw_mut(), &n, &d);
    Ok(out)
}

pub(super) fn combine_rows(
    alpha: &CudaTensor,
    a: &CudaTensor,
    beta: &CudaTensor,
    b: &CudaTensor,
) -> Result<CudaTensor> {
    same_device("combine_rows", &[alpha, a, beta, b])?;
    let (n, d) = (n32("combine_rows", a)?, a.dim(1) as u32);
    let dev = a.device().clone();
    let mut out = CudaTensor::uninit(&dev, a.shape())?;
    launch!(dev, "rows.cu", "combine_rows_f32", cfg_1d(a.numel());
        alpha.buf().raw(), a.buf().raw(), beta.buf().raw(), b.buf().raw(),
        out.buf_mut()?.raw_mut(), &n, &d);
    Ok(out)
}

/// Row dot products with `b` (kernel mode 0), or row sums without (mode 1,
/// `b` unused).
pub(super) fn row_reduce(a: &CudaTensor, b: Option<&CudaTensor>) -> Result<CudaTensor> {
    let (op, mode): (&'static str, i32) = match b {
        Some(_) => ("row_dots", 0),
        None => ("row_sums", 1),
    };
    let b = b.unwrap_or(a);
    same_device(op, &[a, b])?;
    n32(op, a)?;
    let (rows, d) = (a.dim(0), a.dim(1) as u32);
    let rows32 = rows as u32;
    let dev = a.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[rows])?;
    launch!(dev, "rows.cu", "row_reduce_f32", cfg_1d(rows);
        a.buf().raw(), b.buf().raw(), out.buf_mut()?.raw_mut(), &rows32, &d, &mode);
    Ok(out)
}

pub(super) fn row_max_abs(a: &CudaTensor) -> Result<CudaTensor> {
    n32("row_max_abs", a)?;
    let (rows, d) = (a.dim(0), a.dim(1) as u32);
    let rows32 = rows as u32;
    let dev = a.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[rows])?;
    launch!(dev, "rows.cu", "row_max_abs_f32", cfg_1d(rows);
        a.buf().raw(), out.buf_mut()?.raw_mut(), &rows32, &d);
    Ok(out)
}

pub(super) fn argmax_rows(x: &CudaTensor) -> Result<Vec<usize>> {
    n32("argmax_rows", x)?;
    let (rows, m) = (x.dim(0), x.dim(1) as u32);
    let rows32 = rows as u32;
    let dev = x.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[rows])?;
    launch!(dev, "rows.cu", "argmax_rows_f32", cfg_1d(rows);
        x.buf().raw(), out.buf_mut()?.raw_mut(), &rows32, &m);
    // Indices below 2^24 are exact in f32; the class count is far below.
    Ok(out.to_vec()?.into_iter().map(|v| v as usize).collect())
}

pub(super) fn sq_dist_scores(
    cross: &CudaTensor,
    an: &CudaTensor,
    wn: &CudaTensor,
    k: f64,
) -> Result<CudaTensor> {
    same_device("sq_dist_scores", &[cross, an, wn])?;
    let (n, m) = (n32("sq_dist_scores", cross)?, cross.dim(1) as u32);
    let dev = cross.device().clone();
    let mut out = CudaTensor::uninit(&dev, cross.shape())?;
    launch!(dev, "rows.cu", "sq_dist_scores_f32", cfg_1d(cross.numel());
        cross.buf().raw(), an.buf().raw(), wn.buf().raw(), out.buf_mut()?.raw_mut(),
        &n, &m, &k);
    Ok(out)
}

pub(super) fn time_embedding(t: &CudaTensor, b: usize, dim: usize) -> Result<CudaTensor> {
    let h = dim / 2;
    let n = fits_u32("time_embedding", &[b, dim], b * dim)? / 2;
    let h32 = h as u32;
    let dev = t.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[b, dim])?;
    launch!(dev, "rows.cu", "time_embedding_f32", cfg_1d(b * h);
        t.buf().raw(), out.buf_mut()?.raw_mut(), &n, &h32);
    Ok(out)
}

pub(super) fn time_embedding_backward(
    t: &CudaTensor,
    dy: &CudaTensor,
    dim: usize,
) -> Result<CudaTensor> {
    same_device("time_embedding_backward", &[t, dy])?;
    n32("time_embedding_backward", dy)?;
    let rows = t.numel();
    let (rows32, h32) = (rows as u32, (dim / 2) as u32);
    let dev = t.device().clone();
    let mut out = CudaTensor::uninit(&dev, t.shape())?;
    launch!(dev, "rows.cu", "time_embedding_backward_f32", cfg_1d(rows);
        t.buf().raw(), dy.buf().raw(), out.buf_mut()?.raw_mut(), &rows32, &h32);
    Ok(out)
}
