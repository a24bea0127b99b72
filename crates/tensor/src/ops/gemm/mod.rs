//! General matrix multiply through the `gemm` crate.
//!
//! `C = A·B` (or `C += A·B`) with either operand transposed. The `gemm`
//! crate takes arbitrary row/column strides, so a transpose is only a stride
//! swap. It was chosen over `matrixmultiply` on measurement: see
//! `docs/BENCHMARKS.md` (`cargo bench -p noprop-benches --bench gemm`).
//!
//! Parallelism: the output is cut into an even number of blocks of rows (or
//! of columns when there are few rows) and each block is one single-threaded
//! `gemm` call on the rayon pool. A small output with a long inner dimension
//! (a weight gradient summed over a batch) is instead cut along the inner
//! dimension into fixed slices whose products are summed in slice order. The
//! cut depends only on `(m, n, k)`, so the result is the same for any number
//! of threads.

mod cpu;

pub(crate) use cpu::gemm_serial;

use super::dev;
use crate::cuda::kernels::gemm as cuda;
use crate::{Error, Result, Tensor};

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transpose {
    /// Use the matrix as stored.
    No,
    /// Use its transpose.
    Yes,
}

/// The geometry of one product `C[m×n] (+)= op(A)[m×k]·op(B)[k×n]`,
/// checked against the operands' shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct GemmDims {
    pub(crate) m: usize,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) ta: Transpose,
    pub(crate) tb: Transpose,
}

fn dims(t: &Tensor, tr: Transpose, op: &'static str) -> Result<(usize, usize)> {
    super::rank(op, t, 2)?;
    let (r, c) = (t.dim(0), t.dim(1));
    Ok(match tr {
        Transpose::No => (r, c),
        Transpose::Yes => (c, r),
    })
}

impl GemmDims {
    /// Check that `op(A)` and `op(B)` are matrices with the same inner dimension.
    fn of(op: &'static str, a: &Tensor, ta: Transpose, b: &Tensor, tb: Transpose) -> Result<Self> {
        let (m, k) = dims(a, ta, op)?;
        let (k2, n) = dims(b, tb, op)?;
        if k != k2 {
            return Err(Error::InvalidArgument {
                op,
                why: format!(
                    "inner dimensions differ: op(A) is {m}x{k}, op(B) is {k2}x{n} (A {:?}, B {:?})",
                    a.shape(),
                    b.shape()
                ),
            });
        }
        b.expect_dtype(op, a.dtype())?;
        Ok(GemmDims { m, n, k, ta, tb })
    }
}

/// `op(A)·op(B)` as a new tensor, where `op` transposes or not.
pub fn matmul(a: &Tensor, ta: Transpose, b: &Tensor, tb: Transpose) -> Result<Tensor> {
    let g = GemmDims::of("matmul", a, ta, b, tb)?;
    match dev::all("matmul", [a, b])? {
        None => cpu::matmul(a, b, g),
        Some([a, b]) => Ok(dev::wrap(cuda::matmul(a, b, g)?)),
    }
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
    let g = GemmDims::of("gemm", a, ta, b, tb)?;
    c.expect_shape("gemm", &[g.m, g.n])?;
    a.expect_dtype("gemm", c.dtype())?;
    if dev::same_kind("gemm", c, &[a, b])? {
        let (a, b) = (dev::get("gemm", a)?, dev::get("gemm", b)?);
        return cuda::gemm_into(dev::get_mut("gemm", c)?, accumulate, a, b, g);
    }
    cpu::gemm_into(c, accumulate, a, b, g)
}
