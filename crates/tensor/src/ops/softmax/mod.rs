//! Row-wise softmax, log-softmax and the fused softmax cross-entropy, on
//! `[B, M]` matrices.

mod cpu;

use super::dev;
use crate::cuda::kernels::softmax as cuda;
use crate::{Error, Result, Tensor};

fn rows(op: &'static str, x: &Tensor) -> Result<(usize, usize)> {
    super::rank(op, x, 2)?;
    Ok((x.dim(0), x.dim(1)))
}

/// `softmax(x)_ij = exp(x_ij − max_j x_ij) / Σ_k exp(x_ik − max_j x_ij)` per row.
pub fn softmax(x: &Tensor) -> Result<Tensor> {
    rows("softmax", x)?;
    match dev::all("softmax", [x])? {
        None => cpu::softmax(x),
        Some([t]) => Ok(dev::wrap(cuda::softmax_like(t, false)?)),
    }
}

/// `log_softmax(x)_ij = x_ij − max − ln Σ_k exp(x_ik − max)` per row.
pub fn log_softmax(x: &Tensor) -> Result<Tensor> {
    rows("log_softmax", x)?;
    match dev::all("log_softmax", [x])? {
        None => cpu::log_softmax(x),
        Some([t]) => Ok(dev::wrap(cuda::softmax_like(t, true)?)),
    }
}

/// Backward of softmax given its output `p` and upstream `dp`:
/// `dx_ij = p_ij·(dp_ij − Σ_k dp_ik·p_ik)`.
pub fn softmax_backward(p: &Tensor, dp: &Tensor) -> Result<Tensor> {
    rows("softmax_backward", p)?;
    super::same_shape("softmax_backward", p, dp)?;
    match dev::all("softmax_backward", [p, dp])? {
        None => cpu::softmax_backward(p, dp),
        Some([p, dp]) => Ok(dev::wrap(cuda::softmax_backward(p, dp)?)),
    }
}

/// Fused softmax cross-entropy over a batch.
///
/// `L = (1/B)·Σ_i −log softmax(x_i)[y_i]`; returns `(L, ∂L/∂x)` with
/// `∂L/∂x_ij = (softmax(x_i)_j − [j = y_i]) / B`. The per-row losses are
/// added in row order (on a GPU, on the host: one synchronisation).
pub fn softmax_cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<(f64, Tensor)> {
    let (b, m) = rows("softmax_cross_entropy", logits)?;
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
    match dev::all("softmax_cross_entropy", [logits])? {
        None => cpu::softmax_cross_entropy(logits, labels),
        Some([t]) => {
            let (l, g) = cuda::softmax_cross_entropy(t, labels)?;
            Ok((l, dev::wrap(g)))
        }
    }
}
