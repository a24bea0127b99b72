//! The CPU reference of [`super`]; operands were checked by the API.

use rayon::prelude::*;

#[allow(unused_imports)]
use crate::ops::num::*;

use crate::{with_dtype, Result, Tensor};

pub(super) fn concat_cols(parts: &[&Tensor]) -> Result<Tensor> {
    let first = parts[0];
    let b = first.dim(0);
    let widths: Vec<usize> = parts.iter().map(|p| p.dim(1)).collect();
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

pub(super) fn split_cols(x: &Tensor, widths: &[usize]) -> Result<Vec<Tensor>> {
    let (b, total) = (x.dim(0), x.dim(1));
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

pub(super) fn gather_rows(table: &Tensor, idx: &[usize]) -> Result<Tensor> {
    let d = table.dim(1);
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

pub(super) fn scatter_add_rows(src: &Tensor, idx: &[usize], m: usize) -> Result<Tensor> {
    let d = src.dim(1);
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

pub(super) fn transpose2d(x: &Tensor) -> Result<Tensor> {
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
