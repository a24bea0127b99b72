//! The CUDA twin of `cpu.rs`: the same ops on [`CudaTensor`]s, launching
//! the kernels of `shape.cu` beside this file. The API in `mod.rs` has
//! checked shapes, dtypes and devices; these functions trust them.

use crate::cuda::prelude::*;

fn copy_cols(
    dev: &CudaDevice,
    src: &DeviceBuffer<f32>,
    dst: &mut DeviceBuffer<f32>,
    rows: usize,
    (src_cols, src_off): (usize, usize),
    (dst_cols, dst_off): (usize, usize),
    width: usize,
) -> Result<()> {
    let (r, sc, dc, so, d_o, w) = (
        rows as u32,
        src_cols as u32,
        dst_cols as u32,
        src_off as u32,
        dst_off as u32,
        width as u32,
    );
    launch!(dev, "shape.cu", "copy_cols_f32", cfg_1d(rows * width);
        src.raw(), dst.raw_mut(), &r, &sc, &dc, &so, &d_o, &w);
    Ok(())
}

/// Concatenate `[B, n_i]` matrices along columns into `[B, Σ n_i]`.
pub(crate) fn concat_cols(parts: &[&CudaTensor]) -> Result<CudaTensor> {
    let first = parts[0];
    let b = first.dim(0);
    let total: usize = parts.iter().map(|p| p.dim(1)).sum();
    let dev = first.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[b, total])?;
    let mut o = 0;
    for p in parts {
        let w = p.dim(1);
        copy_cols(&dev, p.buf(), out.buf_mut()?, b, (w, 0), (total, o), w)?;
        o += w;
    }
    Ok(out)
}

/// Split a `[B, Σ n_i]` matrix into `[B, n_i]` parts (the adjoint of [`concat_cols`]).
pub(crate) fn split_cols(x: &CudaTensor, widths: &[usize]) -> Result<Vec<CudaTensor>> {
    let (b, total) = (x.dim(0), x.dim(1));
    let dev = x.device().clone();
    let mut outs = Vec::with_capacity(widths.len());
    let mut o = 0;
    for &w in widths {
        let mut t = CudaTensor::uninit(&dev, &[b, w])?;
        copy_cols(&dev, x.buf(), t.buf_mut()?, b, (total, o), (w, 0), w)?;
        o += w;
        outs.push(t);
    }
    Ok(outs)
}

/// `out[i, :] = table[idx[i], :]` for a `[m, d]` table.
pub(crate) fn gather_rows(table: &CudaTensor, idx: &[usize]) -> Result<CudaTensor> {
    let d = table.dim(1);
    let dev = table.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[idx.len(), d])?;
    let ib = upload_u32(&dev, "gather_rows", idx)?;
    let (r, d32) = (idx.len() as u32, d as u32);
    launch!(dev, "shape.cu", "gather_rows_f32", cfg_1d(idx.len() * d);
        table.buf().raw(), ib.raw(), out.buf_mut()?.raw_mut(), &r, &d32);
    Ok(out)
}

/// The adjoint of [`gather_rows`]: `out[idx[i], :] += src[i, :]` into a fresh
/// `[m, d]` tensor, rows added in batch order (deterministic, no atomics).
pub(crate) fn scatter_add_rows(src: &CudaTensor, idx: &[usize], m: usize) -> Result<CudaTensor> {
    let d = src.dim(1);
    let dev = src.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[m, d])?;
    let ib = upload_u32(&dev, "scatter_add_rows", idx)?;
    let (b32, m32, d32) = (idx.len() as u32, m as u32, d as u32);
    launch!(dev, "shape.cu", "scatter_add_rows_f32", cfg_1d(m * d);
        src.buf().raw(), ib.raw(), out.buf_mut()?.raw_mut(), &b32, &m32, &d32);
    Ok(out)
}

/// Transpose of a 2-D matrix.
pub(crate) fn transpose2d(x: &CudaTensor) -> Result<CudaTensor> {
    let (r, c) = (x.dim(0), x.dim(1));
    let dev = x.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[c, r])?;
    let cfg = if r * c == 0 {
        None
    } else {
        Some(LaunchConfig {
            grid_dim: (c.div_ceil(32) as u32, r.div_ceil(32) as u32, 1),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        })
    };
    let (r32, c32) = (r as u32, c as u32);
    launch!(dev, "shape.cu", "transpose2d_f32", cfg;
        x.buf().raw(), out.buf_mut()?.raw_mut(), &r32, &c32);
    Ok(out)
}
