//! 2-D convolution layer (3×3 in the paper's blocks), stride 1.

use noprop_tensor::ops::{self, ConvWorkspace};
use noprop_tensor::Tensor;

use crate::init::{bias_uniform, kaiming_uniform_a_sqrt5};
use crate::{Error, Mode, Module, ParamMut, Result};

/// `y = conv(x, W) + b` (stride 1, zero padding `pad`), optionally with a
/// fused ReLU. `x: [N, C, H, W]`, `W: [OC, C, K, K]`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// Weight `[OC, C, K, K]`.
    pub weight: Tensor,
    /// Bias `[OC]`.
    pub bias: Tensor,
    grad_w: Tensor,
    grad_b: Tensor,
    pad: usize,
    relu: bool,
    input_grad: bool,
    ws: ConvWorkspace,
    y: Option<Tensor>,
    cached: bool,
}

impl Conv2d {
    /// A `k×k` convolution with PyTorch's default initialisation from `(seed, name)`.
    pub fn new(cin: usize, cout: usize, k: usize, pad: usize, seed: u64, name: &str) -> Self {
        let fan_in = cin * k * k;
        let weight =
            kaiming_uniform_a_sqrt5(&[cout, cin, k, k], fan_in, seed, &format!("{name}.weight"));
        let bias = bias_uniform(&[cout], fan_in, seed, &format!("{name}.bias"));
        Conv2d {
            grad_w: weight.zeros_like(),
            grad_b: bias.zeros_like(),
            weight,
            bias,
            pad,
            relu: false,
            input_grad: true,
            ws: ConvWorkspace::new(),
            y: None,
            cached: false,
        }
    }

    /// Fuse a ReLU into the output permutation.
    pub fn with_relu(mut self) -> Self {
        self.relu = true;
        self
    }

    /// Skip the input gradient (for a first layer fed with data):
    /// `backward` then returns an empty tensor of shape `[0]`.
    pub fn without_input_grad(mut self) -> Self {
        self.input_grad = false;
        self
    }
}

impl Module for Conv2d {
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if x.rank() != 4 || x.dim(1) != self.weight.dim(1) {
            return Err(Error::BadInput {
                layer: "Conv2d",
                expected: format!("[N, {}, H, W]", self.weight.dim(1)),
                got: x.shape().to_vec(),
            });
        }
        // Evaluation keeps no buffers: a large evaluation batch must not pin
        // its im2col matrix in every layer after it returns.
        let mut eval_ws = ConvWorkspace::new();
        let ws = if mode == Mode::Train {
            &mut self.ws
        } else {
            &mut eval_ws
        };
        let y = ops::conv2d_forward(x, &self.weight, Some(&self.bias), self.pad, self.relu, ws)?;
        self.cached = mode == Mode::Train;
        self.y = if self.relu && self.cached {
            Some(y.clone())
        } else {
            None
        };
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        if !self.cached {
            return Err(Error::NoForwardCache { layer: "Conv2d" });
        }
        self.cached = false;
        let y = self.y.take();
        let g = ops::conv2d_backward(dy, &self.weight, y.as_ref(), &mut self.ws, self.input_grad)?;
        ops::add_assign(&mut self.grad_w, &g.dw)?;
        ops::add_assign(&mut self.grad_b, &g.db)?;
        Ok(g.dx.unwrap_or_else(|| Tensor::zeros(&[0], dy.dtype())))
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
