//! The CUDA twin of `cpu.rs`: the same ops on [`CudaTensor`]s, launching
//! the kernels of `reduce.cu` beside this file. The API in `mod.rs` has
//! checked shapes, dtypes and devices; these functions trust them.

use crate::cuda::prelude::*;

/// Blocks of the first reduction stage (at most; fixed for a given size).
const REDUCE_BLOCKS: usize = 1024;

fn reduce(a: &CudaTensor, b: Option<&CudaTensor>, mode: i32) -> Result<f64> {
    let n = a.numel();
    if n == 0 {
        return Ok(0.0);
    }
    let dev = a.device().clone();
    let blocks = n.div_ceil(BLOCK as usize).min(REDUCE_BLOCKS);
    let mut partials = CudaTensor::uninit(&dev, &[blocks])?;
    let cfg = LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    let n32 = a.n32();
    let b_raw = b.map_or(a.buf().raw(), |b| b.buf().raw());
    launch!(dev, "reduce.cu", "reduce_partials_f32", Some(cfg);
        a.buf().raw(), b_raw, partials.buf_mut()?.raw_mut(), &n32, &mode);
    let mut s = 0f32;
    for v in partials.to_vec()? {
        s += v;
    }
    Ok(s as f64)
}

/// `Σ x` (accumulated in f32), returned as `f64`; synchronises the stream.
pub(crate) fn sum(x: &CudaTensor) -> Result<f64> {
    reduce(x, None, 0)
}

/// `Σ x²`.
pub(crate) fn sum_sq(x: &CudaTensor) -> Result<f64> {
    reduce(x, None, 1)
}

/// `Σ a ⊙ b`.
pub(crate) fn dot(a: &CudaTensor, b: &CudaTensor) -> Result<f64> {
    reduce(a, Some(b), 2)
}

/// Column sums of a `[M, N]` matrix: `[N]` (the bias gradient of a Linear
/// layer), rows added in order as on the CPU.
pub(crate) fn sum_rows(x: &CudaTensor) -> Result<CudaTensor> {
    let (m, n) = (x.dim(0), x.dim(1));
    let dev = x.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[n])?;
    let (m32, n32) = (m as u32, n as u32);
    launch!(dev, "reduce.cu", "col_sums_f32", cfg_1d(n);
        x.buf().raw(), out.buf_mut()?.raw_mut(), &m32, &n32);
    Ok(out)
}
