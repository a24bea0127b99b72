//! The CPU reference of [`super`]: whole planes per rayon task (grouped up
//! to a fixed size), so results do not depend on the thread count.

use rayon::prelude::*;

#[allow(unused_imports)]
use crate::ops::num::*;

use crate::{with_dtype, Result, Tensor};

/// Input elements per parallel task (whole planes are grouped up to this).
const PLANE_TASK: usize = 4096;

/// Forward on a host tensor the API checked: the pooled values and the
/// plane index of each winner.
pub(super) fn max_pool2d_forward(x: &Tensor) -> Result<(Tensor, Vec<u32>)> {
    let s = x.shape().to_vec();
    let (h, w) = (s[2], s[3]);
    let (oh, ow) = (h / 2, w / 2);
    let planes = s[0] * s[1];
    let mut y = Tensor::zeros(&[s[0], s[1], oh, ow], x.dtype());
    let mut idx = vec![0u32; planes * oh * ow];
    if oh * ow == 0 {
        return Ok((y, idx));
    }
    with_dtype!(x.dtype(), T, {
        let xs = x.as_slice::<T>()?;
        // Several small planes per task, so that scheduling stays cheap.
        let per_task = PLANE_TASK.div_ceil(h * w).max(1);
        y.as_mut_slice::<T>()?
            .par_chunks_mut(per_task * oh * ow)
            .zip(idx.par_chunks_mut(per_task * oh * ow))
            .enumerate()
            .flat_map_iter(|(ti, (ys, is))| {
                ys.chunks_mut(oh * ow)
                    .zip(is.chunks_mut(oh * ow))
                    .enumerate()
                    .map(move |(k, c)| (ti * per_task + k, c))
            })
            .for_each(|(pl, (yo, io))| {
                let plane = &xs[pl * h * w..(pl + 1) * h * w];
                for oy in 0..oh {
                    let top = 2 * oy * w;
                    let r0 = &plane[top..top + 2 * ow];
                    let r1 = &plane[top + w..top + w + 2 * ow];
                    let yrow = &mut yo[oy * ow..(oy + 1) * ow];
                    let irow = &mut io[oy * ow..(oy + 1) * ow];
                    if !pool_row(r0, r1, w as u32, top as u32, yrow, irow) {
                        for (ox, (yv, iv)) in yrow.iter_mut().zip(irow.iter_mut()).enumerate() {
                            let (bv, off) =
                                window_max(r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
                            *yv = bv;
                            *iv = top as u32 + 2 * ox as u32 + [0, 1, w as u32, w as u32 + 1][off];
                        }
                    }
                }
            });
    });
    Ok((y, idx))
}

/// One output row of the pool, assuming no NaN: `y[ox]` is the window's
/// maximum and `idx[ox]` the plane index of its first occurrence in window
/// order `(0,0), (0,1), (1,0), (1,1)`. Returns `false` when a window holds a
/// NaN, and the caller redoes the row with [`window_max`].
///
/// Written as selects with no early exit so that LLVM vectorises it: a
/// branch per comparison mispredicts about half the time on activations,
/// which made the scalar loop several times slower.
#[inline(always)]
fn pool_row<T: crate::Elem>(
    r0: &[T],
    r1: &[T],
    w: u32,
    top: u32,
    y: &mut [T],
    idx: &mut [u32],
) -> bool {
    let mut nan = false;
    for (ox, (yv, iv)) in y.iter_mut().zip(idx.iter_mut()).enumerate() {
        let (a0, a1, b0, b1) = (r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]);
        #[allow(clippy::eq_op)]
        {
            nan |= (a0 != a0) | (a1 != a1) | (b0 != b0) | (b1 != b1);
        }
        let m0 = if a1 > a0 { a1 } else { a0 };
        let m1 = if b1 > b0 { b1 } else { b0 };
        let m = if m1 > m0 { m1 } else { m0 };
        let off = if b0 == m { w } else { w + 1 };
        let off = if a1 == m { 1 } else { off };
        let off = if a0 == m { 0 } else { off };
        *yv = m;
        *iv = top + 2 * ox as u32 + off;
    }
    !nan
}

/// The maximum of one 2×2 window `[a0, a1, b0, b1]` (row-major) and its
/// position `0..4` in that order, with NaN semantics: the first maximum
/// wins, and a NaN wins over numbers (the first NaN; it propagates).
fn window_max<T: crate::Elem>(a0: T, a1: T, b0: T, b1: T) -> (T, usize) {
    let (mut bv, mut bi) = (a0, 0);
    for (k, v) in [(1, a1), (2, b0), (3, b1)] {
        if v > bv || (v.is_nan() && !bv.is_nan()) {
            (bv, bi) = (v, k);
        }
    }
    (bv, bi)
}

/// Backward on host tensors the API checked.
pub(super) fn max_pool2d_backward(dy: &Tensor, idx: &[u32], x_shape: &[usize]) -> Result<Tensor> {
    let (h, w) = (x_shape[2], x_shape[3]);
    let p = (h / 2) * (w / 2);
    let mut dx = Tensor::zeros(x_shape, dy.dtype());
    if p == 0 || h * w == 0 {
        return Ok(dx);
    }
    with_dtype!(dy.dtype(), T, {
        let dys = dy.as_slice::<T>()?;
        dx.as_mut_slice::<T>()?
            .par_chunks_mut(h * w)
            .enumerate()
            .for_each(|(pl, plane)| {
                for j in 0..p {
                    let i = idx[pl * p + j] as usize;
                    if i < plane.len() {
                        plane[i] += dys[pl * p + j];
                    }
                }
            });
    });
    Ok(dx)
}
