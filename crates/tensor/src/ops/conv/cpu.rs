//! The CPU reference of [`super`]: im2col/col2im with contiguous runs of
//! `OW` pixels, the `gemm` crate (or, for a mostly-zero output gradient, the
//! sparse products of [`super::sparse`]), and host scratch buffers pooled across
//! calls. Every split is fixed by the shapes, so results do not depend on
//! the thread count. Operands were checked by the API.

use std::sync::Mutex;

use rayon::prelude::*;

#[allow(unused_imports)]
use crate::ops::num::*;

use super::{sparse, Conv2dGrads, ConvGeom as Geom};
use crate::ops::even_task_count;
use crate::ops::gemm::gemm_serial;
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
    let (hw, p) = (g.h * g.w, g.p());
    // Tap row `t` of channel `ci`, image `ni`: its `P` columns from the plane.
    let fill = |ci: usize, t: usize, ni: usize, seg: &mut [T]| {
        fill_tap_row(
            &x[(ni * g.c + ci) * hw..(ni * g.c + ci + 1) * hw],
            g,
            t,
            seg,
        );
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

/// One row of the column matrix: tap `t = ky·KW + kx` of one input plane
/// (`H·W`) over the `P` output pixels, zero where the tap falls in the
/// padding.
fn fill_tap_row<T: Elem>(plane: &[T], g: Geom, t: usize, seg: &mut [T]) {
    let (ky, kx) = (t / g.kw, t % g.kw);
    for (oy, dst) in seg.chunks_exact_mut(g.ow).enumerate() {
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
    dx.par_chunks_mut(chw)
        .enumerate()
        .for_each(|(ni, img)| col2im_image_general(col, np, ni * g.p(), g, img));
}

/// Adds the taps of one image into its `[C, H, W]` gradient `img`: the
/// image's columns of `col` (row stride `np`) start at column `base`.
/// Taps in row order of `col`, each added once.
fn col2im_image_general<T: Elem>(col: &[T], np: usize, base: usize, g: Geom, img: &mut [T]) {
    for r in 0..g.kk() {
        let ci = r / (g.kh * g.kw);
        let ky = (r / g.kw) % g.kh;
        let kx = r % g.kw;
        let row = &col[r * np + base..r * np + base + g.p()];
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
    let (h, w, p) = (g.h, g.w, g.p());
    let np = g.n * p;
    // Adds the taps of channel `ci`, image `ni` into its plane `dx[ni, ci]`.
    let add_taps =
        |ci: usize, ni: usize, plane: &mut [T]| add_taps_3x3(col, np, ni * p, g, ci, plane);
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

/// Adds the 3×3 taps of channel `ci` of one image into its plane (`H·W`):
/// the image's columns of `col` (row stride `np`) start at column `base`.
/// Kx outer; a row that three taps reach receives `(a + b) + c` over ky.
fn add_taps_3x3<T: Elem>(col: &[T], np: usize, base: usize, g: Geom, ci: usize, plane: &mut [T]) {
    let (h, w, oh, ow, kw) = (g.h, g.w, g.oh, g.ow, g.kw);
    for kx in 0..kw {
        // Tap (ky, kx) is row (ci·3 + ky)·KW + kx of col.
        let tap = |ky: usize, oy: usize| {
            let r = (ci * 3 + ky) * kw + kx;
            let at = r * np + base + oy * ow;
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
}

/// Images per part at most: the batch is cut into [`parts`] fixed ranges of
/// images, each one task with its own scratch.
const PART_IMAGES: usize = 16;

/// The batch of `n` images cut into [`even_task_count`] near-equal
/// contiguous ranges of at most about [`PART_IMAGES`] images (no more
/// ranges than images). Fixed by `n`, never by the thread count, so the
/// weight gradient's sum over parts is too.
fn parts(n: usize) -> Vec<std::ops::Range<usize>> {
    let count = even_task_count(n, PART_IMAGES).min(n);
    (0..count)
        .map(|i| i * n / count..(i + 1) * n / count)
        .collect()
}

/// `buf` cut at the image ranges of `parts`, `per_image` elements each.
fn split_parts<'a, T>(
    mut buf: &'a mut [T],
    parts: &[std::ops::Range<usize>],
    per_image: usize,
) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(parts.len());
    for r in parts {
        let (head, tail) = buf.split_at_mut(r.len() * per_image);
        out.push(head);
        buf = tail;
    }
    out
}

/// The column matrix of one image from its `[C, H, W]`: row `r` of
/// `[C·KH·KW, P]` goes to `col[r·np + base..][..P]`.
fn im2col_image<T: Elem>(x_img: &[T], g: Geom, col: &mut [T], np: usize, base: usize) {
    let (hw, p, taps) = (g.h * g.w, g.p(), g.kh * g.kw);
    for r in 0..g.kk() {
        let ci = r / taps;
        let row = &mut col[r * np + base..r * np + base + p];
        fill_tap_row(&x_img[ci * hw..(ci + 1) * hw], g, r % taps, row);
    }
}

/// Adds `col2im` of one image's columns of `col` (row stride `np`, from
/// column `base`) into its `[C, H, W]`.
fn col2im_image<T: Elem>(col: &[T], np: usize, base: usize, g: Geom, dx_img: &mut [T]) {
    if g.pad == 0 && g.kh == 3 {
        for (ci, plane) in dx_img.chunks_mut(g.h * g.w).enumerate() {
            add_taps_3x3(col, np, base, g, ci, plane);
        }
    } else {
        col2im_image_general(col, np, base, g, dx_img);
    }
}

/// Forward on host tensors, one image at a time: for image `n`,
/// `col_n = im2col(x[n])` (`[C·KH·KW, P]`, in cache) and
/// `y[n] = w·col_n + b` (ReLU fused), written straight into `y[n]`,
/// which is `[OC, P]` in NCHW. Parts of the batch run side by side.
/// Keeps `x` (shared, not copied) in `slot` for the backward, which
/// rebuilds each `col_n`: cheaper than storing `C·KH·KW·N·P` values.
pub(super) fn conv2d_forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    g: Geom,
    relu: bool,
    slot: &mut Option<Tensor>,
) -> Result<Tensor> {
    let oc = w.dim(0);
    let (kk, p) = (g.kk(), g.p());
    let dtype = x.dtype();
    let mut y = Tensor::zeros(&[g.n, oc, g.oh, g.ow], dtype);
    if g.n > 0 && p > 0 && oc > 0 {
        let parts = parts(g.n);
        let mut scratch = take(None, &[parts.len(), kk * p], dtype);
        with_dtype!(dtype, T, {
            let (xs, ws) = (x.as_slice::<T>()?, w.as_slice::<T>()?);
            let bias: Option<&[T]> = match b {
                Some(b) => Some(b.as_slice()?),
                None => None,
            };
            let chw = g.c * g.h * g.w;
            let ys = split_parts(y.as_mut_slice::<T>()?, &parts, oc * p);
            let cols = scratch.as_mut_slice::<T>()?.chunks_mut(kk * p);
            ys.into_par_iter()
                .zip(cols.collect::<Vec<_>>())
                .zip(&parts)
                .for_each(|((yp, col), range)| {
                    for (yi, ni) in yp.chunks_mut(oc * p).zip(range.clone()) {
                        im2col_image(&xs[ni * chw..(ni + 1) * chw], g, col, p, 0);
                        // y[n][oc, p] = w[oc, kk] · col_n[kk, p]
                        gemm_serial::<T>(oc, p, kk, ws, kk, 1, col, p, 1, yi, p, false);
                        for (c, row) in yi.chunks_mut(p).enumerate() {
                            let bc = bias.map_or(T::zero(), |b| b[c]);
                            // Two loops, not a `relu &&` inside one: the
                            // flag would keep the loop scalar.
                            if relu {
                                for v in row.iter_mut() {
                                    let s = *v + bc;
                                    *v = if s < T::zero() { T::zero() } else { s };
                                }
                            } else {
                                row.iter_mut().for_each(|v| *v += bc);
                            }
                        }
                    }
                });
        });
        give_back(Some(scratch));
    }
    *slot = Some(x.clone());
    Ok(y)
}

/// Backward on host tensors from the input the forward left in `slot`, one
/// image at a time in fixed parts of the batch (see [`parts`]). For image
/// `n` of a part: `dy_n = dy[n]·[y[n] > 0]` (the fused ReLU's mask),
/// `col_n = im2col(x[n])`, `dw_part += dy_n·col_nᵀ`, `db_part[oc] += Σ_p
/// dy_n[oc, p]`, and when asked `dx[n] = col2im(wᵀ·dy_n)`. Where `dy_n`
/// is mostly zeros ([`sparse::worth_it`]: a max pool or dropout follows),
/// the two products are summed over its nonzeros only ([`sparse`]). Then
/// `dw` and `db` are the parts' sums in part order: the same numbers for any
/// thread count.
pub(super) fn conv2d_backward(
    dy: &Tensor,
    w: &Tensor,
    relu_out: Option<&Tensor>,
    g: Geom,
    slot: &mut Option<Tensor>,
    need_dx: bool,
) -> Result<Conv2dGrads> {
    let x = slot.take().ok_or(Error::InvalidArgument {
        op: "conv2d_backward",
        why: "no forward pass cached in the workspace (one backward per forward)".into(),
    })?;
    let wsh = w.shape().to_vec();
    let oc = wsh[0];
    let dtype = dy.dtype();
    let (kk, p) = (g.kk(), g.p());
    let mut dw = Tensor::zeros(&wsh, dtype);
    let mut db = Tensor::zeros(&[oc], dtype);
    let mut dx = need_dx.then(|| Tensor::zeros(&[g.n, g.c, g.h, g.w], dtype));
    if g.n == 0 || p == 0 || oc == 0 {
        return Ok(Conv2dGrads { dx, dw, db });
    }
    let parts = parts(g.n);
    // Per part: col_n, dcol_n (when dx is asked) and dy_n of the image in
    // hand, then the part's dw and db. One image per step: the column
    // matrices of 2 or 4 images (a longer inner dimension for dw) leave L2
    // on the paper's layers and were measured no faster.
    let dcol_len = if need_dx { kk * p } else { 0 };
    // Plus one `[P, KK]` buffer for the sparse path (super::sparse): the
    // transposed column matrix, then the transposed `dcol_n`.
    let per_part = kk * p + dcol_len + oc * p + oc * kk + oc + kk * p;
    let mut scratch = take(None, &[parts.len(), per_part], dtype);
    with_dtype!(dtype, T, {
        let (xs, ws, dys) = (x.as_slice::<T>()?, w.as_slice::<T>()?, dy.as_slice::<T>()?);
        let mask: Option<&[T]> = match relu_out {
            Some(y) => Some(y.as_slice()?),
            None => None,
        };
        let chw = g.c * g.h * g.w;
        let bufs: Vec<&mut [T]> = scratch.as_mut_slice::<T>()?.chunks_mut(per_part).collect();
        let dxs: Vec<Option<&mut [T]>> = match dx.as_mut() {
            Some(d) => split_parts(d.as_mut_slice::<T>()?, &parts, chw)
                .into_iter()
                .map(Some)
                .collect(),
            None => parts.iter().map(|_| None).collect(),
        };
        bufs.into_par_iter()
            .zip(dxs)
            .zip(&parts)
            .for_each(|((buf, mut dxp), range)| {
                let (col, rest) = buf.split_at_mut(kk * p);
                let (dcol, rest) = rest.split_at_mut(dcol_len);
                let (dyn_, rest) = rest.split_at_mut(oc * p);
                let (dwp, rest) = rest.split_at_mut(oc * kk);
                let (dbp, tbuf) = rest.split_at_mut(oc);
                dbp.iter_mut().for_each(|v| *v = T::zero());
                let mut nz = sparse::Nonzeros::default();
                for (j, ni) in range.clone().enumerate() {
                    let img = ni * oc * p..(ni + 1) * oc * p;
                    let src = &dys[img.clone()];
                    match mask {
                        Some(m) => {
                            let mk = &m[img];
                            for ((d, &v), &mv) in dyn_.iter_mut().zip(src).zip(mk) {
                                *d = if mv > T::zero() { v } else { T::zero() };
                            }
                        }
                        None => dyn_.copy_from_slice(src),
                    }
                    for (d, row) in dbp.iter_mut().zip(dyn_.chunks(p)) {
                        *d += lane_sum(row);
                    }
                    im2col_image(&xs[ni * chw..(ni + 1) * chw], g, col, p, 0);
                    if sparse::worth_it(dyn_, kk) {
                        // The same products from dy_n's nonzeros only.
                        nz.collect(dyn_, oc, p);
                        sparse::transpose(col, kk, p, tbuf);
                        sparse::dw_image(&nz, tbuf, kk, dwp, j > 0);
                        if let Some(dxp) = dxp.as_deref_mut() {
                            sparse::dcol_image(&nz, ws, kk, tbuf);
                            sparse::transpose(tbuf, p, kk, dcol);
                            col2im_image(dcol, p, 0, g, &mut dxp[j * chw..(j + 1) * chw]);
                        }
                        continue;
                    }
                    // dw_part[oc, kk] (+)= dy_n[oc, p] · col_n[kk, p]ᵀ
                    gemm_serial::<T>(oc, kk, p, dyn_, p, 1, col, 1, p, dwp, kk, j > 0);
                    if let Some(dxp) = dxp.as_deref_mut() {
                        // dcol_n[kk, p] = w[oc, kk]ᵀ · dy_n[oc, p]
                        gemm_serial::<T>(kk, p, oc, ws, 1, kk, dyn_, p, 1, dcol, p, false);
                        col2im_image(dcol, p, 0, g, &mut dxp[j * chw..(j + 1) * chw]);
                    }
                }
            });
        // The parts' sums, in part order.
        let bufs = scratch.as_slice::<T>()?;
        let (dws, dbs) = (dw.as_mut_slice::<T>()?, db.as_mut_slice::<T>()?);
        for (i, buf) in bufs.chunks(per_part).enumerate() {
            let at = kk * p + dcol_len + oc * p;
            let (dwp, dbp) = (&buf[at..at + oc * kk], &buf[at + oc * kk..][..oc]);
            if i == 0 {
                dws.copy_from_slice(dwp);
                dbs.copy_from_slice(dbp);
            } else {
                dws.iter_mut().zip(dwp).for_each(|(d, &v)| *d += v);
                dbs.iter_mut().zip(dbp).for_each(|(d, &v)| *d += v);
            }
        }
    });
    give_back(Some(scratch));
    Ok(Conv2dGrads { dx, dw, db })
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
