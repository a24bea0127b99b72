//! 2-D convolution (stride 1, square zero padding) by im2col + GEMM.
//!
//! Shapes: input `x` is `[N, C, H, W]`, weight `w` is `[OC, C, KH, KW]`,
//! output `y` is `[N, OC, OH, OW]` with `OH = H + 2·pad − KH + 1`.
//!
//! Forward: `col = im2col(x)` is `[N·OH·OW, C·KH·KW]` (row = output pixel,
//! column = (c, kh, kw)); `y' = col · wᵀ` is `[N·OH·OW, OC]`; `y` is `y'`
//! permuted to NCHW with the bias (and optionally ReLU) fused into the
//! permutation. Backward: `dy'` = `dy` permuted back; `dw = dy'ᵀ · col`,
//! `db = Σ dy`, `dcol = dy' · w`, `dx = col2im(dcol)`.

use rayon::prelude::*;

#[allow(unused_imports)]
use super::num::*;

use super::gemm::gemm_slices;
use crate::{with_dtype, Elem, Error, Result, Tensor};

/// Buffers a convolution layer keeps between calls so that the hot path does
/// not allocate: the im2col matrix of the last forward (needed by the weight
/// gradient) and the GEMM output.
#[derive(Clone, Debug, Default)]
pub struct ConvWorkspace {
    col: Option<Tensor>,
    tmp: Option<Tensor>,
    x_shape: Vec<usize>,
    pad: usize,
    cached: bool,
}

impl ConvWorkspace {
    /// An empty workspace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes currently held.
    pub fn size_in_bytes(&self) -> usize {
        self.col.as_ref().map_or(0, |t| t.size_in_bytes())
            + self.tmp.as_ref().map_or(0, |t| t.size_in_bytes())
    }
}

fn take(slot: &mut Option<Tensor>, shape: &[usize], dtype: crate::DType) -> Tensor {
    let mut t = slot.take().unwrap_or_else(|| Tensor::zeros(&[0], dtype));
    t.resize_for_overwrite(shape, dtype);
    t
}

fn out_hw(
    op: &'static str,
    x: &[usize],
    kh: usize,
    kw: usize,
    pad: usize,
) -> Result<(usize, usize)> {
    let (h, w) = (x[2] + 2 * pad, x[3] + 2 * pad);
    if h < kh || w < kw {
        return Err(Error::InvalidShape {
            op,
            shape: x.to_vec(),
            why: "the padded image is smaller than the kernel",
        });
    }
    Ok((h - kh + 1, w - kw + 1))
}

/// `im2col`: `[N, C, H, W]` to `[N·OH·OW, C·KH·KW]` with zero padding `pad`.
pub fn im2col(x: &Tensor, kh: usize, kw: usize, pad: usize) -> Result<Tensor> {
    super::rank("im2col", x, 4)?;
    let s = x.shape().to_vec();
    let (oh, ow) = out_hw("im2col", &s, kh, kw, pad)?;
    let mut col = Tensor::zeros(&[s[0] * oh * ow, s[1] * kh * kw], x.dtype());
    with_dtype!(x.dtype(), T, {
        im2col_slices::<T>(x.as_slice()?, &s, kh, kw, pad, col.as_mut_slice()?);
    });
    Ok(col)
}

fn im2col_slices<T: Elem>(x: &[T], s: &[usize], kh: usize, kw: usize, pad: usize, col: &mut [T]) {
    let (c, h, w) = (s[1], s[2], s[3]);
    let (oh, ow) = (h + 2 * pad + 1 - kh, w + 2 * pad + 1 - kw);
    let kk = c * kh * kw;
    if kk == 0 || oh * ow == 0 {
        return;
    }
    col.par_chunks_mut(oh * ow * kk)
        .enumerate()
        .for_each(|(n, img_col)| {
            let img = &x[n * c * h * w..(n + 1) * c * h * w];
            if pad == 0 {
                // Fast path: every window lies inside the image; copy kw-wide runs.
                for oy in 0..oh {
                    for ox in 0..ow {
                        let row = &mut img_col[(oy * ow + ox) * kk..(oy * ow + ox + 1) * kk];
                        let mut j = 0;
                        for ci in 0..c {
                            let plane = &img[ci * h * w..(ci + 1) * h * w];
                            for ky in 0..kh {
                                let s0 = (oy + ky) * w + ox;
                                row[j..j + kw].copy_from_slice(&plane[s0..s0 + kw]);
                                j += kw;
                            }
                        }
                    }
                }
                return;
            }
            for oy in 0..oh {
                for ox in 0..ow {
                    let row = &mut img_col[(oy * ow + ox) * kk..(oy * ow + ox + 1) * kk];
                    let mut j = 0;
                    for ci in 0..c {
                        let plane = &img[ci * h * w..(ci + 1) * h * w];
                        for ky in 0..kh {
                            let iy = (oy + ky) as isize - pad as isize;
                            for kx in 0..kw {
                                let ix = (ox + kx) as isize - pad as isize;
                                row[j] =
                                    if iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < w
                                    {
                                        plane[iy as usize * w + ix as usize]
                                    } else {
                                        T::zero()
                                    };
                                j += 1;
                            }
                        }
                    }
                }
            }
        });
}

/// `col2im`: the adjoint of [`im2col`] — sums `[N·OH·OW, C·KH·KW]` back into `[N, C, H, W]`.
pub fn col2im(col: &Tensor, x_shape: &[usize], kh: usize, kw: usize, pad: usize) -> Result<Tensor> {
    if x_shape.len() != 4 {
        return Err(Error::InvalidShape {
            op: "col2im",
            shape: x_shape.to_vec(),
            why: "expected a 4-D NCHW shape",
        });
    }
    let (oh, ow) = out_hw("col2im", x_shape, kh, kw, pad)?;
    col.expect_shape("col2im", &[x_shape[0] * oh * ow, x_shape[1] * kh * kw])?;
    let mut dx = Tensor::zeros(x_shape, col.dtype());
    with_dtype!(col.dtype(), T, {
        col2im_slices::<T>(col.as_slice()?, x_shape, kh, kw, pad, dx.as_mut_slice()?);
    });
    Ok(dx)
}

fn col2im_slices<T: Elem>(col: &[T], s: &[usize], kh: usize, kw: usize, pad: usize, dx: &mut [T]) {
    let (c, h, w) = (s[1], s[2], s[3]);
    let (oh, ow) = (h + 2 * pad + 1 - kh, w + 2 * pad + 1 - kw);
    let kk = c * kh * kw;
    if c * h * w == 0 {
        return;
    }
    // One task per image; inside, a fixed loop order: bit-identical for any thread count.
    dx.par_chunks_mut(c * h * w)
        .enumerate()
        .for_each(|(n, img)| {
            img.iter_mut().for_each(|v| *v = T::zero());
            let img_col = &col[n * oh * ow * kk..(n + 1) * oh * ow * kk];
            if pad == 0 {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let row = &img_col[(oy * ow + ox) * kk..(oy * ow + ox + 1) * kk];
                        let mut j = 0;
                        for ci in 0..c {
                            for ky in 0..kh {
                                let d0 = ci * h * w + (oy + ky) * w + ox;
                                for (d, &v) in img[d0..d0 + kw].iter_mut().zip(&row[j..j + kw]) {
                                    *d += v;
                                }
                                j += kw;
                            }
                        }
                    }
                }
                return;
            }
            for oy in 0..oh {
                for ox in 0..ow {
                    let row = &img_col[(oy * ow + ox) * kk..(oy * ow + ox + 1) * kk];
                    let mut j = 0;
                    for ci in 0..c {
                        for ky in 0..kh {
                            let iy = (oy + ky) as isize - pad as isize;
                            for kx in 0..kw {
                                let ix = (ox + kx) as isize - pad as isize;
                                if iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < w {
                                    img[ci * h * w + iy as usize * w + ix as usize] += row[j];
                                }
                                j += 1;
                            }
                        }
                    }
                }
            }
        });
}

/// Convolution forward: `y = conv(x, w) + b`, then ReLU when `relu` is set.
///
/// Keeps the im2col matrix in `ws` for [`conv2d_backward`].
pub fn conv2d_forward(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    pad: usize,
    relu: bool,
    ws: &mut ConvWorkspace,
) -> Result<Tensor> {
    super::rank("conv2d", x, 4)?;
    super::rank("conv2d", w, 4)?;
    let s = x.shape().to_vec();
    let ws_ = w.shape().to_vec();
    let (oc, kh, kw) = (ws_[0], ws_[2], ws_[3]);
    if ws_[1] != s[1] {
        return Err(Error::ShapeMismatch {
            op: "conv2d (input channels)",
            expected: vec![ws_[1]],
            got: vec![s[1]],
        });
    }
    if let Some(b) = b {
        b.expect_shape("conv2d bias", &[oc])?;
        b.expect_dtype("conv2d bias", x.dtype())?;
    }
    w.expect_dtype("conv2d", x.dtype())?;
    let (oh, ow) = out_hw("conv2d", &s, kh, kw, pad)?;
    let rows = s[0] * oh * ow;
    let kk = s[1] * kh * kw;
    let dtype = x.dtype();
    let mut col = take(&mut ws.col, &[rows, kk], dtype);
    let mut tmp = take(&mut ws.tmp, &[rows, oc], dtype);
    let mut y = Tensor::zeros(&[s[0], oc, oh, ow], dtype);
    with_dtype!(dtype, T, {
        im2col_slices::<T>(x.as_slice()?, &s, kh, kw, pad, col.as_mut_slice()?);
        gemm_slices::<T>(
            rows,
            oc,
            kk,
            col.as_slice()?,
            kk,
            1,
            w.as_slice()?,
            1,
            kk,
            tmp.as_mut_slice()?,
            false,
        );
        let bias: Option<&[T]> = match b {
            Some(b) => Some(b.as_slice()?),
            None => None,
        };
        rows_to_nchw::<T>(
            tmp.as_slice()?,
            s[0],
            oc,
            oh * ow,
            bias,
            relu,
            y.as_mut_slice()?,
        );
    });
    ws.col = Some(col);
    ws.tmp = Some(tmp);
    ws.x_shape = s;
    ws.pad = pad;
    ws.cached = true;
    Ok(y)
}

/// `[N·P, OC]` to `[N, OC, P]`, adding `bias[oc]` and applying ReLU if asked.
fn rows_to_nchw<T: Elem>(
    t: &[T],
    n: usize,
    oc: usize,
    p: usize,
    bias: Option<&[T]>,
    relu: bool,
    y: &mut [T],
) {
    if oc * p == 0 {
        return;
    }
    let _ = n;
    y.par_chunks_mut(oc * p).enumerate().for_each(|(ni, img)| {
        let src = &t[ni * p * oc..(ni + 1) * p * oc];
        for c in 0..oc {
            let bc = bias.map_or(T::zero(), |b| b[c]);
            let dst = &mut img[c * p..(c + 1) * p];
            for (pi, d) in dst.iter_mut().enumerate() {
                let v = src[pi * oc + c] + bc;
                *d = if relu && v < T::zero() { T::zero() } else { v };
            }
        }
    });
}

/// Gradients of a convolution.
#[derive(Clone, Debug)]
pub struct Conv2dGrads {
    /// Gradient with respect to the input, when requested.
    pub dx: Option<Tensor>,
    /// Gradient with respect to the weight, `[OC, C, KH, KW]`.
    pub dw: Tensor,
    /// Gradient with respect to the bias, `[OC]`.
    pub db: Tensor,
}

/// Convolution backward from `dy`, the gradient of the output.
///
/// When the forward fused a ReLU, pass its output as `relu_out`: the mask
/// `[y > 0]` is applied while `dy` is permuted (no extra pass). Uses the
/// im2col matrix that [`conv2d_forward`] left in `ws`.
pub fn conv2d_backward(
    dy: &Tensor,
    w: &Tensor,
    relu_out: Option<&Tensor>,
    ws: &mut ConvWorkspace,
    need_dx: bool,
) -> Result<Conv2dGrads> {
    let col = match ws.col.take() {
        Some(c) if ws.cached => c,
        other => {
            ws.col = other;
            return Err(Error::InvalidArgument {
                op: "conv2d_backward",
                why: "no forward pass cached in the workspace (one backward per forward)".into(),
            });
        }
    };
    ws.cached = false;
    let s = ws.x_shape.clone();
    let pad = ws.pad;
    let ws_ = w.shape().to_vec();
    let (oc, kh, kw) = (ws_[0], ws_[2], ws_[3]);
    let (oh, ow) = out_hw("conv2d_backward", &s, kh, kw, pad)?;
    dy.expect_shape("conv2d_backward", &[s[0], oc, oh, ow])?;
    let dtype = dy.dtype();
    let rows = s[0] * oh * ow;
    let kk = s[1] * kh * kw;
    let mut dy2 = take(&mut ws.tmp, &[rows, oc], dtype);
    let mut dw = Tensor::zeros(&ws_, dtype);
    let mut db = Tensor::zeros(&[oc], dtype);
    let mut dx = None;
    with_dtype!(dtype, T, {
        let dys = dy.as_slice::<T>()?;
        let mask: Option<&[T]> = match relu_out {
            Some(y) => {
                y.expect_shape("conv2d_backward (relu output)", dy.shape())?;
                Some(y.as_slice()?)
            }
            None => None,
        };
        // Permute (and mask) dy; db[c] = Σ_{n,p} dy[n,c,p] as per-image
        // partial sums added in image order (fixed order for any thread count).
        let partial = nchw_to_rows::<T>(dys, mask, oc, oh * ow, dy2.as_mut_slice()?);
        {
            let dbs = db.as_mut_slice::<T>()?;
            for img in partial.chunks(oc.max(1)) {
                for (o, &v) in dbs.iter_mut().zip(img) {
                    *o += v;
                }
            }
        }
        // dw[oc, kk] = dy2ᵀ · col
        gemm_slices::<T>(
            oc,
            kk,
            rows,
            dy2.as_slice()?,
            1,
            oc,
            col.as_slice()?,
            kk,
            1,
            dw.as_mut_slice()?,
            false,
        );
        if need_dx {
            // dcol[rows, kk] = dy2 · w ; reuse the col buffer.
            let mut dcol = col;
            gemm_slices::<T>(
                rows,
                kk,
                oc,
                dy2.as_slice()?,
                oc,
                1,
                w.as_slice()?,
                kk,
                1,
                dcol.as_mut_slice()?,
                false,
            );
            let mut dxt = Tensor::zeros(&s, dtype);
            col2im_slices::<T>(dcol.as_slice()?, &s, kh, kw, pad, dxt.as_mut_slice()?);
            dx = Some(dxt);
            ws.col = Some(dcol);
        } else {
            ws.col = Some(col);
        }
    });
    ws.tmp = Some(dy2);
    Ok(Conv2dGrads { dx, dw, db })
}

/// `[N, OC, P]` to `[N·P, OC]`, multiplied by `[mask > 0]` when a mask is
/// given; returns the per-image channel sums `[N, OC]` of the result.
fn nchw_to_rows<T: Elem>(y: &[T], mask: Option<&[T]>, oc: usize, p: usize, t: &mut [T]) -> Vec<T> {
    if oc * p == 0 {
        return Vec::new();
    }
    let n = y.len() / (oc * p);
    let mut sums = vec![T::zero(); n * oc];
    t.par_chunks_mut(p * oc)
        .zip(sums.par_chunks_mut(oc))
        .enumerate()
        .for_each(|(ni, (dst, sum))| {
            let src = &y[ni * oc * p..(ni + 1) * oc * p];
            let m = mask.map(|m| &m[ni * oc * p..(ni + 1) * oc * p]);
            for c in 0..oc {
                let mut acc = T::zero();
                for pi in 0..p {
                    let mut v = src[c * p + pi];
                    if let Some(m) = m {
                        if m[c * p + pi] <= T::zero() {
                            v = T::zero();
                        }
                    }
                    dst[pi * oc + c] = v;
                    acc += v;
                }
                sum[c] = acc;
            }
        });
    sums
}
