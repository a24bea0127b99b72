//! The matched reference: the same MLP trained end to end by
//! back-propagation (Rumelhart, Hinton & Williams 1986) on the
//! cross-entropy of `softmax(h_L)`.
//!
//! `δ_L = (softmax(h_L) − y)/B`, `δ_k = (W_{k+1}ᵀ δ_{k+1}) ⊙ f'(a_k)`,
//! `∂L/∂W_k = δ_k h_{k−1}ᵀ` — the transport of `W_{k+1}ᵀ` and the backward
//! locking that every relative in this module avoids in its own way.

use noprop_nn::Mode;
use noprop_tensor::{ops, Tensor};

use super::Relative;
use crate::Result;

/// One AdamW step on the cross-entropy; returns `(loss, 1)`.
pub(crate) fn train_batch(m: &mut Relative, x: &Tensor, y: &[usize]) -> Result<(f64, usize)> {
    let logits = m.nets[0].forward(x, Mode::Train)?;
    let (ce, d) = ops::softmax_cross_entropy(&logits, y)?;
    m.nets[0].backward(&d)?;
    m.update(&[0])?;
    Ok((ce, 1))
}
