//! Shape manipulation: concatenation and split along columns, row gathers
//! (embedding lookups) and their scatter-add adjoint, 2-D transpose.

use rayon::prelude::*;

#[allow(unused_imports)]
use super::num::*;

use crate::{with_dtype, Error, Result, Tensor};

/// Concatenate `[B, n_i]` matrices along columns into `[B, Σ n_i]`.
pub fn concat_cols(parts: &[&Tensor]) -> Result<Tensor> {
    let first = parts.first().ok_or(Error::InvalidArgument {
        op: "concat_cols",
        why: "nothing to concatenate".into(),
    })?;
    #[cfg(feature = "cuda")]
    if super::dev::same_kind("concat_cols", first, parts)? {
        let ps = parts
            .iter()
            .map(|p| super::dev::get("concat_cols", p))
            .collect::<Result<Vec<_>>>()?;
        return Ok(super::dev::wrap(crate::cuda::ops::concat_cols(&ps)?));
    }
    let b = first.dim(0);
    let mut widths = Vec::with_capacity(parts.len());
    for p in parts {
        super::rank("concat_cols", p, 2)?;
        if p.dim(0) != b {
            return Err(Error::ShapeMismatch {
                op: "concat_cols (rows)",
                expected: vec![b],
                got: vec![p.dim(0)],
            });
        }
        p.expect_dtype("concat_cols", first.dtype())?;
        widths.push(p.dim(1));
    }
    let total: usize = widths.iter().sum();
    let mut out = Tensor::zeros(&[b, total], first.dtype());
    if total == 0 {
        return Ok(out);
    }
    with_dtype!(first.dtype(), T, {
        let srcs: Vec<&[T]> = parts
            .iter()
            .map(|p| p.as_slice::<T>())
            .collect::<Result<_>>()?;
        out.as_mut_slice::<T>()?
            .par_chunks_mut(total)
            .enumerate()
            .for_each(|(r, row)| {
                let mut o = 0;
                for (s, &w) in srcs.iter().zip(&widths) {
                    row[o..o + w].copy_from_slice(&s[r * w..(r + 1) * w]);
                    o += w;
                }
            });
    });
    Ok(out)
}

/// Split a `[B, Σ n_i]` matrix into `[B, n_i]` parts (the adjoint of [`concat_cols`]).
pub fn split_cols(x: &Tensor, widths: &[usize]) -> Result<Vec<Tensor>> {
    #[cfg(feature = "cuda")]
    if let Some(t) = x.cuda() {
        let parts = crate::cuda::ops::split_cols(t, widths)?;
        return Ok(parts.into_iter().map(super::dev::wrap).collect());
    }
    super::rank("split_cols", x, 2)?;
    let (b, total) = (x.dim(0), x.dim(1));
    if widths.iter().sum::<usize>() != total {
        return Err(Error::InvalidArgument {
            op: "split_cols",
            why: format!("widths {widths:?} do not add up to {total}"),
        });
    }
    let mut outs = Vec::with_capacity(widths.len());
    let mut o = 0;
    for &w in widths {
        let mut t = Tensor::zeros(&[b, w], x.dtype());
        with_dtype!(x.dtype(), T, {
            let xs = x.as_slice::<T>()?;
            for (r, row) in t.as_mut_slice::<T>()?.chunks_mut(w.max(1)).enumerate() {
                if w > 0 {
                    row.copy_from_slice(&xs[r * total + o..r * total + o + w]);
                }
            }
        });
        o += w;
        outs.push(t);
    }
    Ok(outs)
}

/// `out[i, :] = table[idx[i], :]` for a `[m, d]` table.
pub fn gather_rows(table: &Tensor, idx: &[usize]) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(t) = table.cuda() {
        return Ok(super::dev::wrap(crate::cuda::ops::gather_rows(t, idx)?));
    }
    super::rank("gather_rows", table, 2)?;
    let (m, d) = (table.dim(0), table.dim(1));
    if let Some((row, &label)) = idx.iter().enumerate().find(|(_, &i)| i >= m) {
        return Err(Error::LabelOutOfRange {
            op: "gather_rows",
            row,
            label,
            classes: m,
        });
    }
    let mut out = Tensor::zeros(&[idx.len(), d], table.dtype());
    if d == 0 {
        return Ok(out);
    }
    with_dtype!(table.dtype(), T, {
        let ts = table.as_slice::<T>()?;
        for (row, &i) in out.as_mut_slice::<T>()?.chunks_mut(d).zip(idx) {
            row.copy_from_slice(&ts[i * d..(i + 1) * d]);
        }
    });
    Ok(out)
}

/// The adjoint of [`gather_rows`]: `out[idx[i], :] += src[i, :]`, into a
/// fresh `[m, d]` tensor; rows are added in batch order (deterministic).
pub fn scatter_add_rows(src: &Tensor, idx: &[usize], m: usize) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(t) = src.cuda() {
        return Ok(super::dev::wrap(crate::cuda::ops::scatter_add_rows(
            t, idx, m,
        )?));
    }
    super::rank("scatter_add_rows", src, 2)?;
    let d = src.dim(1);
    if idx.len() != src.dim(0) {
        return Err(Error::LengthMismatch {
            op: "scatter_add_rows (indices)",
            shape: src.shape().to_vec(),
            needed: src.dim(0),
            len: idx.len(),
        });
    }
    if let Some((row, &label)) = idx.iter().enumerate().find(|(_, &i)| i >= m) {
        return Err(Error::LabelOutOfRange {
            op: "scatter_add_rows",
            row,
            label,
            classes: m,
        });
    }
    let mut out = Tensor::zeros(&[m, d], src.dtype());
    if d == 0 {
        return Ok(out);
    }
    with_dtype!(src.dtype(), T, {
        let ss = src.as_slice::<T>()?;
        let os = out.as_mut_slice::<T>()?;
        for (r, &i) in idx.iter().enumerate() {
            for (o, &v) in os[i * d..(i + 1) * d]
                .iter_mut()
                .zip(&ss[r * d..(r + 1) * d])
            {
                *o += v;
            }
        }
    });
    Ok(out)
}

/// Transpose of a 2-D matrix.
pub fn transpose2d(x: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some(t) = x.cuda() {
        return Ok(super::dev::wrap(crate::cuda::ops::transpose2d(t)?));
    }
    super::rank("transpose2d", x, 2)?;
    let (r, c) = (x.dim(0), x.dim(1));
    let mut out = Tensor::zeros(&[c, r], x.dtype());
    if r * c == 0 {
        return Ok(out);
    }
    with_dtype!(x.dtype(), T, {
        let xs = x.as_slice::<T>()?;
        out.as_mut_slice::<T>()?
            .par_chunks_mut(r)
            .enumerate()
            .for_each(|(j, row)| {
                for (i, v) in row.iter_mut().enumerate() {
                    *v = xs[i * c + j];
                }
            });
    });
    Ok(out)
}
