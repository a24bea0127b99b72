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

    /// Whether a ReLU follows the product ([`Linear::with_relu`]).
    pub fn has_relu(&self) -> bool {
        self.relu
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

/// An evaluation-only copy of a [`Linear`] for loops that apply the same
/// weights many times (the 1000 steps of CT/FM inference, the adjoint's
/// Euler steps): `y = x·Wᵀ + b` (then ReLU where the layer has it), with
/// the weight also kept transposed, `Wᵀ: [in, out]`.
///
/// Why the copy: on the CPU the `gemm` crate repacks a transposed right
/// operand (`W` as stored, `[out, in]`) at every call, but reads an
/// `[in, out]` one in place. Wide layers (`out` a multiple of
/// [`FrozenLinear::WIDE`]) applied to more than [`FrozenLinear::MIN_ROWS`]
/// rows use `Wᵀ`; the rest use `W` as stored, as [`Linear::apply`] does.
///
/// The numbers agree with [`Linear::apply`] to rounding (a test bounds
/// it). Where both layouts reach the crate's blocked kernels, each output's
/// sum over `in` runs in the same order and the numbers are identical
/// (measured on the CT/FM step shapes, docs/PERFORMANCE.md); for tiny
/// products the crate picks dot-product kernels whose order depends on
/// the layout, which is why those keep `W`.
#[derive(Clone, Debug)]
pub struct FrozenLinear {
    /// `W`, `[out, in]`.
    weight: Tensor,
    /// `Wᵀ`, `[in, out]`.
    weight_t: Tensor,
    bias: Tensor,
    relu: bool,
}

impl FrozenLinear {
    /// Output widths (multiples of) that use the transposed copy.
    pub const WIDE: usize = 64;
    /// Rows at or below which a product uses `W` as stored.
    pub const MIN_ROWS: usize = 16;

    /// A frozen layer of weight `W: [out, in]` and bias `b: [out]`, with a
    /// ReLU after when `relu` (e.g. one block of a wider layer's weight).
    pub fn from_parts(weight: Tensor, bias: Tensor, relu: bool) -> Result<Self> {
        if weight.rank() != 2 {
            return Err(Error::BadInput {
                layer: "FrozenLinear",
                expected: "a weight [out, in]".into(),
                got: weight.shape().to_vec(),
            });
        }
        if bias.shape() != [weight.dim(0)] {
            return Err(Error::BadInput {
                layer: "FrozenLinear",
                expected: format!("a bias [{}] (the weight's rows)", weight.dim(0)),
                got: bias.shape().to_vec(),
            });
        }
        Ok(FrozenLinear {
            weight_t: ops::transpose2d(&weight)?,
            weight,
            bias,
            relu,
        })
    }

    /// `y = x·Wᵀ + b`, then ReLU where the layer had it.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (w, tw) = self.operand(x);
        let mut y = ops::matmul(x, Transpose::No, w, tw)?;
        if self.relu {
            ops::bias_relu_rows(&mut y, &self.bias)?;
        } else {
            ops::add_bias_rows(&mut y, &self.bias)?;
        }
        Ok(y)
    }

    /// `y = x·Wᵀ`, or `y += x·Wᵀ` when `accumulate` (no bias, no ReLU).
    pub fn product_into(&self, y: &mut Tensor, accumulate: bool, x: &Tensor) -> Result<()> {
        let (w, tw) = self.operand(x);
        Ok(ops::gemm_into(y, accumulate, x, Transpose::No, w, tw)?)
    }

    /// The right operand of `x·Wᵀ` for `x`'s row count (see the type's doc).
    fn operand(&self, x: &Tensor) -> (&Tensor, Transpose) {
        let rows = x.shape().first().copied().unwrap_or(0);
        if rows > Self::MIN_ROWS && self.weight.dim(0) % Self::WIDE == 0 {
            (&self.weight_t, Transpose::No)
        } else {
            (&self.weight, Transpose::Yes)
        }
    }
}

impl Linear {
    /// A [`FrozenLinear`] of the current weights (later updates of `self`
    /// do not reach it).
    pub fn frozen(&self) -> Result<FrozenLinear> {
        FrozenLinear::from_parts(self.weight.clone(), self.bias.clone(), self.relu)
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

#[cfg(test)]
mod tests {
    use super::*;
    use noprop_tensor::philox::RngStream;
    use noprop_tensor::DType;

    /// The frozen copy agrees with the layer to rounding, on the shapes of
    /// the CT/FM steps (label, fusion, output layers at a half batch of 250
    /// or 64 rows), on tiny products and on odd ones, in both dtypes, and
    /// repeats its numbers exactly.
    #[test]
    fn frozen_agrees_with_apply() {
        let shapes = [
            (250, 10, 256),
            (250, 256, 256),
            (250, 256, 128),
            (250, 128, 10),
            (64, 256, 256),
            (64, 256, 128),
            (17, 256, 64),
            (16, 256, 64),
            (1, 256, 256),
            (300, 2, 64),
            (300, 256, 1),
            (37, 100, 50),
            (600, 784, 20),
        ];
        for (i, (rows, inp, out)) in shapes.into_iter().enumerate() {
            for (dtype, tol) in [(DType::F32, 1e-5), (DType::F64, 1e-13)] {
                for relu in [false, true] {
                    let mut layer = Linear::new(inp, out, 7, &format!("l{i}"));
                    layer.weight = layer.weight.to_dtype(dtype);
                    layer.bias = layer.bias.to_dtype(dtype);
                    if relu {
                        layer = layer.with_relu();
                    }
                    let mut rng = RngStream::new(11, i as u64);
                    let x = ops::randn(&[rows, inp], dtype, &mut rng).unwrap();
                    let want = layer.apply(&x).unwrap().to_vec_f64();
                    let frozen = layer.frozen().unwrap();
                    let got = frozen.apply(&x).unwrap();
                    assert!(got.bit_eq(&frozen.apply(&x).unwrap()));
                    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
                    for (g, w) in got.to_vec_f64().iter().zip(&want) {
                        assert!(
                            (g - w).abs() <= tol * scale,
                            "{rows}x{inp} -> {out}, {dtype:?}, relu {relu}: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }
}
