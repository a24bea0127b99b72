//! 2×2 max-pooling with stride 2 (floor rounding), with argmax indices.

mod cpu;

use super::dev;
use crate::cuda::kernels::pool as cuda;
use crate::{Error, Result, Tensor};

/// The argmax indices of a max-pool, kept where the pooled tensor lives
/// (the flat index `iy·W + ix` of each winner inside its `H×W` plane).
#[derive(Debug)]
pub struct PoolIndices(Indices);

#[derive(Debug)]
enum Indices {
    Host(Vec<u32>),
    Cuda(cuda::Indices),
}

impl PoolIndices {
    /// Host indices, one per output element.
    pub fn host(idx: Vec<u32>) -> Self {
        PoolIndices(Indices::Host(idx))
    }

    /// The host indices, or `None` when they live on a GPU.
    pub fn as_host(&self) -> Option<&[u32]> {
        match &self.0 {
            Indices::Host(v) => Some(v),
            Indices::Cuda(_) => None,
        }
    }
}

/// Fail unless `x` is `[N, C, H, W]` with `H·W` indexable in 32 bits.
fn check_input(x: &Tensor) -> Result<()> {
    super::rank("max_pool2d", x, 4)?;
    let s = x.shape();
    if s[2] * s[3] > u32::MAX as usize {
        return Err(Error::InvalidShape {
            op: "max_pool2d",
            shape: s.to_vec(),
            why: "plane too large for 32-bit indices",
        });
    }
    Ok(())
}

/// Fail unless `dy` is the pooled shape of `x_shape` with one index per element.
fn check_grad(dy: &Tensor, n_idx: Option<usize>, x_shape: &[usize]) -> Result<()> {
    let op = "max_pool2d_backward";
    super::rank(op, dy, 4)?;
    if x_shape.len() != 4 {
        return Err(Error::InvalidShape {
            op,
            shape: x_shape.to_vec(),
            why: "expected a 4-D NCHW input shape",
        });
    }
    let (h, w) = (x_shape[2], x_shape[3]);
    dy.expect_shape(op, &[x_shape[0], x_shape[1], h / 2, w / 2])?;
    if let Some(len) = n_idx.filter(|&len| len != dy.numel()) {
        return Err(Error::LengthMismatch {
            op: "max_pool2d_backward (indices)",
            shape: dy.shape().to_vec(),
            needed: dy.numel(),
            len,
        });
    }
    Ok(())
}

/// Max-pool `[N, C, H, W]` to `[N, C, H/2, W/2]` (floor) on the input's
/// device (on a GPU the indices stay there).
///
/// Ties go to the first element in row-major window order; a NaN in the
/// window wins (it propagates).
pub fn max_pool2d(x: &Tensor) -> Result<(Tensor, PoolIndices)> {
    check_input(x)?;
    match dev::all("max_pool2d", [x])? {
        None => {
            let (y, idx) = cpu::max_pool2d_forward(x)?;
            Ok((y, PoolIndices::host(idx)))
        }
        Some([t]) => {
            let (y, idx) = cuda::max_pool2d_forward(t)?;
            Ok((dev::wrap(y), PoolIndices(Indices::Cuda(idx))))
        }
    }
}

/// Backward of [`max_pool2d`] on `dy`'s device: route each `dy` to its argmax.
pub fn max_pool2d_grad(dy: &Tensor, idx: &PoolIndices, x_shape: &[usize]) -> Result<Tensor> {
    match &idx.0 {
        Indices::Host(i) => max_pool2d_backward(dy, i, x_shape),
        Indices::Cuda(i) => {
            check_grad(dy, Some(cuda::len(i)), x_shape)?;
            let t = dev::get("max_pool2d_backward", dy)?;
            Ok(dev::wrap(cuda::max_pool2d_backward(t, i, x_shape)?))
        }
    }
}

/// Max-pool on the host (a GPU input is an [`Error::NotOnHost`]: use
/// [`max_pool2d`]). Returns the output and, per output element, the flat
/// index `iy·W + ix` of the winning input inside its `H×W` plane.
pub fn max_pool2d_forward(x: &Tensor) -> Result<(Tensor, Vec<u32>)> {
    check_input(x)?;
    x.expect_host("max_pool2d_forward")?;
    cpu::max_pool2d_forward(x)
}

/// Backward of [`max_pool2d_forward`]: route each `dy` to its argmax (on
/// the host; see [`max_pool2d_grad`]).
pub fn max_pool2d_backward(dy: &Tensor, idx: &[u32], x_shape: &[usize]) -> Result<Tensor> {
    check_grad(dy, Some(idx.len()), x_shape)?;
    dy.expect_host("max_pool2d_backward")?;
    cpu::max_pool2d_backward(dy, idx, x_shape)
}
