//! Losses, each returning the value and its gradient.

use noprop_tensor::{ops, Tensor};

use crate::{Error, Result};

/// Squared error summed over features and averaged over the batch:
/// `L = (1/B)·Σ_i ‖pred_i − target_i‖²`, `∂L/∂pred = (2/B)·(pred − target)`.
pub fn mse_sum_mean(pred: &Tensor, target: &Tensor) -> Result<(f64, Tensor)> {
    if pred.shape() != target.shape() || pred.rank() == 0 {
        return Err(Error::BadInput {
            layer: "mse_sum_mean",
            expected: format!("a batch with the target's shape {:?}", target.shape()),
            got: pred.shape().to_vec(),
        });
    }
    let b = pred.dim(0).max(1) as f64;
    let diff = ops::sub(pred, target)?;
    let loss = ops::sum_sq(&diff)? / b;
    let grad = ops::scale(&diff, 2.0 / b)?;
    Ok((loss, grad))
}

/// Mean cross-entropy of softmax(logits) against integer labels; the
/// gradient is `(softmax − onehot)/B` (fused, see `ops::softmax_cross_entropy`).
pub fn cross_entropy(logits: &Tensor, labels: &[usize]) -> Result<(f64, Tensor)> {
    Ok(ops::softmax_cross_entropy(logits, labels)?)
}
