//! 2-D convolution (stride 1, square zero padding) by im2col + GEMM.
//!
//! Shapes: input `x` is `[N, C, H, W]`, weight `w` is `[OC, C, KH, KW]`,
//! output `y` is `[N, OC, OH, OW]` with `OH = H + 2·pad − KH + 1`; `P = OH·OW`.
//!
//! The column matrix is `col = im2col(x)`, `[C·KH·KW, N·P]` (row = kernel tap
//! `(c, kh, kw)`, column = output pixel `(n, oy, ox)`), so every copy in
//! im2col/col2im is a contiguous run of `OW` pixels. Forward:
//! `y' = w·col` is `[OC, N·P]`, and `y[n, oc, :] = y'[oc, n·P..(n+1)·P] + b`
//! (ReLU fused). Backward: `dy'` is `dy` gathered the same way (with the ReLU
//! mask fused), `dw = dy'·colᵀ`, `db = Σ dy'`, `dcol = wᵀ·dy'`,
//! `dx = col2im(dcol)`.
//!
//! The GPU path computes exactly that. The CPU path computes the same
//! products one image at a time: `col_n = im2col(x[n])` is `[C·KH·KW, P]`
//! (it stays in cache), `y[n] = w·col_n` is already NCHW, and the backward
//! sums `dw = Σ_n dy_n·col_nᵀ` over fixed parts of the batch (see
//! `cpu::conv2d_backward`).

mod cpu;
mod sparse;

pub use cpu::scratch_pool_bytes;

use super::dev;
use crate::cuda::kernels::conv as cuda;
use crate::{Error, Result, Tensor};

/// What one convolution keeps between its forward and its backward.
///
/// On the host that is the forward's input `x` (the tensor itself, shared
/// with the caller, not a copy): the CPU path convolves one image at a time
/// (`col_n = im2col(x[n])` stays in cache) and the backward rebuilds each
/// `col_n` from `x`, so no im2col matrix of the whole batch is ever stored.
/// Its per-part scratch buffers go back to a process-wide pool after each
/// call (see [`scratch_pool_bytes`]), so a network of many conv layers
/// trained one block at a time (NoProp-DT: ten blocks of three convs) does
/// not hold scratch per layer. On a GPU the workspace keeps the im2col
/// matrix and its device buffers between steps (no allocation in steady
/// state).
#[derive(Clone, Debug, Default)]
pub struct ConvWorkspace {
    /// The host input of the last forward (shared, not copied).
    x: Option<Tensor>,
    /// The input shape and padding of the last forward.
    x_shape: Vec<usize>,
    pad: usize,
    /// Whether a forward is waiting for its backward.
    cached: bool,
    /// Whether that forward ran on a GPU (its buffers are in `cuda`).
    forward_on_gpu: bool,
    /// The device buffers, used when the operands are on a GPU.
    cuda: cuda::ConvWorkspace,
}

impl ConvWorkspace {
    /// An empty workspace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of host memory the workspace keeps alive: the last forward's
    /// input until its backward.
    pub fn size_in_bytes(&self) -> usize {
        self.x.as_ref().map_or(0, |t| t.size_in_bytes())
    }
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

/// The geometry of one convolution, checked by the API and shared by
/// both backends: input `[n, c, h, w]`, kernel `kh × kw`, zero padding
/// `pad`, output `oh × ow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    pub(crate) n: usize,
    pub(crate) c: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) pad: usize,
    pub(crate) oh: usize,
    pub(crate) ow: usize,
}

impl ConvGeom {
    /// The geometry for input shape `s`: fails unless `s` is 4-D and the
    /// padded image is at least as large as the kernel.
    pub(crate) fn new(
        op: &'static str,
        s: &[usize],
        kh: usize,
        kw: usize,
        pad: usize,
    ) -> Result<Self> {
        if s.len() != 4 {
            return Err(Error::InvalidShape {
                op,
                shape: s.to_vec(),
                why: "expected a 4-D NCHW shape",
            });
        }
        let (oh, ow) = out_hw(op, s, kh, kw, pad)?;
        Ok(ConvGeom {
            n: s[0],
            c: s[1],
            h: s[2],
            w: s[3],
            kh,
            kw,
            pad,
            oh,
            ow,
        })
    }
    /// Output pixels per image, `OH·OW`.
    pub(crate) fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// Rows of the column matrix, `C·KH·KW`.
    pub(crate) fn kk(&self) -> usize {
        self.c * self.kh * self.kw
    }
    /// Columns of the column matrix, `N·OH·OW`.
    pub(crate) fn np(&self) -> usize {
        self.n * self.p()
    }
}

/// `im2col`: `[N, C, H, W]` to `[C·KH·KW, N·OH·OW]` with zero padding `pad`.
pub fn im2col(x: &Tensor, kh: usize, kw: usize, pad: usize) -> Result<Tensor> {
    let g = ConvGeom::new("im2col", x.shape(), kh, kw, pad)?;
    match dev::all("im2col", [x])? {
        None => cpu::im2col(x, g),
        Some([x]) => Ok(dev::wrap(cuda::im2col(x, g)?)),
    }
}

/// `col2im`: the adjoint of [`im2col`] — sums `[C·KH·KW, N·OH·OW]` back into `[N, C, H, W]`.
pub fn col2im(col: &Tensor, x_shape: &[usize], kh: usize, kw: usize, pad: usize) -> Result<Tensor> {
    let g = ConvGeom::new("col2im", x_shape, kh, kw, pad)?;
    col.expect_shape("col2im", &[g.kk(), g.np()])?;
    match dev::all("col2im", [col])? {
        None => cpu::col2im(col, x_shape, g),
        Some([col]) => Ok(dev::wrap(cuda::col2im(col, x_shape, g)?)),
    }
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
    let op = "conv2d";
    super::rank(op, x, 4)?;
    super::rank(op, w, 4)?;
    let (s, wsh) = (x.shape(), w.shape());
    let (oc, kh, kw) = (wsh[0], wsh[2], wsh[3]);
    if wsh[1] != s[1] {
        return Err(Error::ShapeMismatch {
            op: "conv2d (input channels)",
            expected: vec![wsh[1]],
            got: vec![s[1]],
        });
    }
    w.expect_dtype(op, x.dtype())?;
    if let Some(b) = b {
        b.expect_shape("conv2d bias", &[oc])?;
        b.expect_dtype("conv2d bias", x.dtype())?;
    }
    let g = ConvGeom::new(op, s, kh, kw, pad)?;
    let on_gpu = match b {
        Some(b) => dev::same_kind(op, x, &[w, b])?,
        None => dev::same_kind(op, x, &[w])?,
    };
    let y = if on_gpu {
        let bc = match b {
            Some(b) => Some(dev::get(op, b)?),
            None => None,
        };
        let (xc, wc) = (dev::get(op, x)?, dev::get(op, w)?);
        dev::wrap(cuda::conv2d_forward(xc, wc, bc, g, relu, &mut ws.cuda)?)
    } else {
        cpu::conv2d_forward(x, w, b, g, relu, &mut ws.x)?
    };
    ws.x_shape = s.to_vec();
    ws.pad = pad;
    ws.cached = true;
    ws.forward_on_gpu = on_gpu;
    Ok(y)
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
/// `[y > 0]` is applied while `dy` is gathered (no extra pass). Uses the
/// im2col matrix that [`conv2d_forward`] left in `ws`; one backward per
/// forward. Every check happens before the workspace is consumed, so a
/// rejected call leaves it intact.
pub fn conv2d_backward(
    dy: &Tensor,
    w: &Tensor,
    relu_out: Option<&Tensor>,
    ws: &mut ConvWorkspace,
    need_dx: bool,
) -> Result<Conv2dGrads> {
    let op = "conv2d_backward";
    if !ws.cached {
        return Err(Error::InvalidArgument {
            op,
            why: "no forward pass cached in the workspace (one backward per forward)".into(),
        });
    }
    super::rank(op, w, 4)?;
    let wsh = w.shape();
    // The weight must match the input the forward cached: other input
    // channels would index the column matrix out of bounds.
    if wsh[1] != ws.x_shape[1] {
        return Err(Error::ShapeMismatch {
            op: "conv2d_backward (input channels)",
            expected: vec![ws.x_shape[1]],
            got: vec![wsh[1]],
        });
    }
    let g = ConvGeom::new(op, &ws.x_shape, wsh[2], wsh[3], ws.pad)?;
    dy.expect_shape(op, &[g.n, wsh[0], g.oh, g.ow])?;
    w.expect_dtype(op, dy.dtype())?;
    if let Some(y) = relu_out {
        y.expect_shape("conv2d_backward (relu output)", dy.shape())?;
        y.expect_dtype(op, dy.dtype())?;
    }
    let on_gpu = match relu_out {
        Some(y) => dev::same_kind(op, dy, &[w, y])?,
        None => dev::same_kind(op, dy, &[w])?,
    };
    if on_gpu != ws.forward_on_gpu {
        let place = |gpu: bool| if gpu { "a GPU" } else { "the host" };
        return Err(Error::DeviceMismatch {
            op,
            why: format!(
                "the forward ran on {} but the backward's operands are on {}",
                place(ws.forward_on_gpu),
                place(on_gpu)
            ),
        });
    }
    ws.cached = false;
    if on_gpu {
        let y = match relu_out {
            Some(y) => Some(dev::get(op, y)?),
            None => None,
        };
        let gr = cuda::conv2d_backward(
            dev::get(op, dy)?,
            dev::get(op, w)?,
            y,
            g,
            &mut ws.cuda,
            need_dx,
        )?;
        return Ok(Conv2dGrads {
            dx: gr.dx.map(dev::wrap),
            dw: dev::wrap(gr.dw),
            db: dev::wrap(gr.db),
        });
    }
    cpu::conv2d_backward(dy, w, relu_out, g, &mut ws.x, need_dx)
}
