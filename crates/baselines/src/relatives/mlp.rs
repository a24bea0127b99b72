//! The fully connected network every relative trains, its activations, and
//! the few row-wise helpers their local losses need.
//!
//! [`Mlp`] chains [`Linear`] layers with an activation after every hidden
//! layer. It keeps each layer's output from the last training forward pass so
//! that a method can send a *local* error into any one layer
//! ([`Mlp::local_backward`]) — DFA, DRTP, CCL and Forward-Forward do — or
//! back-propagate end to end ([`Mlp::backward`]), as the matched back-prop
//! reference does.
//!
//! The element- and row-wise helpers below (tanh, ELU, row norms, row
//! scaling) are not in `noprop_tensor::ops`; they run on the host, in the
//! tensor's own dtype (`f32`, or `f64` for the finite-difference checks).

use noprop_nn::layers::Linear;
use noprop_nn::{Mode, Module, ParamMut};
use noprop_tensor::{ops, DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The hidden units' non-linearity `f`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `x` for `x > 0`, `eˣ − 1` otherwise (CCL's released code).
    Elu,
}

impl Activation {
    /// The name used on the command line and in results.
    pub const fn as_str(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Elu => "elu",
        }
    }

    /// `f(x)`, elementwise.
    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Relu => Ok(ops::relu(x)?),
            Activation::Tanh => map(x, f64::tanh),
            Activation::Elu => map(x, |v| if v > 0.0 { v } else { v.exp_m1() }),
        }
    }

    /// `dy ⊙ f'(x)` written with the output `y = f(x)`:
    /// ReLU `[y > 0]`, tanh `1 − y²`, ELU `1` for `y > 0` else `y + 1`.
    pub fn backward(self, dy: &Tensor, y: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Relu => Ok(ops::relu_backward(dy, y)?),
            Activation::Tanh => zip(dy, y, |d, y| d * (1.0 - y * y)),
            Activation::Elu => zip(dy, y, |d, y| if y > 0.0 { d } else { d * (y + 1.0) }),
        }
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `f(x)` elementwise, in `x`'s dtype.
pub fn map(x: &Tensor, f: impl Fn(f64) -> f64) -> Result<Tensor> {
    let v: Vec<f64> = x.try_to_vec_f64()?.into_iter().map(f).collect();
    back(v, x)
}

/// `f(a, b)` elementwise for two tensors of one shape, in `a`'s dtype.
pub fn zip(a: &Tensor, b: &Tensor, f: impl Fn(f64, f64) -> f64) -> Result<Tensor> {
    if a.shape() != b.shape() {
        return Err(Error::Config {
            what: format!("shape mismatch {:?} vs {:?}", a.shape(), b.shape()),
        });
    }
    let (av, bv) = (a.try_to_vec_f64()?, b.try_to_vec_f64()?);
    back(av.iter().zip(&bv).map(|(&x, &y)| f(x, y)).collect(), a)
}

fn back(v: Vec<f64>, like: &Tensor) -> Result<Tensor> {
    let t = Tensor::from_vec(v, like.shape())?;
    Ok(if like.dtype() == DType::F64 {
        t
    } else {
        t.to_dtype(like.dtype())
    })
}

/// Row `i` of `x` multiplied by `s[i]` (`ops::scale_rows`: the product
/// formed in `f64`, rounded to `x`'s dtype).
pub fn scale_rows(x: &Tensor, s: &[f64]) -> Result<Tensor> {
    let k = ops::row_coefficients(s, &x.device())?;
    Ok(ops::scale_rows(x, &k)?)
}

/// `Σ_j x_ij²` of each row (`ops::row_dots`, added in column order in `f64`).
pub fn row_sum_sq(x: &Tensor) -> Result<Vec<f64>> {
    Ok(ops::row_dots(x, x)?.try_to_vec_f64()?)
}

/// `x_i / (‖x_i‖ + 1e-4)`: every row scaled to (almost) unit length — the
/// Forward-Forward layer normalisation (Hinton 2022, § 2.1). No gradient
/// flows through it in Forward-Forward, so it has no backward.
pub fn normalize_rows(x: &Tensor) -> Result<Tensor> {
    let s: Vec<f64> = row_sum_sq(x)?
        .into_iter()
        .map(|q| 1.0 / (q.sqrt() + 1e-4))
        .collect();
    scale_rows(x, &s)
}

/// The rows of `a` followed by the rows of `b` (same width and dtype).
pub fn concat_rows(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let d = a.dim(1);
    if b.dim(1) != d {
        return Err(Error::Config {
            what: format!("concat_rows: widths {} and {}", d, b.dim(1)),
        });
    }
    let mut v = a.try_to_vec_f64()?;
    v.extend(b.try_to_vec_f64()?);
    back_shape(v, &[a.dim(0) + b.dim(0), d], a.dtype())
}

/// Rows `lo..hi` of `x`.
pub fn slice_rows(x: &Tensor, lo: usize, hi: usize) -> Result<Tensor> {
    let d = x.dim(1);
    let v = x.try_to_vec_f64()?[lo * d..hi * d].to_vec();
    back_shape(v, &[hi - lo, d], x.dtype())
}

fn back_shape(v: Vec<f64>, shape: &[usize], dtype: DType) -> Result<Tensor> {
    let t = Tensor::from_vec(v, shape)?;
    Ok(if dtype == DType::F64 {
        t
    } else {
        t.to_dtype(dtype)
    })
}

/// The one-hot rows `[B, classes]` of `labels`, in `dtype`.
pub fn one_hot(labels: &[usize], classes: usize, dtype: DType) -> Result<Tensor> {
    let mut v = vec![0.0f64; labels.len() * classes];
    for (i, &y) in labels.iter().enumerate() {
        v[i * classes + y] = 1.0;
    }
    back_shape(v, &[labels.len(), classes], dtype)
}

/// A fully connected network `h_k = f(W_k h_{k−1} + b_k)`, `k = 1…L`, with
/// `f` after every layer but the last unless built with
/// [`Mlp::with_last_activation`] (Forward-Forward's layers are all hidden).
#[derive(Clone, Debug)]
pub struct Mlp {
    /// The layers `W_k, b_k`, PyTorch's default initialisation.
    pub layers: Vec<Linear>,
    /// The non-linearity.
    pub act: Activation,
    last_act: bool,
    /// Each layer's output from the last training forward pass.
    outs: Vec<Tensor>,
}

impl Mlp {
    /// Layers of widths `widths[0] → widths[1] → … → widths[L]`, drawn from
    /// `(seed, "{name}.fc{k}")`.
    pub fn new(widths: &[usize], act: Activation, seed: u64, name: &str) -> Self {
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(k, w)| Linear::new(w[0], w[1], seed, &format!("{name}.fc{}", k + 1)))
            .collect();
        Mlp {
            layers,
            act,
            last_act: false,
            outs: Vec::new(),
        }
    }

    /// Apply the activation after the last layer too.
    pub fn with_last_activation(mut self) -> Self {
        self.last_act = true;
        self
    }

    /// Number of layers `L`.
    pub fn depth(&self) -> usize {
        self.layers.len()
    }

    fn activated(&self, k: usize) -> bool {
        self.last_act || k + 1 < self.layers.len()
    }

    /// Layer `k`'s (0-based) output for input `x`; in training it is kept for
    /// [`Mlp::local_backward`].
    pub fn layer_forward(&mut self, k: usize, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut y = self.layers[k].forward(x, mode)?;
        if self.activated(k) {
            y = self.act.forward(&y)?;
        }
        if mode == Mode::Train {
            if self.outs.len() <= k {
                self.outs.resize(k + 1, Tensor::zeros(&[0], DType::F32));
            }
            self.outs[k] = y.clone();
        }
        Ok(y)
    }

    /// The network's output `h_L`.
    pub fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut h = x.clone();
        for k in 0..self.layers.len() {
            h = self.layer_forward(k, &h, mode)?;
        }
        Ok(h)
    }

    /// The outputs `h_1 … h_L` of the last training forward pass.
    pub fn outputs(&self) -> &[Tensor] {
        &self.outs
    }

    /// Send `dy = ∂L/∂h_k` into layer `k` alone: through its activation, then
    /// accumulate `∂L/∂W_k`, `∂L/∂b_k`; returns `∂L/∂h_{k−1}`.
    pub fn local_backward(&mut self, k: usize, dy: &Tensor) -> Result<Tensor> {
        let d = if self.activated(k) {
            let y = self.outs.get(k).ok_or(Error::Config {
                what: format!("Mlp::local_backward({k}) without a training forward pass"),
            })?;
            self.act.backward(dy, y)?
        } else {
            dy.clone()
        };
        Ok(self.layers[k].backward(&d)?)
    }

    /// Back-propagation from `∂L/∂h_L` through every layer; returns `∂L/∂x`.
    pub fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let mut d = dy.clone();
        for k in (0..self.layers.len()).rev() {
            d = self.local_backward(k, &d)?;
        }
        Ok(d)
    }

    /// Every parameter, named `fc{k}.weight`, `fc{k}.bias`.
    pub fn params(&mut self) -> Vec<ParamMut<'_>> {
        let mut v = Vec::new();
        for (k, l) in self.layers.iter_mut().enumerate() {
            v.extend(noprop_nn::prefixed(&format!("fc{}", k + 1), l.params()));
        }
        v
    }

    /// Zero every gradient accumulator.
    pub fn zero_grad(&mut self) {
        for l in &mut self.layers {
            l.zero_grad();
        }
    }

    /// Convert every parameter to `dtype` (`F64` for finite-difference checks).
    pub fn to_dtype(&mut self, dtype: DType) {
        for l in &mut self.layers {
            l.to_dtype(dtype);
        }
    }

    /// Trainable scalars.
    pub fn num_params(&mut self) -> usize {
        self.params().iter().map(|p| p.value.numel()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use noprop_tensor::philox::RngStream;

    /// `L = Σ (h_L ⊙ c)` for a fixed random `c`, so `∂L/∂h_L = c`.
    fn loss(net: &mut Mlp, x: &Tensor, c: &Tensor) -> f64 {
        let y = net.forward(x, Mode::Eval).unwrap();
        ops::dot(&y, c).unwrap()
    }

    #[test]
    fn backward_matches_finite_differences_for_every_activation() {
        for act in [Activation::Relu, Activation::Tanh, Activation::Elu] {
            for last in [false, true] {
                let mut net = Mlp::new(&[5, 4, 3], act, 7, "n");
                if last {
                    net = net.with_last_activation();
                }
                net.to_dtype(DType::F64);
                let mut rng = RngStream::new(1, 2);
                let x = ops::randn(&[3, 5], DType::F64, &mut rng).unwrap();
                let c = ops::randn(&[3, 3], DType::F64, &mut rng).unwrap();
                net.forward(&x, Mode::Train).unwrap();
                net.backward(&c).unwrap();
                let analytic: Vec<Vec<f64>> =
                    net.params().iter().map(|p| p.grad.to_vec_f64()).collect();
                let eps = 1e-6;
                for (pi, grads) in analytic.iter().enumerate() {
                    for (j, &g) in grads.iter().enumerate() {
                        let bump = |net: &mut Mlp, by: f64| {
                            let mut ps = net.params();
                            let mut v = ps[pi].value.to_vec_f64();
                            v[j] += by;
                            *ps[pi].value = Tensor::from_vec(v, ps[pi].value.shape()).unwrap();
                        };
                        bump(&mut net, eps);
                        let up = loss(&mut net, &x, &c);
                        bump(&mut net, -2.0 * eps);
                        let down = loss(&mut net, &x, &c);
                        bump(&mut net, eps);
                        let fd = (up - down) / (2.0 * eps);
                        assert!(
                            (fd - g).abs() < 1e-6 * (1.0 + g.abs()),
                            "{act} last={last} param {pi}[{j}]: analytic {g} vs fd {fd}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn row_helpers() {
        let x = Tensor::from_vec(vec![3.0f32, 4.0, 0.0, 2.0], &[2, 2]).unwrap();
        let n = normalize_rows(&x).unwrap().to_vec_f64();
        assert!((n[0] - 0.6).abs() < 1e-4 && (n[3] - 1.0).abs() < 1e-4);
        let c = concat_rows(&x, &x).unwrap();
        assert_eq!(c.shape(), &[4, 2]);
        assert_eq!(slice_rows(&c, 2, 4).unwrap().to_vec_f64(), x.to_vec_f64());
        assert_eq!(
            one_hot(&[1, 0], 2, DType::F32).unwrap().to_vec_f64(),
            vec![0.0, 1.0, 1.0, 0.0]
        );
    }
}
