//! The CUDA twin of `cpu.rs`: the same ops on [`CudaTensor`]s, launching
//! the kernels of `conv.cu` beside this file. The API in `mod.rs` has
//! checked shapes, dtypes and devices; these functions trust them.

use crate::cuda::kernels::gemm::gemm_buf;
use crate::cuda::prelude::*;
use crate::ops::conv::ConvGeom;
use crate::ops::Transpose;

/// The device buffers of a [`ConvWorkspace`](crate::ops::ConvWorkspace):
/// the im2col matrix of the last forward and the GEMM output, kept between
/// calls (no allocation in steady state).
#[derive(Clone, Debug, Default)]
pub(crate) struct ConvWorkspace {
    col: Option<CudaTensor>,
    tmp: Option<CudaTensor>,
}

fn take(slot: &mut Option<CudaTensor>, dev: &CudaDevice, shape: &[usize]) -> Result<CudaTensor> {
    match slot.take() {
        Some(t) if t.numel() == numel_of(shape) && t.device() == dev => t.reshape(shape),
        _ => CudaTensor::uninit(dev, shape),
    }
}

/// A [`ConvGeom`] as the kernels' 32-bit arguments.
#[derive(Clone, Copy)]
struct Geom {
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    kh: u32,
    kw: u32,
    pad: u32,
    oh: u32,
    ow: u32,
}

impl Geom {
    /// Fails when the column matrix or the image exceeds the kernels'
    /// 32-bit sizes (then every other size fits too).
    fn new(op: &'static str, g: ConvGeom) -> Result<Geom> {
        let s = [g.n, g.c, g.h, g.w];
        fits_u32(op, &s, g.kk().saturating_mul(g.np()))?;
        fits_u32(op, &s, numel_of(&s))?;
        let u = |v: usize| v as u32;
        Ok(Geom {
            n: u(g.n),
            c: u(g.c),
            h: u(g.h),
            w: u(g.w),
            kh: u(g.kh),
            kw: u(g.kw),
            pad: u(g.pad),
            oh: u(g.oh),
            ow: u(g.ow),
        })
    }
    fn p(&self) -> usize {
        (self.oh * self.ow) as usize
    }
    fn np(&self) -> usize {
        self.n as usize * self.p()
    }
    fn kk(&self) -> usize {
        (self.c * self.kh * self.kw) as usize
    }
}

fn im2col_buf(
    dev: &CudaDevice,
    x: &DeviceBuffer<f32>,
    g: &Geom,
    col: &mut DeviceBuffer<f32>,
) -> Result<()> {
    launch!(dev, "conv.cu", "im2col_f32", cfg_1d(g.kk() * g.np());
        x.raw(), col.raw_mut(), &g.n, &g.c, &g.h, &g.w, &g.kh, &g.kw, &g.pad, &g.oh, &g.ow);
    Ok(())
}

fn col2im_buf(
    dev: &CudaDevice,
    col: &DeviceBuffer<f32>,
    g: &Geom,
    dx: &mut DeviceBuffer<f32>,
) -> Result<()> {
    let total = (g.n * g.c * g.h * g.w) as usize;
    launch!(dev, "conv.cu", "col2im_f32", cfg_1d(total);
        col.raw(), dx.raw_mut(), &g.n, &g.c, &g.h, &g.w, &g.kh, &g.kw, &g.pad, &g.oh, &g.ow);
    Ok(())
}

pub(crate) fn im2col(x: &CudaTensor, g: ConvGeom) -> Result<CudaTensor> {
    let g = Geom::new("im2col", g)?;
    let dev = x.device().clone();
    let mut col = CudaTensor::uninit(&dev, &[g.kk(), g.np()])?;
    im2col_buf(&dev, x.buf(), &g, col.buf_mut()?)?;
    Ok(col)
}

pub(crate) fn col2im(col: &CudaTensor, x_shape: &[usize], g: ConvGeom) -> Result<CudaTensor> {
    let g = Geom::new("col2im", g)?;
    let dev = col.device().clone();
    let mut dx = CudaTensor::uninit(&dev, x_shape)?;
    col2im_buf(&dev, col.buf(), &g, dx.buf_mut()?)?;
    Ok(dx)
}

/// Convolution forward: `y = conv(x, w) + b`, then ReLU when `relu`
/// (im2col, one cuBLAS GEMM, and a fused bias/ReLU/NCHW epilogue kernel).
///
/// Keeps the im2col matrix in `ws` for [`conv2d_backward`].
pub(crate) fn conv2d_forward(
    x: &CudaTensor,
    w: &CudaTensor,
    b: Option<&CudaTensor>,
    g: ConvGeom,
    relu: bool,
    ws: &mut ConvWorkspace,
) -> Result<CudaTensor> {
    let oc = w.dim(0);
    let g = Geom::new("conv2d", g)?;
    let (np, kk) = (g.np(), g.kk());
    let dev = x.device().clone();
    let mut col = take(&mut ws.col, &dev, &[kk, np])?;
    let mut tmp = take(&mut ws.tmp, &dev, &[oc, np])?;
    let mut y = CudaTensor::uninit(&dev, &[g.n as usize, oc, g.oh as usize, g.ow as usize])?;
    im2col_buf(&dev, x.buf(), &g, col.buf_mut()?)?;
    // y'[oc, np] = w[oc, kk] · col[kk, np]
    gemm_buf(
        &dev,
        oc,
        np,
        kk,
        w.buf(),
        Transpose::No,
        kk,
        col.buf(),
        Transpose::No,
        np,
        tmp.buf_mut()?,
        false,
    )?;
    let (n32, oc32, p32) = (g.n, oc as u32, g.p() as u32);
    let (has_bias, relu32) = (b.is_some() as i32, relu as i32);
    // Without a bias the kernel never reads its bias argument; pass tmp.
    let bias_raw = b.map_or(tmp.buf().raw(), |b| b.buf().raw());
    launch!(dev, "conv.cu", "rows_to_nchw_f32", cfg_1d(y.numel());
        tmp.buf().raw(), bias_raw, y.buf_mut()?.raw_mut(), &n32, &oc32, &p32, &has_bias, &relu32);
    ws.col = Some(col);
    ws.tmp = Some(tmp);
    Ok(y)
}

/// Gradients of a convolution on the GPU.
#[derive(Debug)]
pub(crate) struct Conv2dGrads {
    /// Gradient with respect to the input, when requested.
    pub(crate) dx: Option<CudaTensor>,
    /// Gradient with respect to the weight, `[OC, C, KH, KW]`.
    pub(crate) dw: CudaTensor,
    /// Gradient with respect to the bias, `[OC]`.
    pub(crate) db: CudaTensor,
}

/// Backward from the im2col matrix the forward left in `ws`; `relu_out`
/// (the forward's output when it fused a ReLU) masks `dy` while it is
/// gathered.
pub(crate) fn conv2d_backward(
    dy: &CudaTensor,
    w: &CudaTensor,
    relu_out: Option<&CudaTensor>,
    g: ConvGeom,
    ws: &mut ConvWorkspace,
    need_dx: bool,
) -> Result<Conv2dGrads> {
    let col = ws.col.take().ok_or(Error::InvalidArgument {
        op: "conv2d_backward",
        why: "no forward pass cached on the GPU (one backward per forward)".into(),
    })?;
    let s = [g.n, g.c, g.h, g.w];
    let wsh = w.shape().to_vec();
    let oc = wsh[0];
    let g = Geom::new("conv2d_backward", g)?;
    let dev = dy.device().clone();
    let (np, kk) = (g.np(), g.kk());
    let mut dy2 = take(&mut ws.tmp, &dev, &[oc, np])?;
    let mut dw = CudaTensor::uninit(&dev, &wsh)?;
    let mut db = CudaTensor::uninit(&dev, &[oc])?;
    let (n32, oc32, p32) = (g.n, oc as u32, g.p() as u32);
    let has_mask = relu_out.is_some() as i32;
    let mask_raw = relu_out.map_or(dy.buf().raw(), |y| y.buf().raw());
    launch!(dev, "conv.cu", "nchw_to_rows_f32", cfg_1d(dy.numel());
        dy.buf().raw(), mask_raw, dy2.buf_mut()?.raw_mut(), &n32, &oc32, &p32, &has_mask);
    let np32 = u32_of("conv2d_backward", np)?;
    if np == 0 {
        db.zero()?;
    }
    launch!(dev, "reduce.cu", "row_sums_f32", if np == 0 { None } else { cfg_rows(oc) };
        dy2.buf().raw(), db.buf_mut()?.raw_mut(), &np32);
    // dw[oc, kk] = dy'[oc, np] · col[kk, np]ᵀ
    gemm_buf(
        &dev,
        oc,
        kk,
        np,
        dy2.buf(),
        Transpose::No,
        np,
        col.buf(),
        Transpose::Yes,
        np,
        dw.buf_mut()?,
        false,
    )?;
    let mut dx = None;
    if need_dx {
        // dcol[kk, np] = w[oc, kk]ᵀ · dy'[oc, np]; reuse the col buffer.
        let mut dcol = col;
        gemm_buf(
            &dev,
            kk,
            np,
            oc,
            w.buf(),
            Transpose::Yes,
            kk,
            dy2.buf(),
            Transpose::No,
            np,
            dcol.buf_mut()?,
            false,
        )?;
        let mut dxt = CudaTensor::uninit(&dev, &s)?;
        col2im_buf(&dev, dcol.buf(), &g, dxt.buf_mut()?)?;
        dx = Some(dxt);
        ws.col = Some(dcol);
    } else {
        ws.col = Some(col);
    }
    ws.tmp = Some(dy2);
    Ok(Conv2dGrads { dx, dw, db })
}
