//! Fully connected layer.

use noprop_tensor::ops::{self, Transpose};
use noprop_tensor::Tensor;

use crate::init::{bias_uniform, kaiming_uniform_a_sqrt5};
use crate::{Error, Mode, Module, ParamMut, Result};

/// `y = x·Wᵀ + b` for `x: [B, in]`, `W: [out, in]`, `b: [out]`; optionally
/// with a fused ReLU epilogue `y = max(x·Wᵀ + b, 0)`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// Weight `[out, in]`.
    pub weight: Tensor,
    /// Bias `[out]`.
    pub bias: Tensor,
    grad_w: Tensor,
    grad_b: Tensor,
    relu: bool,
    x: Option<Tensor>,
    y: Option<Tensor>,
}

impl Linear {
    /// A layer with PyTorch's default initialisation, drawn from `(seed, name)`.
    pub fn new(inp: usize, out: usize, seed: u64, name: &str) -> Self {
        let weight = kaiming_uniform_a_sqrt5(&[out, inp], inp, seed, &format!("{name}.weight"));
        let bias = bias_uniform(&[out], inp, seed, &format!("{name}.bias"));
        Linear {
            grad_w: weight.zeros_like(),
            grad_b: bias.zeros_like(),
            weight,
            bias,
            relu: false,
            x: None,
            y: None,
        }
    }

    /// `y = x·Wᵀ + b`, then ReLU when built [`Linear::with_relu`]: the
    /// evaluation-mode forward through `&self` (nothing is kept for a
    /// backward pass, so several threads may apply one layer at once).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let mut y = ops::matmul(x, Transpose::No, &self.weight, Transpose::Yes)?;
        if self.relu {
            ops::bias_relu_rows(&mut y, &self.bias)?;
        } else {
            ops::add_bias_rows(&mut y, &self.bias)?;
        }
        Ok(y)
    }

    /// Keep `x` and its output `y` (computed by [`Linear::apply`], e.g. in
    /// parts on several threads) for the next [`Module::backward`], exactly
    /// as a training-mode [`Module::forward`] of `x` would have.
    pub fn keep_for_backward(&mut self, x: Tensor, y: &Tensor) {
        self.y = self.relu.then(|| y.clone());
        self.x = Some(x);
    }

    /// Fuse a ReLU after the affine map (one pass over the output).
    pub fn with_relu(mut self) -> Self {
        self.relu = true;
        self
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.dim(1)
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.dim(0)
    }
}

impl Module for Linear {
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if x.rank() != 2 || x.dim(1) != self.in_features() {
            return Err(Error::BadInput {
                layer: "Linear",
                expected: format!("[B, {}]", self.in_features()),
                got: x.shape().to_vec(),
            });
        }
        let y = self.apply(x)?;
        if mode == Mode::Train {
            self.x = Some(x.clone());
            self.y = if self.relu { Some(y.clone()) } else { None };
        }
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let x = self
            .x
            .take()
            .ok_or(Error::NoForwardCache { layer: "Linear" })?;
        let masked;
        let dy = match self.y.take() {
            Some(y) => {
                masked = ops::relu_backward(dy, &y)?;
                &masked
            }
            None => dy,
        };
        // dW += dyᵀ·x ; db += Σ_rows dy ; dx = dy·W
        ops::gemm_into(
            &mut self.grad_w,
            true,
            dy,
            Transpose::Yes,
            &x,
            Transpose::No,
        )?;
        ops::add_assign(&mut self.grad_b, &ops::sum_rows(dy)?)?;
        Ok(ops::matmul(dy, Transpose::No, &self.weight, Transpose::No)?)
    }

    fn params(&mut self) -> Vec<ParamMut<'_>> {
        vec![
            ParamMut {
                name: "weight".into(),
                value: &mut self.weight,
                grad: &mut self.grad_w,
            },
            ParamMut {
                name: "bias".into(),
                value: &mut self.bias,
                grad: &mut self.grad_b,
            },
        ]
    }
}
