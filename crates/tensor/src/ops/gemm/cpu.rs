//! The CPU GEMM: the `gemm` crate, one single-threaded call per block of
//! the output on the rayon pool, blocks fixed by the shape (see [`super`]).

use rayon::prelude::*;

#[allow(unused_imports)]
use crate::ops::num::*;

use super::{GemmDims, Transpose};
use crate::ops::even_task_count;
use crate::{with_dtype, Elem, Result, Tensor};

/// `C (+)= op(A)·op(B)` on host tensors the API checked.
pub(super) fn gemm_into(
    c: &mut Tensor,
    accumulate: bool,
    a: &Tensor,
    b: &Tensor,
    g: GemmDims,
) -> Result<()> {
    with_dtype!(c.dtype(), T, {
        let cv = c.as_mut_slice::<T>()?;
        assert!(cv.len() >= g.m * g.n);
        // SAFETY: `cv` is an initialised buffer of at least m·n elements.
        unsafe { product::<T>(a, b, g, cv.as_mut_ptr(), accumulate) }
    })
}

/// `c (+)= op(A)·op(B)` into the row-major `m×n` buffer at `c`, with the
/// element strides of each operand's layout.
///
/// # Safety
/// As [`gemm_ptr`].
unsafe fn product<T: Elem>(
    a: &Tensor,
    b: &Tensor,
    g: GemmDims,
    c: *mut T,
    accumulate: bool,
) -> Result<()> {
    let (a_rs, a_cs) = strides(a, g.ta);
    let (b_rs, b_cs) = strides(b, g.tb);
    let (av, bv) = (a.as_slice::<T>()?, b.as_slice::<T>()?);
    // SAFETY: the caller's contract.
    unsafe { gemm_ptr(g.m, g.n, g.k, av, a_rs, a_cs, bv, b_rs, b_cs, c, accumulate) };
    Ok(())
}

fn strides(t: &Tensor, tr: Transpose) -> (usize, usize) {
    let cols = t.dim(1);
    match tr {
        Transpose::No => (cols, 1),
        Transpose::Yes => (1, cols),
    }
}

/// Rows per parallel task when splitting by rows (before evening out).
const ROW_BLOCK: usize = 256;
/// Columns per parallel task when splitting by columns (before evening out).
const COL_BLOCK: usize = 128;
/// Outputs at or below which a long inner dimension is split instead.
const SMALL_OUT: usize = 1 << 16;
/// Inner dimension from which a small output is computed in `K_SPLITS` parts.
const LONG_K: usize = 8192;
/// Parts of a split inner dimension.
const K_SPLITS: usize = 8;

/// How one product is cut into parallel tasks: the cut depends only on the
/// shape, never on the thread count, so results do not either.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cut {
    /// One call.
    Whole,
    /// Blocks of `rows` rows of C.
    Rows(usize),
    /// Blocks of `cols` columns of C.
    Cols(usize),
    /// The inner dimension in `parts` near-equal slices, each into its own
    /// buffer, summed in slice order afterwards (weight gradients: a small
    /// output reduced over the whole batch).
    Inner(usize),
}

/// The size of each of [`even_task_count`] near-equal blocks of `n`,
/// rounded up to a multiple of `align`.
fn even_blocks(n: usize, block: usize, align: usize) -> usize {
    n.div_ceil(even_task_count(n, block))
        .next_multiple_of(align)
}

fn cut(m: usize, n: usize, k: usize) -> Cut {
    if m * n * k < 1 << 16 {
        Cut::Whole
    } else if m * n <= SMALL_OUT && k >= LONG_K {
        Cut::Inner(K_SPLITS)
    } else if m >= 2 * ROW_BLOCK {
        Cut::Rows(even_blocks(m, ROW_BLOCK, 16))
    } else if n >= 2 {
        Cut::Cols(even_blocks(n, COL_BLOCK, 8))
    } else {
        Cut::Whole
    }
}

/// `op(A)·op(B)` as a new host tensor: the product is written straight
/// into fresh, uninitialised memory (no zero fill first: with
/// `accumulate = false` the `gemm` crate never reads its output,
/// `gemm_writes_every_output_without_reading_it` checks that on every
/// kernel path).
pub(super) fn matmul(a: &Tensor, b: &Tensor, g: GemmDims) -> Result<Tensor> {
    let len = g.m * g.n;
    with_dtype!(a.dtype(), T, {
        let mut c: Vec<T> = Vec::with_capacity(len);
        // SAFETY: `c` has room for the m·n outputs, and with `accumulate =
        // false` `product` writes every one of them before any read, so
        // all `len` elements are initialised when the length is set (an
        // error returns before it is).
        unsafe {
            product::<T>(a, b, g, c.as_mut_ptr(), false)?;
            c.set_len(len);
        }
        Tensor::from_vec(c, &[g.m, g.n])
    })
}

/// The raw kernel: `c[m×n] (+)= a·b` into a raw row-major buffer at `c`,
/// with element strides for `a` and `b`.
///
/// # Safety
/// `c` must be valid for writes of `m·n` elements that no other thread
/// accesses meanwhile, and, when `accumulate`, initialised (with
/// `accumulate = false` every element is written before it is read, so
/// `c` may be uninitialised).
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_ptr<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    a_rs: usize,
    a_cs: usize,
    b: &[T],
    b_rs: usize,
    b_cs: usize,
    c: *mut T,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m * n {
                // SAFETY: i < m·n, inside the buffer (the caller's contract).
                unsafe { c.add(i).write(T::zero()) };
            }
        }
        return;
    }
    assert!(a.len() > (m - 1) * a_rs + (k - 1) * a_cs);
    assert!(b.len() > (k - 1) * b_rs + (n - 1) * b_cs);
    let base = SendPtr(c);
    // One single-threaded product of C's block (rows × cols) over the inner
    // slice `ks`, written at `c_ptr` with row stride `ldc`.
    let call = |rows: std::ops::Range<usize>,
                cols: std::ops::Range<usize>,
                ks: std::ops::Range<usize>,
                c_ptr: *mut T,
                ldc: usize,
                acc: bool| {
        // SAFETY: the asserts above bound every index the kernel touches in
        // `a` and `b` (the ranges lie inside m, n and k); `c_ptr` points at
        // element (rows.start, cols.start) of an `ldc`-strided buffer that
        // holds the block, and distinct tasks receive disjoint blocks, so no
        // two tasks write the same element.
        unsafe {
            kernel(
                (rows.len(), cols.len(), ks.len()),
                a.as_ptr().add(rows.start * a_rs + ks.start * a_cs),
                (a_rs, a_cs),
                b.as_ptr().add(cols.start * b_cs + ks.start * b_rs),
                (b_rs, b_cs),
                c_ptr,
                ldc,
                acc,
            );
        }
    };
    match cut(m, n, k) {
        Cut::Whole => call(0..m, 0..n, 0..k, c, n, accumulate),
        Cut::Rows(rb) => {
            (0..m.div_ceil(rb)).into_par_iter().for_each(|bi| {
                let rows = bi * rb..((bi + 1) * rb).min(m);
                let p = base;
                // SAFETY: rows.start < m, so the offset stays inside `c`.
                call(
                    rows.clone(),
                    0..n,
                    0..k,
                    unsafe { p.0.add(rows.start * n) },
                    n,
                    accumulate,
                );
            });
        }
        Cut::Cols(cb) => {
            (0..n.div_ceil(cb)).into_par_iter().for_each(|bi| {
                let (c0, c1) = (bi * cb, ((bi + 1) * cb).min(n));
                let p = base;
                // SAFETY: c0 < n, so the offset stays inside `c`.
                call(0..m, c0..c1, 0..k, unsafe { p.0.add(c0) }, n, accumulate);
            });
        }
        Cut::Inner(parts) => {
            let mut partial = vec![T::zero(); parts * m * n];
            partial
                .par_chunks_mut(m * n)
                .enumerate()
                .for_each(|(i, buf)| {
                    let ks = i * k / parts..(i + 1) * k / parts;
                    call(0..m, 0..n, ks, buf.as_mut_ptr(), n, false);
                });
            let mut sums = partial.chunks_exact(m * n);
            if !accumulate {
                if let Some(first) = sums.next() {
                    // SAFETY: `first` holds m·n elements and `c` has room
                    // for them; the buffers are distinct allocations.
                    unsafe { std::ptr::copy_nonoverlapping(first.as_ptr(), c, m * n) };
                }
            }
            // SAFETY: every element of `c` is initialised now (copied
            // above, or by the caller when accumulating).
            let c = unsafe { std::slice::from_raw_parts_mut(c, m * n) };
            for p in sums {
                for (cv, &pv) in c.iter_mut().zip(p) {
                    *cv += pv;
                }
            }
        }
    }
}

/// `c[m×n] (+)= a·b` on the calling thread only (row stride `ldc` in `c`),
/// for callers that already run one task per core (the per-image
/// convolution). The inner slice is never split, so each element's sum
/// over `k` runs in the `gemm` crate's order for this `k`, as in
/// [`gemm_ptr`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_serial<T: Elem>(
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
    ldc: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n);
    if k == 0 {
        if !accumulate {
            c.chunks_mut(ldc)
                .for_each(|r| r[..n].iter_mut().for_each(|x| *x = T::zero()));
        }
        return;
    }
    assert!(a.len() > (m - 1) * a_rs + (k - 1) * a_cs);
    assert!(b.len() > (k - 1) * b_rs + (n - 1) * b_cs);
    // SAFETY: the asserts bound every index the kernel reads in `a` and `b`
    // and writes in `c` (row stride `ldc`, column stride 1).
    unsafe {
        kernel(
            (m, n, k),
            a.as_ptr(),
            (a_rs, a_cs),
            b.as_ptr(),
            (b_rs, b_cs),
            c.as_mut_ptr(),
            ldc,
            accumulate,
        );
    }
}

/// One single-threaded `gemm` crate call: `c[m×n] (+)= a[m×k]·b[k×n]`,
/// with `(row, column)` element strides for `a` and `b` and row stride
/// `ldc` (column stride 1) for `c`.
///
/// # Safety
/// Every element `a[i·a_rs + l·a_cs]`, `b[l·b_rs + j·b_cs]` and
/// `c[i·ldc + j]` with `i < m`, `j < n`, `l < k` must lie inside its
/// allocation, and no other thread may access that part of `c` meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn kernel<T: Elem>(
    (m, n, k): (usize, usize, usize),
    a: *const T,
    (a_rs, a_cs): (usize, usize),
    b: *const T,
    (b_rs, b_cs): (usize, usize),
    c: *mut T,
    ldc: usize,
    accumulate: bool,
) {
    // SAFETY: the caller's contract above.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c,
            1,
            ldc as isize,
            accumulate,
            a,
            a_cs as isize,
            a_rs as isize,
            b,
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
}

#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: used only to hand disjoint column blocks of one buffer to rayon tasks.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`matmul`] writes into uninitialised memory, which is sound only if
    /// the `gemm` crate never reads its output when told not to. Every
    /// kernel path (one row, one column, `k ≤ 2`, small outputs, the
    /// blocked kernels, each cut) runs here into a buffer full of NaN:
    /// a read would leave a NaN (`0·NaN`, `NaN + x`), and the result must
    /// equal a product into zeros bit for bit.
    #[test]
    fn gemm_writes_every_output_without_reading_it() {
        let shapes = [
            (1, 256, 256),
            (250, 1, 64),
            (7, 9, 1),
            (40, 30, 2),
            (5, 10, 256),
            (16, 16, 100),
            (250, 256, 256),
            (600, 128, 64),
            (64, 300, 20),
            (10, 10, 10_000),
        ];
        for (m, n, k) in shapes {
            for (ta, tb) in [(false, false), (false, true), (true, false)] {
                let a: Vec<f32> = (0..m * k)
                    .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
                    .collect();
                let b: Vec<f32> = (0..k * n)
                    .map(|i| ((i * 53 % 97) as f32 - 48.0) / 24.0)
                    .collect();
                let (a_rs, a_cs) = if ta { (1, m) } else { (k, 1) };
                let (b_rs, b_cs) = if tb { (1, k) } else { (n, 1) };
                let mut zeros = vec![0.0f32; m * n];
                let mut nans = vec![f32::NAN; m * n];
                for c in [&mut zeros, &mut nans] {
                    // SAFETY: `c` holds m·n elements.
                    unsafe {
                        gemm_ptr(
                            m,
                            n,
                            k,
                            &a,
                            a_rs,
                            a_cs,
                            &b,
                            b_rs,
                            b_cs,
                            c.as_mut_ptr(),
                            false,
                        )
                    };
                }
                assert!(
                    zeros
                        .iter()
                        .zip(&nans)
                        .all(|(z, v)| z.to_bits() == v.to_bits()),
                    "{m}x{n}x{k}, ta {ta}, tb {tb}: the output was read"
                );
                assert!(zeros.iter().any(|v| *v != 0.0));
            }
        }
    }
}
