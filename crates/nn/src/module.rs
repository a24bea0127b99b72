//! The [`Module`] trait: explicit forward and backward, no global tape.

use noprop_tensor::{DType, Device, Tensor};

use crate::Result;

/// Whether a forward pass trains (batch statistics, dropout, caches for
/// backward) or evaluates (running statistics, no dropout, no caches).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training: caches what `backward` needs.
    Train,
    /// Evaluation.
    Eval,
}

/// A mutable view of one parameter and its gradient accumulator.
#[derive(Debug)]
pub struct ParamMut<'a> {
    /// Dotted name, e.g. `img.conv1.weight`.
    pub name: String,
    /// The value.
    pub value: &'a mut Tensor,
    /// The gradient accumulator (same shape as `value`).
    pub grad: &'a mut Tensor,
}

/// A layer or network with an explicit backward pass.
///
/// `backward` must follow a `forward(.., Mode::Train)`; it *adds* the
/// parameter gradients into the accumulators exposed by [`Module::params`]
/// and returns the gradient with respect to the forward input. Gradients stay
/// inside a module: nothing global records operations, so a gradient can only
/// cross between modules where code passes it explicitly.
pub trait Module: Send {
    /// Forward pass.
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor>;
    /// Backward pass from `dy = ∂L/∂y`; returns `∂L/∂x`.
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor>;
    /// Parameters with their gradient accumulators, in a stable order.
    fn params(&mut self) -> Vec<ParamMut<'_>>;
    /// Non-trainable state saved in checkpoints (batch-norm running statistics).
    fn buffers(&mut self) -> Vec<(String, &mut Tensor)> {
        Vec::new()
    }
    /// Re-key every random stream inside (dropout masks) to a pure function of
    /// the layer's own `(seed, stream)` and `key` (e.g. the global step), so a
    /// step's randomness does not depend on what ran before it: resumable and
    /// order-independent. Parameter-free default: nothing to do.
    fn set_rng_key(&mut self, key: u64) {
        let _ = key;
    }
    /// Set every gradient accumulator to zero.
    fn zero_grad(&mut self) {
        for p in self.params() {
            p.grad.fill(0.0);
        }
    }
    /// Total number of trainable scalars.
    fn num_params(&mut self) -> usize {
        self.params().iter().map(|p| p.value.numel()).sum()
    }
    /// Move every parameter, gradient and buffer to `device` (forward caches
    /// are dropped at the next forward; inputs must then live there too).
    fn to_device(&mut self, device: &Device) -> Result<()> {
        for p in self.params() {
            *p.value = p.value.to_device(device)?;
            *p.grad = p.grad.to_device(device)?;
        }
        for (_, b) in self.buffers() {
            *b = b.to_device(device)?;
        }
        Ok(())
    }
    /// Convert every parameter, gradient and buffer to `dtype` (`F64` for
    /// finite-difference checks).
    fn to_dtype(&mut self, dtype: DType) {
        for p in self.params() {
            *p.value = p.value.to_dtype(dtype);
            *p.grad = p.grad.to_dtype(dtype);
        }
        for (_, b) in self.buffers() {
            *b = b.to_dtype(dtype);
        }
    }
}

/// Prefix every name in `params` with `prefix.`.
pub fn prefixed<'a>(prefix: &str, params: Vec<ParamMut<'a>>) -> Vec<ParamMut<'a>> {
    params
        .into_iter()
        .map(|mut p| {
            p.name = format!("{prefix}.{}", p.name);
            p
        })
        .collect()
}
