//! The CPU reference of [`super`]: im2col/col2im with contiguous runs of
//! `OW` pixels, the `gemm` crate, and host scratch buffers pooled across
//! calls. Every split is fixed by the shapes, so results do not depend on
//! the thread count. Operands were checked by the API.

use std::sync::Mutex;

use rayon::prelude::*;

#[allow(unused_imports)]
use crate::ops::num::*;

use super::{Conv2dGrads, ConvGeom as Geom};
use crate::ops::gemm::gemm_slices;
use crate::{with_dtype, Elem, Error, Result, Tensor};

impl Geom {
    /// For tap (ky, kx) and output row oy: the input row (if inside) and the
    /// range of output columns whose input column is inside, with the input
    /// column of the first one.
    #[inline(always)]
    fn run(&self, ky: usize, kx: usize, oy: usize) -> Option<(usize, usize, usize, usize)> {
        let iy = (oy + ky) as isize - self.pad as isize;
        if iy < 0 || iy as usize >= self.h {
            return None;
        }
        // ix = ox + kx − pad must be in [0, w).
        let lo = self.pad.saturating_sub(kx);
        let hi = (self.w + self.pad).saturating_sub(kx).min(self.ow);
        if lo >= hi {
            return None;
        }
        Some((iy as usize, lo, hi, lo + kx - self.pad))
    }
}

/// Host scratch tensors free for reuse by any convolution of the process.
static SCRATCH: Mutex<Vec<Tensor>> = Mutex::new(Vec::new());
/// Most tensors the pool keeps (beyond that, a returned one is freed).
const SCRATCH_MAX: usize = 16;

fn scratch() -> std::sync::MutexGuard<'static, Vec<Tensor>> {
    // A panic while holding the lock cannot leave the list inconsistent
    // (push and swap_remove only), so a poisoned lock is still usable.
    SCRATCH.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes held by the process-wide pool of free convolution scratch buffers.
pub fn scratch_pool_bytes() -> usize {
    scratch().iter().map(Tensor::size_in_bytes).sum()
}

/// Hand a scratch tensor back to the pool (host tensors only).
fn give_back(t: Option<Tensor>) {
    if let Some(t) = t.filter(Tensor::is_on_host) {
        let mut pool = scratch();
        if pool.len() < SCRATCH_MAX {
            pool.push(t);
        }
    }
}

/// A tensor of `shape` whose values the caller overwrites: `slot`, else
/// the pool's best fit (one of exactly that size, else the smallest that is
/// larger, else the largest, which then grows), else a new one. The same
/// sizes recur every step, so the pool soon holds each exactly.
fn take(slot: Option<Tensor>, shape: &[usize], dtype: crate::DType) -> Tensor {
    let mut t = slot.unwrap_or_else(|| {
        let need = shape.iter().product::<usize>();
        let mut pool = scratch();
        let fits = |t: &Tensor| t.dtype() == dtype;
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, t)| fits(t) && t.numel() >= need)
            .min_by_key(|(_, t)| t.numel())
            .or_else(|| {
                pool.iter()
                    .enumerate()
                    .filter(|(_, t)| fits(t))
                    .max_by_key(|(_, t)| t.numel())
            })
            .map(|(i, _)| i);
        match best {
            Some(i) => pool.swap_remove(i),
            None => Tensor::zeros(&[0], dtype),
        }
    });
    t.resize_for_overwrite(shape, dtype);
    t
}

/// `im2col` on host tensors.
pub(super) fn im2col(x: &Tensor, g: Geom) -> Result<Tensor> {
    let mut col = Tensor::zeros(&[g.kk(), g.np()], x.dtype());
    with_dtype!(x.dtype(), T, {
        im2col_slices::<T>(x.as_slice()?, g, col.as_mut_slice()?);
    });
    Ok(col)
}

/// From [`PER_CHANNEL_MIN`] input channels on, one task per channel `ci`:
/// its `KH·KW` rows of `col` are one contiguous block, written as long
/// sequential runs while each image's plane `x[ni, ci]` (read once per
/// task, from L1) is spread over them. A task per tap row instead re-read
/// every plane `KH·KW` times in short runs scattered over the whole input.
/// Fixed writes, no reductions.
fn im2col_slices<T: Elem>(x: &[T], g: Geom, col: &mut [T]) {
    let np = g.n * g.p();
    let taps = g.kh * g.kw;
    if np == 0 || g.kk() == 0 {
        return;
    }
    let (hw, p, ow) = (g.h * g.w, g.p(), g.ow);
    // Tap row `t` of channel `ci`, image `ni`: its `P` columns from the plane.
    let fill = |ci: usize, t: usize, ni: usize, seg: &mut [T]| {
        let plane = &x[(ni * g.c + ci) * hw..(ni * g.c + ci + 1) * hw];
        let (ky, kx) = (t / g.kw, t % g.kw);
        for (oy, dst) in seg.chunks_exact_mut(ow).enumerate() {
            match g.run(ky, kx, oy) {
                Some((iy, lo, hi, ix0)) => {
                    dst[..lo].iter_mut().for_each(|v| *v = T::zero());
                    let src = &plane[iy * g.w + ix0..iy * g.w + ix0 + hi - lo];
                    // An element loop, not `copy_from_slice`: for runs of
                    // 9–30 elements a call to `memmove` costs more than the copy.
                    for (d, &v) in dst[lo..hi].iter_mut().zip(src) {
                        *d = v;
                    }
                    dst[hi..].iter_mut().for_each(|v| *v = T::zero());
                }
                None => dst.iter_mut().for_each(|v| *v = T::zero()),
            }
        }
    };
    if g.c >= PER_CHANNEL_MIN {
        col.par_chunks_mut(taps * np)
            .enumerate()
            .for_each(|(ci, rows)| {
                for ni in 0..g.n {
                    for (t, row) in rows.chunks_mut(np).enumerate() {
                        fill(ci, t, ni, &mut row[ni * p..(ni + 1) * p]);
                    }
                }
            });
    } else {
        // Few channels (a first layer): a task per tap row keeps both cores busy.
        col.par_chunks_mut(np).enumerate().for_each(|(r, row)| {
            for (ni, seg) in row.chunks_exact_mut(p).enumerate() {
                fill(r / taps, r % taps, ni, seg);
            }
        });
    }
}

/// Input channels from which im2col and col2im run a task per channel
/// (fewer would leave cores idle); a fixed number, so the split does not
/// depend on the thread count.
const PER_CHANNEL_MIN: usize = 8;

/// `col2im` on host tensors.
pub(super) fn col2im(col: &Tensor, x_shape: &[usize], g: Geom) -> Result<Tensor> {
    let mut dx = Tensor::zeros(x_shape, col.dtype());
    with_dtype!(col.dtype(), T, {
        col2im_slices::<T>(col.as_slice()?, g, dx.as_mut_slice()?);
    });
    Ok(dx)
}

/// Adds `col2im(col)` into `dx`, which the caller passes zeroed.
fn col2im_slices<T: Elem>(col: &[T], g: Geom, dx: &mut [T]) {
    let chw = g.c * g.h * g.w;
    if chw == 0 {
        return;
    }
    let np = g.n * g.p();
    if g.pad == 0 && g.kh == 3 {
        return col2im_3x3_valid(col, g, dx);
    }
    // One task per image; taps added in a fixed order: thread-count independent.
    dx.par_chunks_mut(chw).enumerate().for_each(|(ni, img)| {
        for r in 0..g.kk() {
            let ci = r / (g.kh * g.kw);
            let ky = (r / g.kw) % g.kh;
            let kx = r % g.kw;
            let row = &col[r * np + ni * g.p()..r * np + (ni + 1) * g.p()];
            let plane = &mut img[ci * g.h * g.w..(ci + 1) * g.h * g.w];
            for oy in 0..g.oh {
                if let Some((iy, lo, hi, ix0)) = g.run(ky, kx, oy) {
                    let src = &row[oy * g.ow + lo..oy * g.ow + hi];
                    let dst = &mut plane[iy * g.w + ix0..iy * g.w + ix0 + hi - lo];
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d += v;
                    }
                }
            }
        }
    });
}

/// [`col2im_slices`] for 3-row kernels without padding (every conv of the
/// paper's networks): input row `iy` at column offset `kx` receives the rows
/// `oy = iy − ky` of the three taps `(ky, kx)`, `ky = 0, 1, 2`; they are
/// summed in one pass and added once. That is a third of the short
/// (`OW`-element) loops of the general path.
///
/// From [`PER_CHANNEL_MIN`] input channels on, one task per channel `ci`:
/// it reads that channel's `3·KW` rows of `col` front to back (long
/// sequential streams the prefetcher follows) and writes the planes
/// `dx[ni, ci]` of every image. A task per image read
/// `P`-element pieces of all `C·9` rows, each from a different place of a
/// matrix of tens of MB, and waited on memory for most of them. Every
/// element receives its taps in the same order as before (kx outer,
/// `(a + b) + c` over ky), so the sums are unchanged and do not depend on
/// the thread count.
fn col2im_3x3_valid<T: Elem>(col: &[T], g: Geom, dx: &mut [T]) {
    let (h, w, oh, ow, kw, p) = (g.h, g.w, g.oh, g.ow, g.kw, g.p());
    let np = g.n * p;
    // Adds the taps of channel `ci`, image `ni` into its plane `dx[ni, ci]`.
    let add_taps = |ci: usize, ni: usize, plane: &mut [T]| {
        for kx in 0..kw {
            // Tap (ky, kx) is row (ci·3 + ky)·KW + kx of col.
            let tap = |ky: usize, oy: usize| {
                let r = (ci * 3 + ky) * kw + kx;
                let at = r * np + ni * p + oy * ow;
                &col[at..at + ow]
            };
            for iy in 0..h {
                let dst = &mut plane[iy * w + kx..iy * w + kx + ow];
                if iy >= 2 && iy < oh {
                    let (s0, s1, s2) = (tap(0, iy), tap(1, iy - 1), tap(2, iy - 2));
                    for (((d, &a), &b), &c) in dst.iter_mut().zip(s0).zip(s1).zip(s2) {
                        *d += (a + b) + c;
                    }
                } else {
                    // Edge rows: fewer than three taps reach them.
                    for ky in 0..3 {
                        if iy >= ky && iy - ky < oh {
                            for (d, &a) in dst.iter_mut().zip(tap(ky, iy - ky)) {
                                *d += a;
                            }
                        }
                    }
                }
            }
        }
    };
    if g.c < PER_CHANNEL_MIN {
        // Few channels: a task per image keeps both cores busy.
        dx.par_chunks_mut(g.c * h * w)
            .enumerate()
            .for_each(|(ni, img)| {
                for (ci, plane) in img.chunks_mut(h * w).enumerate() {
                    add_taps(ci, ni, plane);
                }
            });
        return;
    }
    // The planes of dx grouped by channel: planes[ci][ni] is dx[ni, ci].
    let mut planes: Vec<Vec<&mut [T]>> = (0..g.c).map(|_| Vec::with_capacity(g.n)).collect();
    for (i, plane) in dx.chunks_mut(h * w).enumerate() {
        planes[i % g.c].push(plane);
    }
    planes.into_par_iter().enumerate().for_each(|(ci, imgs)| {
        for (ni, plane) in imgs.into_iter().enumerate() {
            add_taps(ci, ni, plane);
        }
    });
}

/// Forward on host tensors; returns `y` and leaves the im2col matrix in `slot`.
pub(super) fn conv2d_forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    g: Geom,
    relu: bool,
    slot: &mut Option<Tensor>,
) -> Result<Tensor> {
    let oc = w.dim(0);
    let np = g.np();
    let kk = g.kk();
    let dtype = x.dtype();
    let mut col = take(slot.take(), &[kk, np], dtype);
    let mut tmp = take(None, &[oc, np], dtype);
    let mut y = Tensor::zeros(&[g.n, oc, g.oh, g.ow], dtype);
    with_dtype!(dtype, T, {
        im2col_slices::<T>(x.as_slice()?, g, col.as_mut_slice()?);
        // y'[oc, np] = w[oc, kk] · col[kk, np]
        gemm_slices::<T>(
            oc,
            np,
            kk,
            w.as_slice()?,
            kk,
            1,
            col.as_slice()?,
            np,
            1,
            tmp.as_mut_slice()?,
            false,
        );
        let bias: Option<&[T]> = match b {
            Some(b) => Some(b.as_slice()?),
            None => None,
        };
        scatter_to_nchw::<T>(tmp.as_slice()?, oc, g.p(), bias, relu, y.as_mut_slice()?);
    });
    *slot = Some(col);
    give_back(Some(tmp));
    Ok(y)
}

/// `[OC, N·P]` to `[N, OC, P]` (contiguous runs of `P`), adding `bias[oc]`
/// and applying ReLU if asked.
fn scatter_to_nchw<T: Elem>(
    t: &[T],
    oc: usize,
    p: usize,
    bias: Option<&[T]>,
    relu: bool,
    y: &mut [T],
) {
    if oc * p == 0 {
        return;
    }
    let np = t.len() / oc;
    y.par_chunks_mut(oc * p).enumerate().for_each(|(ni, img)| {
        for c in 0..oc {
            let bc = bias.map_or(T::zero(), |b| b[c]);
            let src = &t[c * np + ni * p..c * np + (ni + 1) * p];
            let dst = &mut img[c * p..(c + 1) * p];
            // Two loops, not a `relu &&` inside one: the flag, read through
            // the closure's reference, would keep the loop scalar.
            if relu {
                for (d, &v) in dst.iter_mut().zip(src) {
                    let v = v + bc;
                    *d = if v < T::zero() { T::zero() } else { v };
                }
            } else {
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d = v + bc;
                }
            }
        }
    });
}

/// Backward on host tensors from the im2col matrix the forward left in `slot`.
pub(super) fn conv2d_backward(
    dy: &Tensor,
    w: &Tensor,
    relu_out: Option<&Tensor>,
    g: Geom,
    slot: &mut Option<Tensor>,
    need_dx: bool,
) -> Result<Conv2dGrads> {
    let col = slot.take().ok_or(Error::InvalidArgument {
        op: "conv2d_backward",
        why: "no forward pass cached in the workspace (one backward per forward)".into(),
    })?;
    let wsh = w.shape().to_vec();
    let oc = wsh[0];
    let dtype = dy.dtype();
    let np = g.np();
    let kk = g.kk();
    let mut dy2 = take(None, &[oc, np], dtype);
    let mut dw = Tensor::zeros(&wsh, dtype);
    let mut db = Tensor::zeros(&[oc], dtype);
    let mut dx = None;
    with_dtype!(dtype, T, {
        let dys = dy.as_slice::<T>()?;
        let mask: Option<&[T]> = match relu_out {
            Some(y) => Some(y.as_slice()?),
            None => None,
        };
        gather_from_nchw::<T>(
            dys,
            mask,
            g.n,
            g.p(),
            dy2.as_mut_slice()?,
            db.as_mut_slice()?,
        );
        // dw[oc, kk] = dy'[oc, np] · col[kk, np]ᵀ
        gemm_slices::<T>(
            oc,
            kk,
            np,
            dy2.as_slice()?,
            np,
            1,
            col.as_slice()?,
            1,
            np,
            dw.as_mut_slice()?,
            false,
        );
        if need_dx {
            // dcol[kk, np] = w[oc, kk]ᵀ · dy'[oc, np]; reuse the col buffer.
            let mut dcol = col;
            gemm_slices::<T>(
                kk,
                np,
                oc,
                w.as_slice()?,
                1,
                kk,
                dy2.as_slice()?,
                np,
                1,
                dcol.as_mut_slice()?,
                false,
            );
            let mut dxt = Tensor::zeros(&[g.n, g.c, g.h, g.w], dtype);
            col2im_slices::<T>(dcol.as_slice()?, g, dxt.as_mut_slice()?);
            dx = Some(dxt);
            give_back(Some(dcol));
        } else {
            give_back(Some(col));
        }
    });
    give_back(Some(dy2));
    Ok(Conv2dGrads { dx, dw, db })
}

/// `[N, OC, P]` to `[OC, N·P]`, multiplied by `[mask > 0]` when a mask is
/// given; `db[oc]` receives the sum of row `oc` (sequential per row).
fn gather_from_nchw<T: Elem>(
    y: &[T],
    mask: Option<&[T]>,
    n: usize,
    p: usize,
    t: &mut [T],
    db: &mut [T],
) {
    let oc = db.len();
    if oc * p * n == 0 {
        return;
    }
    t.par_chunks_mut(n * p)
        .zip(db.par_iter_mut())
        .enumerate()
        .for_each(|(c, (row, dbc))| {
            for ni in 0..n {
                let o = (ni * oc + c) * p;
                let src = &y[o..o + p];
                let dst = &mut row[ni * p..(ni + 1) * p];
                match mask {
                    Some(m) => {
                        for ((d, &v), &mv) in dst.iter_mut().zip(src).zip(&m[o..o + p]) {
                            *d = if mv > T::zero() { v } else { T::zero() };
                        }
                    }
                    None => dst.copy_from_slice(src),
                }
            }
            *dbc = lane_sum(row);
        });
}

/// `Σ x` in a fixed order that vectorises: eight running sums over
/// `x[i]` with `i ≡ lane (mod 8)`, the tail added to lanes `0..`, then the
/// lanes summed pairwise. One serial sum would wait on the adder's latency
/// for every element (a bias gradient sums N·P of them per channel).
fn lane_sum<T: Elem>(x: &[T]) -> T {
    let mut lanes = [T::zero(); 8];
    let mut chunks = x.chunks_exact(8);
    for ch in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(ch) {
            *l += v;
        }
    }
    for (l, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *l += v;
    }
    let [a, b, c, d, e, f, g, h] = lanes;
    ((a + b) + (c + d)) + ((e + f) + (g + h))
}
