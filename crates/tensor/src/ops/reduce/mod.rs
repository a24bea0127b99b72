//! Reductions. Every sum runs in a fixed order (on the CPU per fixed-size
//! chunk, then the chunk partials in index order; on a GPU per block, then
//! the block partials on the host), independent of the thread count.

mod cpu;

use super::dev;
use crate::cuda::kernels::reduce as cuda;
use crate::{Result, Tensor};

/// `Σ x` (accumulated in the tensor's dtype), returned as `f64`.
pub fn sum(x: &Tensor) -> Result<f64> {
    match dev::all("sum", [x])? {
        None => cpu::sum(x),
        Some([t]) => cuda::sum(t),
    }
}

/// `Σ x / numel` (0 for an empty tensor).
pub fn mean(x: &Tensor) -> Result<f64> {
    let n = x.numel();
    Ok(if n == 0 { 0.0 } else { sum(x)? / n as f64 })
}

/// `Σ x²`.
pub fn sum_sq(x: &Tensor) -> Result<f64> {
    match dev::all("sum_sq", [x])? {
        None => cpu::sum_sq(x),
        Some([t]) => cuda::sum_sq(t),
    }
}

/// `Σ a ⊙ b`.
pub fn dot(a: &Tensor, b: &Tensor) -> Result<f64> {
    super::same_shape("dot", a, b)?;
    match dev::all("dot", [a, b])? {
        None => cpu::dot(a, b),
        Some([a, b]) => cuda::dot(a, b),
    }
}

/// Column sums of a `[M, N]` matrix: `[N]` (the bias gradient of a Linear
/// layer), rows added in order.
pub fn sum_rows(x: &Tensor) -> Result<Tensor> {
    super::rank("sum_rows", x, 2)?;
    match dev::all("sum_rows", [x])? {
        None => cpu::sum_rows(x),
        Some([t]) => Ok(dev::wrap(cuda::sum_rows(t)?)),
    }
}
