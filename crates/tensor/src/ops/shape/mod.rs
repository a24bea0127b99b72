//! Shape manipulation: concatenation and split along columns, row gathers
//! (embedding lookups) and their scatter-add adjoint, 2-D transpose.

mod cpu;

use super::dev;
use crate::cuda::kernels::shape as cuda;
use crate::{Error, Result, Tensor};

/// Fail unless every index of `idx` is below `m`.
fn check_indices(op: &'static str, idx: &[usize], m: usize) -> Result<()> {
    if let Some((row, &label)) = idx.iter().enumerate().find(|(_, &i)| i >= m) {
        return Err(Error::LabelOutOfRange {
            op,
            row,
            label,
            classes: m,
        });
    }
    Ok(())
}

/// Concatenate `[B, n_i]` matrices along columns into `[B, Σ n_i]`.
pub fn concat_cols(parts: &[&Tensor]) -> Result<Tensor> {
    let op = "concat_cols";
    let first = parts.first().ok_or(Error::InvalidArgument {
        op,
        why: "nothing to concatenate".into(),
    })?;
    let b = first.dim(0);
    for p in parts {
        super::rank(op, p, 2)?;
        if p.dim(0) != b {
            return Err(Error::ShapeMismatch {
                op: "concat_cols (rows)",
                expected: vec![b],
                got: vec![p.dim(0)],
            });
        }
        p.expect_dtype(op, first.dtype())?;
    }
    if !dev::same_kind(op, first, parts)? {
        return cpu::concat_cols(parts);
    }
    let ps = parts
        .iter()
        .map(|p| dev::get(op, p))
        .collect::<Result<Vec<_>>>()?;
    Ok(dev::wrap(cuda::concat_cols(&ps)?))
}

/// Split a `[B, Σ n_i]` matrix into `[B, n_i]` parts (the adjoint of [`concat_cols`]).
pub fn split_cols(x: &Tensor, widths: &[usize]) -> Result<Vec<Tensor>> {
    super::rank("split_cols", x, 2)?;
    let total = x.dim(1);
    if widths.iter().sum::<usize>() != total {
        return Err(Error::InvalidArgument {
            op: "split_cols",
            why: format!("widths {widths:?} do not add up to {total}"),
        });
    }
    match dev::all("split_cols", [x])? {
        None => cpu::split_cols(x, widths),
        Some([t]) => Ok(cuda::split_cols(t, widths)?
            .into_iter()
            .map(dev::wrap)
            .collect()),
    }
}

/// `out[i, :] = table[idx[i], :]` for a `[m, d]` table.
pub fn gather_rows(table: &Tensor, idx: &[usize]) -> Result<Tensor> {
    super::rank("gather_rows", table, 2)?;
    check_indices("gather_rows", idx, table.dim(0))?;
    match dev::all("gather_rows", [table])? {
        None => cpu::gather_rows(table, idx),
        Some([t]) => Ok(dev::wrap(cuda::gather_rows(t, idx)?)),
    }
}

/// The adjoint of [`gather_rows`]: `out[idx[i], :] += src[i, :]`, into a
/// fresh `[m, d]` tensor; rows are added in batch order (deterministic).
pub fn scatter_add_rows(src: &Tensor, idx: &[usize], m: usize) -> Result<Tensor> {
    super::rank("scatter_add_rows", src, 2)?;
    if idx.len() != src.dim(0) {
        return Err(Error::LengthMismatch {
            op: "scatter_add_rows (indices)",
            shape: src.shape().to_vec(),
            needed: src.dim(0),
            len: idx.len(),
        });
    }
    check_indices("scatter_add_rows", idx, m)?;
    match dev::all("scatter_add_rows", [src])? {
        None => cpu::scatter_add_rows(src, idx, m),
        Some([t]) => Ok(dev::wrap(cuda::scatter_add_rows(t, idx, m)?)),
    }
}

/// Transpose of a 2-D matrix.
pub fn transpose2d(x: &Tensor) -> Result<Tensor> {
    super::rank("transpose2d", x, 2)?;
    match dev::all("transpose2d", [x])? {
        None => cpu::transpose2d(x),
        Some([t]) => Ok(dev::wrap(cuda::transpose2d(t)?)),
    }
}
