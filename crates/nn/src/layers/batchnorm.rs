//! Batch normalisation (1-D over `[N, C]`, 2-D over `[N, C, H, W]`).

use noprop_tensor::ops::{self, BatchNormSaved};
use noprop_tensor::{DType, Tensor};

use crate::{Error, Mode, Module, ParamMut, Result};

/// Batch norm with affine `γ, β`, momentum 0.1 and ε = 1e-5 (PyTorch's
/// defaults). Training uses batch statistics and updates the running ones;
/// evaluation uses the running statistics.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// Scale `γ` (init 1).
    pub gamma: Tensor,
    /// Shift `β` (init 0).
    pub beta: Tensor,
    /// Running mean (init 0).
    pub running_mean: Tensor,
    /// Running variance, unbiased (init 1).
    pub running_var: Tensor,
    grad_gamma: Tensor,
    grad_beta: Tensor,
    momentum: f64,
    eps: f64,
    saved: Option<BatchNormSaved>,
}

impl BatchNorm {
    /// Batch norm over `channels` features or channels.
    pub fn new(channels: usize) -> Self {
        let gamma = Tensor::full(&[channels], 1.0, DType::F32);
        BatchNorm {
            grad_gamma: gamma.zeros_like(),
            grad_beta: gamma.zeros_like(),
            beta: gamma.zeros_like(),
            running_mean: gamma.zeros_like(),
            running_var: gamma.clone(),
            gamma,
            momentum: 0.1,
            eps: 1e-5,
            saved: None,
        }
    }
}

impl Module for BatchNorm {
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let c = self.gamma.dim(0);
        if !(x.rank() == 2 || x.rank() == 4) || x.dim(1) != c {
            return Err(Error::BadInput {
                layer: "BatchNorm",
                expected: format!("[N, {c}] or [N, {c}, H, W]"),
                got: x.shape().to_vec(),
            });
        }
        match mode {
            Mode::Train => {
                let (y, saved) = ops::batch_norm_train(
                    x,
                    &self.gamma,
                    &self.beta,
                    &mut self.running_mean,
                    &mut self.running_var,
                    self.momentum,
                    self.eps,
                )?;
                self.saved = Some(saved);
                Ok(y)
            }
            Mode::Eval => Ok(ops::batch_norm_eval(
                x,
                &self.gamma,
                &self.beta,
                &self.running_mean,
                &self.running_var,
                self.eps,
            )?),
        }
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let saved = self
            .saved
            .take()
            .ok_or(Error::NoForwardCache { layer: "BatchNorm" })?;
        let (dx, dg, db) = ops::batch_norm_backward(dy, &self.gamma, &saved)?;
        ops::add_assign(&mut self.grad_gamma, &dg)?;
        ops::add_assign(&mut self.grad_beta, &db)?;
        Ok(dx)
    }

    fn params(&mut self) -> Vec<ParamMut<'_>> {
        vec![
            ParamMut {
                name: "weight".into(),
                value: &mut self.gamma,
                grad: &mut self.grad_gamma,
            },
            ParamMut {
                name: "bias".into(),
                value: &mut self.beta,
                grad: &mut self.grad_beta,
            },
        ]
    }

    fn buffers(&mut self) -> Vec<(String, &mut Tensor)> {
        vec![
            ("running_mean".into(), &mut self.running_mean),
            ("running_var".into(), &mut self.running_var),
        ]
    }
}
