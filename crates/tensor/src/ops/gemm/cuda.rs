//! The CUDA twin of `cpu.rs`: cuBLAS SGEMM on [`CudaTensor`]s, or the tiled
//! kernel of `gemm.cu` beside this file when cuBLAS cannot be loaded. The API in `mod.rs` has
//! checked shapes, dtypes and devices; these functions trust them.

use cudarc::cublas::{sys::cublasOperation_t, Gemm, GemmConfig};

use crate::cuda::prelude::*;
use crate::ops::gemm::{GemmDims, Transpose};

/// `c[m×n] (+)= op(A)·op(B)` on raw buffers; `a_cols`/`b_cols` are the
/// stored (row-major) column counts of A and B.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_buf(
    dev: &CudaDevice,
    m: usize,
    n: usize,
    k: usize,
    a: &DeviceBuffer<f32>,
    ta: Transpose,
    a_cols: usize,
    b: &DeviceBuffer<f32>,
    tb: Transpose,
    b_cols: usize,
    c: &mut DeviceBuffer<f32>,
    accumulate: bool,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            let stream = dev.stream().clone();
            let mut v = c.view_mut()?;
            stream.memset_zeros(&mut v).map_err(|e| Error::Cuda {
                op: "cuMemsetD8Async",
                why: e.to_string(),
            })?;
        }
        return Ok(());
    }
    for v in [m, n, k, a_cols, b_cols] {
        if v > i32::MAX as usize {
            return Err(Error::InvalidArgument {
                op: "gemm",
                why: format!("dimension {v} exceeds cuBLAS's 32-bit sizes"),
            });
        }
    }
    if let Some(blas) = dev.blas()? {
        // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, and a
        // row-major matrix read column-major is its transpose: pass B then
        // A, each with the transpose flag it has, leading dimension = its
        // stored column count.
        let op = |t: Transpose| match t {
            Transpose::No => cublasOperation_t::CUBLAS_OP_N,
            Transpose::Yes => cublasOperation_t::CUBLAS_OP_T,
        };
        let cfg = GemmConfig {
            transa: op(tb),
            transb: op(ta),
            m: n as i32,
            n: m as i32,
            k: k as i32,
            alpha: 1.0f32,
            lda: b_cols.max(1) as i32,
            ldb: a_cols.max(1) as i32,
            beta: if accumulate { 1.0f32 } else { 0.0 },
            ldc: n as i32,
        };
        let (av, bv) = (a.view()?, b.view()?);
        let mut cv = c.view_mut()?;
        // SAFETY: op(A) is m×k inside `a` (checked by the caller against its
        // shape), op(B) is k×n inside `b`, C is m×n; the leading dimensions
        // are the stored row lengths.
        unsafe { blas.gemm(cfg, &bv, &av, &mut cv) }.map_err(|e| Error::Cuda {
            op: "cublasSgemm",
            why: format!("{e:?}"),
        })?;
        return Ok(());
    }
    let (a_rs, a_cs) = match ta {
        Transpose::No => (a_cols, 1),
        Transpose::Yes => (1, a_cols),
    };
    let (b_rs, b_cs) = match tb {
        Transpose::No => (b_cols, 1),
        Transpose::Yes => (1, b_cols),
    };
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(16) as u32, m.div_ceil(16) as u32, 1),
        block_dim: (16, 16, 1),
        shared_mem_bytes: 0,
    };
    let (m32, n32, k32) = (m as u32, n as u32, k as u32);
    let (ars, acs, brs, bcs) = (a_rs as u32, a_cs as u32, b_rs as u32, b_cs as u32);
    let acc = accumulate as i32;
    launch!(dev, "gemm.cu", "gemm_tiled_f32", Some(cfg);
        a.raw(), b.raw(), c.raw_mut(), &m32, &n32, &k32, &ars, &acs, &brs, &bcs, &acc);
    Ok(())
}

/// `op(A)·op(B)` as a new tensor.
pub(crate) fn matmul(a: &CudaTensor, b: &CudaTensor, g: GemmDims) -> Result<CudaTensor> {
    let mut c = CudaTensor::uninit(a.device(), &[g.m, g.n])?;
    gemm_into(&mut c, false, a, b, g)?;
    Ok(c)
}

/// `C (+)= op(A)·op(B)` in cuBLAS (or the tiled kernel without it).
pub(crate) fn gemm_into(
    c: &mut CudaTensor,
    accumulate: bool,
    a: &CudaTensor,
    b: &CudaTensor,
    g: GemmDims,
) -> Result<()> {
    let dev = c.device().clone();
    let (a_cols, b_cols) = (a.dim(1), b.dim(1));
    gemm_buf(
        &dev,
        g.m,
        g.n,
        g.k,
        a.buf(),
        g.ta,
        a_cols,
        b.buf(),
        g.tb,
        b_cols,
        c.buf_mut()?,
        accumulate,
    )
}
