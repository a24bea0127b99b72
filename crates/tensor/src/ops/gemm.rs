//! General matrix multiply through the `gemm` crate.
//!
//! `C = A·B` (or `C += A·B`) with either operand transposed. The `gemm`
//! crate takes arbitrary row/column strides, so a transpose is only a stride
//! swap. It was chosen over `matrixmultiply` on measurement: see
//! `docs/BENCHMARKS.md` (`cargo bench -p noprop-benches --bench gemm`).
//!
//! Parallelism: the output is cut into fixed blocks of rows (or of columns
//! when there are few rows) and each block is one single-threaded `gemm`
//! call on the rayon pool. The cut depends only on `(m, n, k)`, so the result
//! is the same for any number of threads.

use rayon::prelude::*;

#[allow(unused_imports)]
use super::num::*;

use crate::{with_dtype, Elem, Error, Result, Tensor};

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transpose {
    /// Use the matrix as stored.
    No,
    /// Use its transpose.
    Yes,
}

fn dims(t: &Tensor, tr: Transpose, op: &'static str) -> Result<(usize, usize)> {
    super::rank(op, t, 2)?;
    let (r, c) = (t.dim(0), t.dim(1));
    Ok(match tr {
        Transpose::No => (r, c),
        Transpose::Yes => (c, r),
    })
}

/// `op(A)·op(B)` as a new tensor, where `op` transposes or not.
pub fn matmul(a: &Tensor, ta: Transpose, b: &Tensor, tb: Transpose) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Some([a, b]) = super::dev::all("matmul", [a, b])? {
        return Ok(super::dev::wrap(crate::cuda::ops::matmul(a, ta, b, tb)?));
    }
    let (m, _) = dims(a, ta, "matmul")?;
    let (_, n) = dims(b, tb, "matmul")?;
    let mut c = Tensor::zeros(&[m, n], a.dtype());
    gemm_into(&mut c, false, a, ta, b, tb)?;
    Ok(c)
}

/// `C = op(A)·op(B)`, or `C += op(A)·op(B)` when `accumulate`; `C` must already have shape `[m, n]`.
pub fn gemm_into(
    c: &mut Tensor,
    accumulate: bool,
    a: &Tensor,
    ta: Transpose,
    b: &Tensor,
    tb: Transpose,
) -> Result<()> {
    #[cfg(feature = "cuda")]
    if super::dev::same_kind("gemm", c, &[a, b])? {
        let (a, b) = (super::dev::get("gemm", a)?, super::dev::get("gemm", b)?);
        let c = super::dev::get_mut("gemm", c)?;
        return crate::cuda::ops::gemm_into(c, accumulate, a, ta, b, tb);
    }
    let (m, k) = dims(a, ta, "gemm")?;
    let (k2, n) = dims(b, tb, "gemm")?;
    if k != k2 {
        return Err(Error::InvalidArgument {
            op: "gemm",
            why: format!(
                "inner dimensions differ: op(A) is {m}x{k}, op(B) is {k2}x{n} (A {:?}, B {:?})",
                a.shape(),
                b.shape()
            ),
        });
    }
    c.expect_shape("gemm", &[m, n])?;
    a.expect_dtype("gemm", c.dtype())?;
    b.expect_dtype("gemm", c.dtype())?;
    let (a_rs, a_cs) = strides(a, ta);
    let (b_rs, b_cs) = strides(b, tb);
    with_dtype!(c.dtype(), T, {
        let av = a.as_slice::<T>()?;
        let bv = b.as_slice::<T>()?;
        let cv = c.as_mut_slice::<T>()?;
        gemm_slices::<T>(m, n, k, av, a_rs, a_cs, bv, b_rs, b_cs, cv, accumulate);
    });
    Ok(())
}

fn strides(t: &Tensor, tr: Transpose) -> (usize, usize) {
    let cols = t.dim(1);
    match tr {
        Transpose::No => (cols, 1),
        Transpose::Yes => (1, cols),
    }
}

/// Rows per parallel task when splitting by rows.
const ROW_BLOCK: usize = 256;
/// Columns per parallel task when splitting by columns.
const COL_BLOCK: usize = 128;

/// The raw kernel on slices: `c[m×n] (+)= a·b` with element strides.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_slices<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    a_rs: usize,
    a_cs: usize,
    b: &[T],
    b_rs: usize,
    b_cs: usize,
    c: &mut [T],
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.iter_mut().for_each(|x| *x = T::zero());
        }
        return;
    }
    assert!(c.len() >= m * n);
    assert!(a.len() > (m - 1) * a_rs + (k - 1) * a_cs);
    assert!(b.len() > (k - 1) * b_rs + (n - 1) * b_cs);
    let call = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>, c_ptr: *mut T| {
        // SAFETY: the asserts above bound every index the kernel touches in
        // `a` and `b`; `c_ptr` points at element (rows.start, cols.start) of
        // `c`, and distinct tasks receive disjoint row or column ranges, so
        // no two tasks write the same element.
        unsafe {
            gemm::gemm(
                rows.len(),
                cols.len(),
                k,
                c_ptr,
                1,
                n as isize,
                accumulate,
                a.as_ptr().add(rows.start * a_rs),
                a_cs as isize,
                a_rs as isize,
                b.as_ptr().add(cols.start * b_cs),
                b_cs as isize,
                b_rs as isize,
                T::one(),
                T::one(),
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
    };
    let flops = m * n * k;
    if flops < 1 << 16 {
        call(0..m, 0..n, c.as_mut_ptr());
    } else if m >= 2 * ROW_BLOCK {
        c[..m * n]
            .par_chunks_mut(ROW_BLOCK * n)
            .enumerate()
            .for_each(|(i, chunk)| {
                let r0 = i * ROW_BLOCK;
                call(r0..r0 + chunk.len() / n, 0..n, chunk.as_mut_ptr());
            });
    } else {
        let blocks = n.div_ceil(COL_BLOCK);
        let base = SendPtr(c.as_mut_ptr());
        (0..blocks).into_par_iter().for_each(|bi| {
            let c0 = bi * COL_BLOCK;
            let c1 = (c0 + COL_BLOCK).min(n);
            let p = base;
            // SAFETY: c0 < n, so the offset stays inside `c`.
            call(0..m, c0..c1, unsafe { p.0.add(c0) });
        });
    }
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: used only to hand disjoint column blocks of one buffer to rayon tasks.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}
