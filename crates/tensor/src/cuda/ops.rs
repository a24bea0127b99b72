//! One CUDA function per CPU op of [`crate::ops`]: same names, same
//! semantics, [`CudaTensor`] in place of [`Tensor`](crate::Tensor).
//!
//! Each function checks shapes on the host exactly as its CPU twin does,
//! then launches the kernel of the same op family (`src/cuda/kernels/*.cu`)
//! on the stream of its first operand's device handle. GEMM goes through
//! cuBLAS (row-major operands are passed as their column-major transposes).
//! Parity with the CPU is tested in `tests/cuda_parity.rs`.

use cudarc::cublas::{sys::cublasOperation_t, Gemm, GemmConfig};
use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::tensor::{fits_u32, numel_of};
use super::{cfg_1d, cfg_rows, CudaDevice, CudaTensor, DeviceBuffer};
use crate::ops::{AdamHyper, Transpose};
use crate::philox::{blocks_for, RngStream};
use crate::{Error, Result};

/// Launch kernel `$name` of file `$file` on `$dev`'s stream with `$cfg`
/// (an `Option<LaunchConfig>`: `None` launches nothing) and the arguments.
macro_rules! launch {
    ($dev:expr, $file:literal, $name:literal, $cfg:expr; $($arg:expr),* $(,)?) => {{
        if let Some(cfg) = $cfg {
            let f = $dev.func($file, $name)?;
            let stream = $dev.stream().clone();
            let mut b = stream.launch_builder(&f);
            $( b.arg($arg); )*
            // SAFETY: the arguments match the kernel's parameter list in
            // `$file` one for one (pointers, then 32-bit sizes, floats and
            // flags as declared), and the sizes passed bound every index the
            // kernel touches inside the buffers, which the caller checked.
            unsafe { b.launch(cfg) }.map_err(|e| Error::CudaLaunch {
                kernel: $name,
                why: e.to_string(),
            })?;
            if super::sync_launches() {
                stream.synchronize().map_err(|e| Error::CudaLaunch {
                    kernel: $name,
                    why: format!("failed while running ({}=1 synchronises after every launch): {e}", super::SYNC_ENV),
                })?;
            }
        }
    }};
}

fn u32_of(op: &'static str, n: usize) -> Result<u32> {
    fits_u32(op, &[n], n)
}

fn same_device(op: &'static str, a: &CudaTensor, b: &CudaTensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(Error::InvalidArgument {
            op,
            why: format!(
                "operands on different GPUs (cuda:{} and cuda:{})",
                a.device().ordinal(),
                b.device().ordinal()
            ),
        });
    }
    Ok(())
}

fn same_shape(op: &'static str, a: &CudaTensor, b: &CudaTensor) -> Result<()> {
    if a.shape() != b.shape() {
        return Err(Error::ShapeMismatch {
            op,
            expected: a.shape().to_vec(),
            got: b.shape().to_vec(),
        });
    }
    same_device(op, a, b)
}

fn rank(op: &'static str, t: &CudaTensor, r: usize) -> Result<()> {
    if t.rank() != r {
        return Err(Error::InvalidShape {
            op,
            shape: t.shape().to_vec(),
            why: match r {
                1 => "expected a 1-D tensor",
                2 => "expected a 2-D tensor",
                4 => "expected a 4-D NCHW tensor",
                _ => "wrong rank",
            },
        });
    }
    Ok(())
}

fn upload_u32(dev: &CudaDevice, op: &'static str, v: &[usize]) -> Result<DeviceBuffer<u32>> {
    let host: Vec<u32> = v.iter().map(|&i| u32_of(op, i)).collect::<Result<_>>()?;
    let mut buf = dev.alloc::<u32>(host.len())?;
    if !host.is_empty() {
        let stream = dev.stream().clone();
        let mut view = buf.view_mut()?;
        stream
            .memcpy_htod(&host, &mut view)
            .map_err(|e| Error::Cuda {
                op: "cuMemcpyHtoDAsync",
                why: e.to_string(),
            })?;
    }
    Ok(buf)
}

// ---------------------------------------------------------------- elementwise

fn binary(op: &'static str, a: &CudaTensor, b: &CudaTensor, code: i32) -> Result<CudaTensor> {
    same_shape(op, a, b)?;
    let dev = a.device().clone();
    let mut out = CudaTensor::uninit(&dev, a.shape())?;
    let n = a.n32();
    launch!(dev, "elementwise.cu", "binary_f32", cfg_1d(a.numel());
        a.buf().raw(), b.buf().raw(), out.buf_mut()?.raw_mut(), &n, &code);
    Ok(out)
}

/// `a + b` (same shape).
pub fn add(a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
    binary("add", a, b, 0)
}

/// `a − b` (same shape).
pub fn sub(a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
    binary("sub", a, b, 1)
}

/// `a ⊙ b` (same shape).
pub fn mul(a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
    binary("mul", a, b, 2)
}

/// `y += x`.
pub fn add_assign(y: &mut CudaTensor, x: &CudaTensor) -> Result<()> {
    axpy(y, 1.0, x)
}

/// `y ⊙= x`.
pub fn mul_assign(y: &mut CudaTensor, x: &CudaTensor) -> Result<()> {
    same_shape("mul_assign", y, x)?;
    let dev = y.device().clone();
    let n = y.n32();
    launch!(dev, "elementwise.cu", "mul_assign_f32", cfg_1d(y.numel());
        y.buf_mut()?.raw_mut(), x.buf().raw(), &n);
    Ok(())
}

/// `y += α·x` (BLAS axpy).
pub fn axpy(y: &mut CudaTensor, alpha: f64, x: &CudaTensor) -> Result<()> {
    same_shape("axpy", y, x)?;
    let dev = y.device().clone();
    let (n, a) = (y.n32(), alpha as f32);
    launch!(dev, "elementwise.cu", "axpy_f32", cfg_1d(y.numel());
        y.buf_mut()?.raw_mut(), x.buf().raw(), &n, &a);
    Ok(())
}

/// `α·a + β·b` as a new tensor.
pub fn add_scaled(alpha: f64, a: &CudaTensor, beta: f64, b: &CudaTensor) -> Result<CudaTensor> {
    same_shape("add_scaled", a, b)?;
    let dev = a.device().clone();
    let mut out = CudaTensor::uninit(&dev, a.shape())?;
    let (n, al, be) = (a.n32(), alpha as f32, beta as f32);
    launch!(dev, "elementwise.cu", "add_scaled_f32", cfg_1d(a.numel());
        a.buf().raw(), b.buf().raw(), out.buf_mut()?.raw_mut(), &n, &al, &be);
    Ok(out)
}

/// `α·x` as a new tensor.
pub fn scale(x: &CudaTensor, alpha: f64) -> Result<CudaTensor> {
    let mut y = x.try_clone()?;
    scale_in_place(&mut y, alpha)?;
    Ok(y)
}

/// `x ← α·x`.
pub fn scale_in_place(x: &mut CudaTensor, alpha: f64) -> Result<()> {
    let dev = x.device().clone();
    let (n, a) = (x.n32(), alpha as f32);
    launch!(dev, "elementwise.cu", "scale_f32", cfg_1d(x.numel());
        x.buf_mut()?.raw_mut(), &n, &a);
    Ok(())
}

/// Set every element to `value` (CPU: `Tensor::fill`).
pub fn fill(x: &mut CudaTensor, value: f64) -> Result<()> {
    let dev = x.device().clone();
    let (n, v) = (x.n32(), value as f32);
    launch!(dev, "elementwise.cu", "fill_f32", cfg_1d(x.numel());
        x.buf_mut()?.raw_mut(), &n, &v);
    Ok(())
}

/// `max(x, 0)` as a new tensor.
pub fn relu(x: &CudaTensor) -> Result<CudaTensor> {
    let mut y = x.try_clone()?;
    relu_in_place(&mut y)?;
    Ok(y)
}

/// `x ← max(x, 0)`.
pub fn relu_in_place(x: &mut CudaTensor) -> Result<()> {
    let dev = x.device().clone();
    let n = x.n32();
    launch!(dev, "elementwise.cu", "relu_f32", cfg_1d(x.numel());
        x.buf_mut()?.raw_mut(), &n);
    Ok(())
}

/// ReLU backward from its output: `dx = dy · [y > 0]`.
pub fn relu_backward(dy: &CudaTensor, y: &CudaTensor) -> Result<CudaTensor> {
    let mut dx = dy.try_clone()?;
    relu_backward_in_place(&mut dx, y)?;
    Ok(dx)
}

/// `dy ← dy · [y > 0]` in place.
pub fn relu_backward_in_place(dy: &mut CudaTensor, y: &CudaTensor) -> Result<()> {
    same_shape("relu_backward", dy, y)?;
    let dev = dy.device().clone();
    let n = dy.n32();
    launch!(dev, "elementwise.cu", "relu_backward_f32", cfg_1d(dy.numel());
        dy.buf_mut()?.raw_mut(), y.buf().raw(), &n);
    Ok(())
}

fn bias_rows(op: &'static str, y: &mut CudaTensor, bias: &CudaTensor, relu: bool) -> Result<()> {
    rank(op, y, 2)?;
    let (rows, cols) = (y.dim(0), y.dim(1));
    bias.expect_shape(op, &[cols])?;
    same_device(op, y, bias)?;
    let dev = y.device().clone();
    let (r, c, flag) = (rows as u32, cols as u32, relu as i32);
    launch!(dev, "gemm.cu", "bias_rows_f32", cfg_1d(rows * cols);
        y.buf_mut()?.raw_mut(), bias.buf().raw(), &r, &c, &flag);
    Ok(())
}

/// `y[i, :] += bias` for a `[M, N]` matrix (the Linear epilogue).
pub fn add_bias_rows(y: &mut CudaTensor, bias: &CudaTensor) -> Result<()> {
    bias_rows("add_bias_rows", y, bias, false)
}

/// Fused epilogue `y[i, :] = max(y[i, :] + bias, 0)`.
pub fn bias_relu_rows(y: &mut CudaTensor, bias: &CudaTensor) -> Result<()> {
    bias_rows("bias_relu_rows", y, bias, true)
}

// ----------------------------------------------------------------------- gemm

fn dims(t: &CudaTensor, tr: Transpose, op: &'static str) -> Result<(usize, usize)> {
    rank(op, t, 2)?;
    let (r, c) = (t.dim(0), t.dim(1));
    Ok(match tr {
        Transpose::No => (r, c),
        Transpose::Yes => (c, r),
    })
}

/// `c[m×n] (+)= op(A)·op(B)` on raw buffers; `a_cols`/`b_cols` are the
/// stored (row-major) column counts of A and B.
#[allow(clippy::too_many_arguments)]
fn gemm_buf(
    dev: &CudaDevice,
    m: usize,
    n: usize,
    k: usize,
    a: &DeviceBuffer<f32>,
    ta: Transpose,
    a_cols: usize,
    b: &DeviceBuffer<f32>,
    tb: Transpose,
    b_cols: usize,
    c: &mut DeviceBuffer<f32>,
    accumulate: bool,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            let stream = dev.stream().clone();
            let mut v = c.view_mut()?;
            stream.memset_zeros(&mut v).map_err(|e| Error::Cuda {
                op: "cuMemsetD8Async",
                why: e.to_string(),
            })?;
        }
        return Ok(());
    }
    for v in [m, n, k, a_cols, b_cols] {
        if v > i32::MAX as usize {
            return Err(Error::InvalidArgument {
                op: "gemm",
                why: format!("dimension {v} exceeds cuBLAS's 32-bit sizes"),
            });
        }
    }
    if let Some(blas) = dev.blas()? {
        // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, and a
        // row-major matrix read column-major is its transpose: pass B then
        // A, each with the transpose flag it has, leading dimension = its
        // stored column count.
        let op = |t: Transpose| match t {
            Transpose::No => cublasOperation_t::CUBLAS_OP_N,
            Transpose::Yes => cublasOperation_t::CUBLAS_OP_T,
        };
        let cfg = GemmConfig {
            transa: op(tb),
            transb: op(ta),
            m: n as i32,
            n: m as i32,
            k: k as i32,
            alpha: 1.0f32,
            lda: b_cols.max(1) as i32,
            ldb: a_cols.max(1) as i32,
            beta: if accumulate { 1.0f32 } else { 0.0 },
            ldc: n as i32,
        };
        let (av, bv) = (a.view()?, b.view()?);
        let mut cv = c.view_mut()?;
        // SAFETY: op(A) is m×k inside `a` (checked by the caller against its
        // shape), op(B) is k×n inside `b`, C is m×n; the leading dimensions
        // are the stored row lengths.
        unsafe { blas.gemm(cfg, &bv, &av, &mut cv) }.map_err(|e| Error::Cuda {
            op: "cublasSgemm",
            why: format!("{e:?}"),
        })?;
        return Ok(());
    }
    let (a_rs, a_cs) = match ta {
        Transpose::No => (a_cols, 1),
        Transpose::Yes => (1, a_cols),
    };
    let (b_rs, b_cs) = match tb {
        Transpose::No => (b_cols, 1),
        Transpose::Yes => (1, b_cols),
    };
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(16) as u32, m.div_ceil(16) as u32, 1),
        block_dim: (16, 16, 1),
        shared_mem_bytes: 0,
    };
    let (m32, n32, k32) = (m as u32, n as u32, k as u32);
    let (ars, acs, brs, bcs) = (a_rs as u32, a_cs as u32, b_rs as u32, b_cs as u32);
    let acc = accumulate as i32;
    launch!(dev, "gemm.cu", "gemm_tiled_f32", Some(cfg);
        a.raw(), b.raw(), c.raw_mut(), &m32, &n32, &k32, &ars, &acs, &brs, &bcs, &acc);
    Ok(())
}

/// `op(A)·op(B)` as a new tensor, where `op` transposes or not.
pub fn matmul(a: &CudaTensor, ta: Transpose, b: &CudaTensor, tb: Transpose) -> Result<CudaTensor> {
    let (m, _) = dims(a, ta, "matmul")?;
    let (_, n) = dims(b, tb, "matmul")?;
    let mut c = CudaTensor::uninit(a.device(), &[m, n])?;
    gemm_into(&mut c, false, a, ta, b, tb)?;
    Ok(c)
}

/// `C = op(A)·op(B)`, or `C += op(A)·op(B)` when `accumulate`; `C` must
/// already have shape `[m, n]`. Runs in cuBLAS.
pub fn gemm_into(
    c: &mut CudaTensor,
    accumulate: bool,
    a: &CudaTensor,
    ta: Transpose,
    b: &CudaTensor,
    tb: Transpose,
) -> Result<()> {
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
    same_device("gemm", c, a)?;
    same_device("gemm", c, b)?;
    let dev = c.device().clone();
    let (a_cols, b_cols) = (a.dim(1), b.dim(1));
    gemm_buf(
        &dev,
        m,
        n,
        k,
        a.buf(),
        ta,
        a_cols,
        b.buf(),
        tb,
        b_cols,
        c.buf_mut()?,
        accumulate,
    )
}

// ----------------------------------------------------------------------- conv

/// The CUDA twin of [`crate::ops::ConvWorkspace`]: the im2col matrix of the
/// last forward and the GEMM output, kept between calls (no allocation in
/// steady state).
#[derive(Clone, Debug, Default)]
pub struct ConvWorkspace {
    col: Option<CudaTensor>,
    tmp: Option<CudaTensor>,
    x_shape: Vec<usize>,
    pad: usize,
    cached: bool,
}

impl ConvWorkspace {
    /// An empty workspace.
    pub fn new() -> Self {
        Self::default()
    }
}

fn take(slot: &mut Option<CudaTensor>, dev: &CudaDevice, shape: &[usize]) -> Result<CudaTensor> {
    match slot.take() {
        Some(t) if t.numel() == numel_of(shape) && t.device() == dev => t.reshape(shape),
        _ => CudaTensor::uninit(dev, shape),
    }
}

/// Convolution geometry: `(n, c, h, w, kh, kw, pad, oh, ow)` as u32 kernel arguments.
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
    fn new(op: &'static str, s: &[usize], kh: usize, kw: usize, pad: usize) -> Result<Geom> {
        if s.len() != 4 {
            return Err(Error::InvalidShape {
                op,
                shape: s.to_vec(),
                why: "expected a 4-D NCHW shape",
            });
        }
        let (h, w) = (s[2] + 2 * pad, s[3] + 2 * pad);
        if h < kh || w < kw {
            return Err(Error::InvalidShape {
                op,
                shape: s.to_vec(),
                why: "the padded image is smaller than the kernel",
            });
        }
        let (oh, ow) = (h - kh + 1, w - kw + 1);
        let kk = s[1] * kh * kw;
        let np = s[0] * oh * ow;
        fits_u32(op, s, kk.saturating_mul(np))?;
        fits_u32(op, s, numel_of(s))?;
        let u = |v: usize| v as u32;
        Ok(Geom {
            n: u(s[0]),
            c: u(s[1]),
            h: u(s[2]),
            w: u(s[3]),
            kh: u(kh),
            kw: u(kw),
            pad: u(pad),
            oh: u(oh),
            ow: u(ow),
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

/// `im2col`: `[N, C, H, W]` to `[C·KH·KW, N·OH·OW]` with zero padding `pad`.
pub fn im2col(x: &CudaTensor, kh: usize, kw: usize, pad: usize) -> Result<CudaTensor> {
    rank("im2col", x, 4)?;
    let g = Geom::new("im2col", x.shape(), kh, kw, pad)?;
    let dev = x.device().clone();
    let mut col = CudaTensor::uninit(&dev, &[g.kk(), g.np()])?;
    im2col_buf(&dev, x.buf(), &g, col.buf_mut()?)?;
    Ok(col)
}

/// `col2im`: the adjoint of [`im2col`] — sums `[C·KH·KW, N·OH·OW]` back into `[N, C, H, W]`.
pub fn col2im(
    col: &CudaTensor,
    x_shape: &[usize],
    kh: usize,
    kw: usize,
    pad: usize,
) -> Result<CudaTensor> {
    let g = Geom::new("col2im", x_shape, kh, kw, pad)?;
    col.expect_shape("col2im", &[g.kk(), g.np()])?;
    let dev = col.device().clone();
    let mut dx = CudaTensor::uninit(&dev, x_shape)?;
    col2im_buf(&dev, col.buf(), &g, dx.buf_mut()?)?;
    Ok(dx)
}

/// Convolution forward: `y = conv(x, w) + b`, then ReLU when `relu`
/// (im2col, one cuBLAS GEMM, and a fused bias/ReLU/NCHW epilogue kernel).
///
/// Keeps the im2col matrix in `ws` for [`conv2d_backward`].
pub fn conv2d_forward(
    x: &CudaTensor,
    w: &CudaTensor,
    b: Option<&CudaTensor>,
    pad: usize,
    relu: bool,
    ws: &mut ConvWorkspace,
) -> Result<CudaTensor> {
    rank("conv2d", x, 4)?;
    rank("conv2d", w, 4)?;
    let s = x.shape().to_vec();
    let wsh = w.shape().to_vec();
    let (oc, kh, kw) = (wsh[0], wsh[2], wsh[3]);
    if wsh[1] != s[1] {
        return Err(Error::ShapeMismatch {
            op: "conv2d (input channels)",
            expected: vec![wsh[1]],
            got: vec![s[1]],
        });
    }
    if let Some(b) = b {
        b.expect_shape("conv2d bias", &[oc])?;
        same_device("conv2d", x, b)?;
    }
    same_device("conv2d", x, w)?;
    let g = Geom::new("conv2d", &s, kh, kw, pad)?;
    let (np, kk) = (g.np(), g.kk());
    let dev = x.device().clone();
    let mut col = take(&mut ws.col, &dev, &[kk, np])?;
    let mut tmp = take(&mut ws.tmp, &dev, &[oc, np])?;
    let mut y = CudaTensor::uninit(&dev, &[s[0], oc, g.oh as usize, g.ow as usize])?;
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
    ws.x_shape = s;
    ws.pad = pad;
    ws.cached = true;
    Ok(y)
}

/// Gradients of a convolution on the GPU.
#[derive(Debug)]
pub struct Conv2dGrads {
    /// Gradient with respect to the input, when requested.
    pub dx: Option<CudaTensor>,
    /// Gradient with respect to the weight, `[OC, C, KH, KW]`.
    pub dw: CudaTensor,
    /// Gradient with respect to the bias, `[OC]`.
    pub db: CudaTensor,
}

/// Convolution backward from `dy`, the gradient of the output; `relu_out`
/// (the forward's output when it fused a ReLU) masks `dy` while it is
/// gathered. Uses the im2col matrix that [`conv2d_forward`] left in `ws`.
pub fn conv2d_backward(
    dy: &CudaTensor,
    w: &CudaTensor,
    relu_out: Option<&CudaTensor>,
    ws: &mut ConvWorkspace,
    need_dx: bool,
) -> Result<Conv2dGrads> {
    // The weight must match the input the forward pass cached: a weight
    // with other input channels would index `col` out of bounds in the
    // kernels (the CPU path refuses it too). Checked before the workspace
    // is consumed, so a rejected call leaves it intact.
    rank("conv2d_backward", w, 4)?;
    if ws.cached && ws.x_shape.len() == 4 && w.shape()[1] != ws.x_shape[1] {
        return Err(Error::ShapeMismatch {
            op: "conv2d_backward (input channels)",
            expected: vec![ws.x_shape[1]],
            got: vec![w.shape()[1]],
        });
    }
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
    let wsh = w.shape().to_vec();
    let (oc, kh, kw) = (wsh[0], wsh[2], wsh[3]);
    let g = Geom::new("conv2d_backward", &s, kh, kw, ws.pad)?;
    dy.expect_shape("conv2d_backward", &[s[0], oc, g.oh as usize, g.ow as usize])?;
    same_device("conv2d_backward", dy, w)?;
    let dev = dy.device().clone();
    let (np, kk) = (g.np(), g.kk());
    let mut dy2 = take(&mut ws.tmp, &dev, &[oc, np])?;
    let mut dw = CudaTensor::uninit(&dev, &wsh)?;
    let mut db = CudaTensor::uninit(&dev, &[oc])?;
    let (n32, oc32, p32) = (g.n, oc as u32, g.p() as u32);
    let has_mask = relu_out.is_some() as i32;
    if let Some(y) = relu_out {
        y.expect_shape("conv2d_backward (relu output)", dy.shape())?;
    }
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

// ----------------------------------------------------------------------- pool

/// Max-pool `[N, C, H, W]` to `[N, C, H/2, W/2]` (floor), with the argmax
/// `iy·W + ix` of every output inside its plane, kept on the device.
pub fn max_pool2d_forward(x: &CudaTensor) -> Result<(CudaTensor, DeviceBuffer<u32>)> {
    rank("max_pool2d", x, 4)?;
    let s = x.shape().to_vec();
    let (h, w) = (s[2], s[3]);
    let dev = x.device().clone();
    let mut y = CudaTensor::uninit(&dev, &[s[0], s[1], h / 2, w / 2])?;
    let mut idx = dev.alloc::<u32>(y.numel())?;
    let (planes, h32, w32) = ((s[0] * s[1]) as u32, h as u32, w as u32);
    launch!(dev, "pool.cu", "max_pool2_fwd_f32", cfg_1d(y.numel());
        x.buf().raw(), y.buf_mut()?.raw_mut(), idx.raw_mut(), &planes, &h32, &w32);
    Ok((y, idx))
}

/// Backward of [`max_pool2d_forward`]: route each `dy` to its argmax.
pub fn max_pool2d_backward(
    dy: &CudaTensor,
    idx: &DeviceBuffer<u32>,
    x_shape: &[usize],
) -> Result<CudaTensor> {
    rank("max_pool2d_backward", dy, 4)?;
    if x_shape.len() != 4 {
        return Err(Error::InvalidShape {
            op: "max_pool2d_backward",
            shape: x_shape.to_vec(),
            why: "expected a 4-D NCHW input shape",
        });
    }
    let (h, w) = (x_shape[2], x_shape[3]);
    dy.expect_shape(
        "max_pool2d_backward",
        &[x_shape[0], x_shape[1], h / 2, w / 2],
    )?;
    if idx.len() != dy.numel() {
        return Err(Error::LengthMismatch {
            op: "max_pool2d_backward (indices)",
            shape: dy.shape().to_vec(),
            needed: dy.numel(),
            len: idx.len(),
        });
    }
    let dev = dy.device().clone();
    let mut dx = CudaTensor::zeros(&dev, x_shape)?;
    let (planes, h32, w32) = ((x_shape[0] * x_shape[1]) as u32, h as u32, w as u32);
    launch!(dev, "pool.cu", "max_pool2_bwd_f32", cfg_1d(dy.numel());
        dy.buf().raw(), idx.raw(), dx.buf_mut()?.raw_mut(), &planes, &h32, &w32);
    Ok(dx)
}

// ------------------------------------------------------------------ batchnorm

/// What the training forward keeps for the backward pass (GPU twin of
/// [`crate::ops::BatchNormSaved`]).
#[derive(Clone, Debug)]
pub struct BatchNormSaved {
    /// The normalised input `x̂`, same shape as `x`.
    pub x_hat: CudaTensor,
    /// `1/√(σ² + ε)` per channel.
    pub inv_std: CudaTensor,
    /// Batch mean per channel.
    pub mean: CudaTensor,
    /// Batch (biased) variance per channel.
    pub var: CudaTensor,
}

fn bn_geometry(op: &'static str, x: &CudaTensor) -> Result<(usize, usize, usize)> {
    match x.rank() {
        2 => Ok((x.dim(0), x.dim(1), 1)),
        4 => Ok((x.dim(0), x.dim(1), x.dim(2) * x.dim(3))),
        _ => Err(Error::InvalidShape {
            op,
            shape: x.shape().to_vec(),
            why: "batch norm needs [N, C] or [N, C, H, W]",
        }),
    }
}

/// Training-mode forward: `y = γ·(x − μ)/√(σ² + ε) + β` with batch
/// statistics per channel; updates the running statistics with `momentum`
/// (PyTorch's rule, unbiased variance).
pub fn batch_norm_train(
    x: &CudaTensor,
    gamma: &CudaTensor,
    beta: &CudaTensor,
    running_mean: &mut CudaTensor,
    running_var: &mut CudaTensor,
    momentum: f64,
    eps: f64,
) -> Result<(CudaTensor, BatchNormSaved)> {
    let (n, c, p) = bn_geometry("batch_norm_train", x)?;
    for t in [gamma, beta, &*running_mean, &*running_var] {
        t.expect_shape("batch_norm_train (per-channel tensor)", &[c])?;
        same_device("batch_norm_train", x, t)?;
    }
    let m = n * p;
    if m == 0 {
        return Err(Error::InvalidShape {
            op: "batch_norm_train",
            shape: x.shape().to_vec(),
            why: "needs at least one value per channel",
        });
    }
    let dev = x.device().clone();
    let mut y = CudaTensor::uninit(&dev, x.shape())?;
    let mut x_hat = CudaTensor::uninit(&dev, x.shape())?;
    let mut mean = CudaTensor::uninit(&dev, &[c])?;
    let mut var = CudaTensor::uninit(&dev, &[c])?;
    let mut inv_std = CudaTensor::uninit(&dev, &[c])?;
    let unbias = if m > 1 {
        (m as f64 / (m as f64 - 1.0)) as f32
    } else {
        1.0
    };
    let (n32, c32, p32) = (n as u32, c as u32, p as u32);
    let (mom, eps32) = (momentum as f32, eps as f32);
    launch!(dev, "batchnorm.cu", "bn_stats_f32", cfg_rows(c);
        x.buf().raw(), mean.buf_mut()?.raw_mut(), var.buf_mut()?.raw_mut(),
        inv_std.buf_mut()?.raw_mut(), running_mean.buf_mut()?.raw_mut(),
        running_var.buf_mut()?.raw_mut(), &n32, &c32, &p32, &mom, &eps32, &unbias);
    let total = x.n32();
    launch!(dev, "batchnorm.cu", "bn_apply_train_f32", cfg_1d(x.numel());
        x.buf().raw(), gamma.buf().raw(), beta.buf().raw(), mean.buf().raw(),
        inv_std.buf().raw(), y.buf_mut()?.raw_mut(), x_hat.buf_mut()?.raw_mut(),
        &total, &c32, &p32);
    Ok((
        y,
        BatchNormSaved {
            x_hat,
            inv_std,
            mean,
            var,
        },
    ))
}

/// Evaluation-mode forward with running statistics:
/// `y = (x − r_μ)·γ/√(r_σ² + ε) + β`.
pub fn batch_norm_eval(
    x: &CudaTensor,
    gamma: &CudaTensor,
    beta: &CudaTensor,
    running_mean: &CudaTensor,
    running_var: &CudaTensor,
    eps: f64,
) -> Result<CudaTensor> {
    let (_, c, p) = bn_geometry("batch_norm_eval", x)?;
    for t in [gamma, beta, running_mean, running_var] {
        t.expect_shape("batch_norm_eval (per-channel tensor)", &[c])?;
        same_device("batch_norm_eval", x, t)?;
    }
    let dev = x.device().clone();
    let mut y = CudaTensor::uninit(&dev, x.shape())?;
    let (total, c32, p32, eps32) = (x.n32(), c as u32, p as u32, eps as f32);
    launch!(dev, "batchnorm.cu", "bn_eval_f32", cfg_1d(x.numel());
        x.buf().raw(), gamma.buf().raw(), beta.buf().raw(), running_mean.buf().raw(),
        running_var.buf().raw(), y.buf_mut()?.raw_mut(), &total, &c32, &p32, &eps32);
    Ok(y)
}

/// Backward of [`batch_norm_train`]: returns `(dx, dγ, dβ)` with
/// `dβ = Σ dy`, `dγ = Σ dy·x̂`, `dx = (γ/√(σ²+ε))·(dy − dβ/M − x̂·dγ/M)`.
pub fn batch_norm_backward(
    dy: &CudaTensor,
    gamma: &CudaTensor,
    saved: &BatchNormSaved,
) -> Result<(CudaTensor, CudaTensor, CudaTensor)> {
    let (n, c, p) = bn_geometry("batch_norm_backward", dy)?;
    dy.expect_shape("batch_norm_backward", saved.x_hat.shape())?;
    gamma.expect_shape("batch_norm_backward", &[c])?;
    same_device("batch_norm_backward", dy, gamma)?;
    let dev = dy.device().clone();
    let mut dx = CudaTensor::uninit(&dev, dy.shape())?;
    let mut dgamma = CudaTensor::zeros(&dev, &[c])?;
    let mut dbeta = CudaTensor::zeros(&dev, &[c])?;
    let (n32, c32, p32) = (n as u32, c as u32, p as u32);
    launch!(dev, "batchnorm.cu", "bn_bwd_sums_f32", cfg_rows(c);
        dy.buf().raw(), saved.x_hat.buf().raw(), dgamma.buf_mut()?.raw_mut(),
        dbeta.buf_mut()?.raw_mut(), &n32, &c32, &p32);
    let inv_m = (1.0 / (n * p).max(1) as f64) as f32;
    let total = dy.n32();
    launch!(dev, "batchnorm.cu", "bn_bwd_dx_f32", cfg_1d(dy.numel());
        dy.buf().raw(), saved.x_hat.buf().raw(), gamma.buf().raw(), saved.inv_std.buf().raw(),
        dgamma.buf().raw(), dbeta.buf().raw(), dx.buf_mut()?.raw_mut(), &total, &c32, &p32,
        &inv_m);
    Ok((dx, dgamma, dbeta))
}

// -------------------------------------------------------------------- softmax

fn softmax_like(op: &'static str, x: &CudaTensor, log: bool) -> Result<CudaTensor> {
    rank(op, x, 2)?;
    let (rows, cols) = (x.dim(0), x.dim(1));
    let dev = x.device().clone();
    let mut y = CudaTensor::uninit(&dev, x.shape())?;
    let c32 = cols as u32;
    let cfg = if cols == 0 { None } else { cfg_rows(rows) };
    if log {
        launch!(dev, "softmax.cu", "log_softmax_rows_f32", cfg;
            x.buf().raw(), y.buf_mut()?.raw_mut(), &c32);
    } else {
        launch!(dev, "softmax.cu", "softmax_rows_f32", cfg;
            x.buf().raw(), y.buf_mut()?.raw_mut(), &c32);
    }
    Ok(y)
}

/// `softmax(x)_ij = exp(x_ij − max_j x_ij) / Σ_k exp(x_ik − max_j x_ij)` per row.
pub fn softmax(x: &CudaTensor) -> Result<CudaTensor> {
    softmax_like("softmax", x, false)
}

/// `log_softmax(x)_ij = x_ij − max − ln Σ_k exp(x_ik − max)` per row.
pub fn log_softmax(x: &CudaTensor) -> Result<CudaTensor> {
    softmax_like("log_softmax", x, true)
}

/// Backward of softmax given its output `p` and upstream `dp`:
/// `dx_ij = p_ij·(dp_ij − Σ_k dp_ik·p_ik)`.
pub fn softmax_backward(p: &CudaTensor, dp: &CudaTensor) -> Result<CudaTensor> {
    rank("softmax_backward", p, 2)?;
    same_shape("softmax_backward", p, dp)?;
    let (rows, cols) = (p.dim(0), p.dim(1));
    let dev = p.device().clone();
    let mut dx = CudaTensor::uninit(&dev, p.shape())?;
    let c32 = cols as u32;
    launch!(dev, "softmax.cu", "softmax_backward_rows_f32",
        if cols == 0 { None } else { cfg_rows(rows) };
        p.buf().raw(), dp.buf().raw(), dx.buf_mut()?.raw_mut(), &c32);
    Ok(dx)
}

/// Fused softmax cross-entropy over a batch:
/// `L = (1/B)·Σ_i −log softmax(x_i)[y_i]`; returns `(L, ∂L/∂x)` with
/// `∂L/∂x_ij = (softmax(x_i)_j − [j = y_i]) / B`. The per-row losses are
/// added on the host in row order (this synchronises the stream).
pub fn softmax_cross_entropy(logits: &CudaTensor, labels: &[usize]) -> Result<(f64, CudaTensor)> {
    rank("softmax_cross_entropy", logits, 2)?;
    let (b, m) = (logits.dim(0), logits.dim(1));
    if labels.len() != b {
        return Err(Error::LengthMismatch {
            op: "softmax_cross_entropy (labels)",
            shape: logits.shape().to_vec(),
            needed: b,
            len: labels.len(),
        });
    }
    if let Some((row, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= m) {
        return Err(Error::LabelOutOfRange {
            op: "softmax_cross_entropy",
            row,
            label,
            classes: m,
        });
    }
    let dev = logits.device().clone();
    let mut grad = CudaTensor::uninit(&dev, logits.shape())?;
    if b == 0 {
        return Ok((0.0, grad));
    }
    let lab = upload_u32(&dev, "softmax_cross_entropy", labels)?;
    let mut losses = CudaTensor::uninit(&dev, &[b])?;
    let inv_b = 1.0f32 / b as f32;
    let c32 = m as u32;
    launch!(dev, "softmax.cu", "softmax_xent_rows_f32", cfg_rows(b);
        logits.buf().raw(), lab.raw(), grad.buf_mut()?.raw_mut(), losses.buf_mut()?.raw_mut(),
        &c32, &inv_b);
    let mut total = 0f32;
    for l in losses.to_vec()? {
        total += l;
    }
    Ok(((total * inv_b) as f64, grad))
}

// --------------------------------------------------------------------- reduce

/// Blocks of the first reduction stage (at most; fixed for a given size).
const REDUCE_BLOCKS: usize = 1024;

fn reduce(op: &'static str, a: &CudaTensor, b: Option<&CudaTensor>, mode: i32) -> Result<f64> {
    let n = a.numel();
    if n == 0 {
        return Ok(0.0);
    }
    let dev = a.device().clone();
    let blocks = n.div_ceil(super::BLOCK as usize).min(REDUCE_BLOCKS);
    let mut partials = CudaTensor::uninit(&dev, &[blocks])?;
    let cfg = LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (super::BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    let n32 = a.n32();
    let b_raw = b.map_or(a.buf().raw(), |b| b.buf().raw());
    launch!(dev, "reduce.cu", "reduce_partials_f32", Some(cfg);
        a.buf().raw(), b_raw, partials.buf_mut()?.raw_mut(), &n32, &mode);
    let _ = op;
    let mut s = 0f32;
    for v in partials.to_vec()? {
        s += v;
    }
    Ok(s as f64)
}

/// `Σ x` (accumulated in f32), returned as `f64`; synchronises the stream.
pub fn sum(x: &CudaTensor) -> Result<f64> {
    reduce("sum", x, None, 0)
}

/// `Σ x / numel` (0 for an empty tensor).
pub fn mean(x: &CudaTensor) -> Result<f64> {
    let n = x.numel();
    Ok(if n == 0 { 0.0 } else { sum(x)? / n as f64 })
}

/// `Σ x²`.
pub fn sum_sq(x: &CudaTensor) -> Result<f64> {
    reduce("sum_sq", x, None, 1)
}

/// `Σ a ⊙ b`.
pub fn dot(a: &CudaTensor, b: &CudaTensor) -> Result<f64> {
    same_shape("dot", a, b)?;
    reduce("dot", a, Some(b), 2)
}

/// Column sums of a `[M, N]` matrix: `[N]` (the bias gradient of a Linear
/// layer), rows added in order as on the CPU.
pub fn sum_rows(x: &CudaTensor) -> Result<CudaTensor> {
    rank("sum_rows", x, 2)?;
    let (m, n) = (x.dim(0), x.dim(1));
    let dev = x.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[n])?;
    let (m32, n32) = (m as u32, n as u32);
    launch!(dev, "reduce.cu", "col_sums_f32", cfg_1d(n);
        x.buf().raw(), out.buf_mut()?.raw_mut(), &m32, &n32);
    Ok(out)
}

// ---------------------------------------------------------------------- optim

/// One fused Adam/AdamW step (PyTorch's formulation) at step `t ≥ 1`, one
/// kernel per parameter tensor:
/// `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
/// `θ ← θ − (lr/(1−β₁ᵗ))·m / (√v/√(1−β₂ᵗ) + ε)`.
pub fn adam_update(
    param: &mut CudaTensor,
    grad: &CudaTensor,
    m: &mut CudaTensor,
    v: &mut CudaTensor,
    h: &AdamHyper,
    t: u64,
) -> Result<()> {
    same_shape("adam_update", param, grad)?;
    same_shape("adam_update", param, m)?;
    same_shape("adam_update", param, v)?;
    if t == 0 {
        return Err(Error::InvalidArgument {
            op: "adam_update",
            why: "the step number starts at 1".into(),
        });
    }
    let bc1 = 1.0 - h.beta1.powf(t as f64);
    let bc2 = 1.0 - h.beta2.powf(t as f64);
    let c = |x: f64| x as f32;
    let (b1, b2, eps) = (c(h.beta1), c(h.beta2), c(h.eps));
    let step = c(h.lr / bc1);
    let sqrt_bc2 = c(bc2.sqrt());
    let wd = c(h.weight_decay);
    let decay = c(1.0 - h.lr * h.weight_decay);
    let decoupled = h.decoupled as i32;
    let dev = param.device().clone();
    let n = param.n32();
    launch!(dev, "optim.cu", "adam_f32", cfg_1d(param.numel());
        param.buf_mut()?.raw_mut(), grad.buf().raw(), m.buf_mut()?.raw_mut(),
        v.buf_mut()?.raw_mut(), &n, &b1, &b2, &eps, &step, &sqrt_bc2, &wd, &decay, &decoupled);
    Ok(())
}

/// One fused SGD step with momentum μ and coupled weight decay λ:
/// `g ← g + λθ`, `b ← μb + g`, `θ ← θ − lr·b`.
pub fn sgd_momentum_update(
    param: &mut CudaTensor,
    grad: &CudaTensor,
    buf: &mut CudaTensor,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
) -> Result<()> {
    same_shape("sgd_momentum_update", param, grad)?;
    same_shape("sgd_momentum_update", param, buf)?;
    let dev = param.device().clone();
    let (n, lr, mu, wd) = (param.n32(), lr as f32, momentum as f32, weight_decay as f32);
    launch!(dev, "optim.cu", "sgd_momentum_f32", cfg_1d(param.numel());
        param.buf_mut()?.raw_mut(), grad.buf().raw(), buf.buf_mut()?.raw_mut(), &n, &lr, &mu, &wd);
    Ok(())
}

// --------------------------------------------------------------------- random

/// One thread per Philox block.
fn philox_cfg(n: usize) -> Option<LaunchConfig> {
    cfg_1d(n.div_ceil(4))
}

/// A tensor of standard normals drawn from `rng` (which advances): the same
/// numbers as [`crate::ops::randn`] at the same stream position.
pub fn randn(dev: &CudaDevice, shape: &[usize], rng: &mut RngStream) -> Result<CudaTensor> {
    let mut t = CudaTensor::uninit(dev, shape)?;
    let (n, seed, stream, offset) = (t.n32(), rng.seed, rng.stream, rng.offset());
    launch!(dev, "random.cu", "philox_normal_f32", philox_cfg(t.numel());
        t.buf_mut()?.raw_mut(), &n, &seed, &stream, &offset);
    rng.skip(blocks_for(t.numel()));
    Ok(t)
}

/// A tensor of uniforms in `(0, 1)` drawn from `rng` (which advances): the
/// same numbers as [`crate::ops::rand_uniform`].
pub fn rand_uniform(dev: &CudaDevice, shape: &[usize], rng: &mut RngStream) -> Result<CudaTensor> {
    let mut t = CudaTensor::uninit(dev, shape)?;
    let (n, seed, stream, offset) = (t.n32(), rng.seed, rng.stream, rng.offset());
    launch!(dev, "random.cu", "philox_uniform_f32", philox_cfg(t.numel());
        t.buf_mut()?.raw_mut(), &n, &seed, &stream, &offset);
    rng.skip(blocks_for(t.numel()));
    Ok(t)
}

fn check_p(op: &'static str, p: f64) -> Result<()> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::InvalidArgument {
            op,
            why: format!("drop probability {p} is not in [0, 1)"),
        });
    }
    Ok(())
}

fn dropout_launch(
    dev: &CudaDevice,
    x: Option<&CudaTensor>,
    y: Option<&mut CudaTensor>,
    mask: &mut CudaTensor,
    p: f64,
    rng: &mut RngStream,
) -> Result<()> {
    let thr = crate::ops::random::keep_threshold(p);
    let keep = (1.0 / (1.0 - p)) as f32;
    let (n, seed, stream, offset) = (mask.n32(), rng.seed, rng.stream, rng.offset());
    let numel = mask.numel();
    let has_x = x.is_some() as i32;
    match (x, y) {
        (Some(x), Some(y)) => {
            launch!(dev, "random.cu", "dropout_f32", philox_cfg(numel);
                x.buf().raw(), y.buf_mut()?.raw_mut(), mask.buf_mut()?.raw_mut(), &n, &seed,
                &stream, &offset, &thr, &keep, &has_x);
        }
        _ => {
            // No input: the kernel never touches x or y; it only needs valid pointers.
            let mut dummy = dev.alloc::<f32>(0)?;
            let dummy_x = dev.alloc::<f32>(0)?;
            launch!(dev, "random.cu", "dropout_f32", philox_cfg(numel);
                dummy_x.raw(), dummy.raw_mut(), mask.buf_mut()?.raw_mut(), &n, &seed, &stream,
                &offset, &thr, &keep, &has_x);
        }
    }
    rng.skip(blocks_for(numel));
    Ok(())
}

/// An inverted-dropout mask: each element is `1/(1−p)` with probability
/// `1 − p` and `0` otherwise — the same mask as [`crate::ops::dropout_mask`].
pub fn dropout_mask(
    dev: &CudaDevice,
    shape: &[usize],
    p: f64,
    rng: &mut RngStream,
) -> Result<CudaTensor> {
    check_p("dropout_mask", p)?;
    let mut mask = CudaTensor::uninit(dev, shape)?;
    dropout_launch(dev, None, None, &mut mask, p, rng)?;
    Ok(mask)
}

/// Fused inverted dropout: returns `(x ⊙ mask, mask)` in one kernel.
pub fn dropout_forward(
    x: &CudaTensor,
    p: f64,
    rng: &mut RngStream,
) -> Result<(CudaTensor, CudaTensor)> {
    check_p("dropout_forward", p)?;
    let dev = x.device().clone();
    let mut mask = CudaTensor::uninit(&dev, x.shape())?;
    let mut y = CudaTensor::uninit(&dev, x.shape())?;
    dropout_launch(&dev, Some(x), Some(&mut y), &mut mask, p, rng)?;
    Ok((y, mask))
}

// ---------------------------------------------------------------------- shape

fn copy_cols(
    dev: &CudaDevice,
    src: &DeviceBuffer<f32>,
    dst: &mut DeviceBuffer<f32>,
    rows: usize,
    (src_cols, src_off): (usize, usize),
    (dst_cols, dst_off): (usize, usize),
    width: usize,
) -> Result<()> {
    let (r, sc, dc, so, d_o, w) = (
        rows as u32,
        src_cols as u32,
        dst_cols as u32,
        src_off as u32,
        dst_off as u32,
        width as u32,
    );
    launch!(dev, "shape.cu", "copy_cols_f32", cfg_1d(rows * width);
        src.raw(), dst.raw_mut(), &r, &sc, &dc, &so, &d_o, &w);
    Ok(())
}

/// Concatenate `[B, n_i]` matrices along columns into `[B, Σ n_i]`.
pub fn concat_cols(parts: &[&CudaTensor]) -> Result<CudaTensor> {
    let first = parts.first().ok_or(Error::InvalidArgument {
        op: "concat_cols",
        why: "nothing to concatenate".into(),
    })?;
    rank("concat_cols", first, 2)?;
    let b = first.dim(0);
    for p in parts {
        rank("concat_cols", p, 2)?;
        if p.dim(0) != b {
            return Err(Error::ShapeMismatch {
                op: "concat_cols (rows)",
                expected: vec![b],
                got: vec![p.dim(0)],
            });
        }
        same_device("concat_cols", first, p)?;
    }
    let total: usize = parts.iter().map(|p| p.dim(1)).sum();
    let dev = first.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[b, total])?;
    let mut o = 0;
    for p in parts {
        let w = p.dim(1);
        copy_cols(&dev, p.buf(), out.buf_mut()?, b, (w, 0), (total, o), w)?;
        o += w;
    }
    Ok(out)
}

/// Split a `[B, Σ n_i]` matrix into `[B, n_i]` parts (the adjoint of [`concat_cols`]).
pub fn split_cols(x: &CudaTensor, widths: &[usize]) -> Result<Vec<CudaTensor>> {
    rank("split_cols", x, 2)?;
    let (b, total) = (x.dim(0), x.dim(1));
    if widths.iter().sum::<usize>() != total {
        return Err(Error::InvalidArgument {
            op: "split_cols",
            why: format!("widths {widths:?} do not add up to {total}"),
        });
    }
    let dev = x.device().clone();
    let mut outs = Vec::with_capacity(widths.len());
    let mut o = 0;
    for &w in widths {
        let mut t = CudaTensor::uninit(&dev, &[b, w])?;
        copy_cols(&dev, x.buf(), t.buf_mut()?, b, (total, o), (w, 0), w)?;
        o += w;
        outs.push(t);
    }
    Ok(outs)
}

/// `out[i, :] = table[idx[i], :]` for a `[m, d]` table.
pub fn gather_rows(table: &CudaTensor, idx: &[usize]) -> Result<CudaTensor> {
    rank("gather_rows", table, 2)?;
    let (m, d) = (table.dim(0), table.dim(1));
    if let Some((row, &label)) = idx.iter().enumerate().find(|(_, &i)| i >= m) {
        return Err(Error::LabelOutOfRange {
            op: "gather_rows",
            row,
            label,
            classes: m,
        });
    }
    let dev = table.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[idx.len(), d])?;
    let ib = upload_u32(&dev, "gather_rows", idx)?;
    let (r, d32) = (idx.len() as u32, d as u32);
    launch!(dev, "shape.cu", "gather_rows_f32", cfg_1d(idx.len() * d);
        table.buf().raw(), ib.raw(), out.buf_mut()?.raw_mut(), &r, &d32);
    Ok(out)
}

/// The adjoint of [`gather_rows`]: `out[idx[i], :] += src[i, :]` into a fresh
/// `[m, d]` tensor, rows added in batch order (deterministic, no atomics).
pub fn scatter_add_rows(src: &CudaTensor, idx: &[usize], m: usize) -> Result<CudaTensor> {
    rank("scatter_add_rows", src, 2)?;
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
    let dev = src.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[m, d])?;
    let ib = upload_u32(&dev, "scatter_add_rows", idx)?;
    let (b32, m32, d32) = (idx.len() as u32, m as u32, d as u32);
    launch!(dev, "shape.cu", "scatter_add_rows_f32", cfg_1d(m * d);
        src.buf().raw(), ib.raw(), out.buf_mut()?.raw_mut(), &b32, &m32, &d32);
    Ok(out)
}

/// Transpose of a 2-D matrix.
pub fn transpose2d(x: &CudaTensor) -> Result<CudaTensor> {
    rank("transpose2d", x, 2)?;
    let (r, c) = (x.dim(0), x.dim(1));
    let dev = x.device().clone();
    let mut out = CudaTensor::uninit(&dev, &[c, r])?;
    let cfg = if r * c == 0 {
        None
    } else {
        Some(LaunchConfig {
            grid_dim: (c.div_ceil(32) as u32, r.div_ceil(32) as u32, 1),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        })
    };
    let (r32, c32) = (r as u32, c as u32);
    launch!(dev, "shape.cu", "transpose2d_f32", cfg;
        x.buf().raw(), out.buf_mut()?.raw_mut(), &r32, &c32);
    Ok(out)
}
