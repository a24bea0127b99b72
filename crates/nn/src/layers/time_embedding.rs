//! Sinusoidal embedding of a scalar time `t ∈ [0, 1]` (NoProp-CT/FM, docs/DECISIONS.md § 8).

use noprop_tensor::{ops, Tensor};

use crate::{Error, Mode, Module, ParamMut, Result};

/// `emb(t) = [sin(t·ω_0), …, sin(t·ω_{h−1}), cos(t·ω_0), …, cos(t·ω_{h−1})]`
/// with `ω_i = exp(−ln(10000)·i/h)`, `h = dim/2` (64-d: `h = 32`); `t` is
/// used unscaled. Input `[B]` or `[B, 1]`, output `[B, dim]`; forward and
/// backward are [`ops::time_embedding`] and [`ops::time_embedding_backward`]
/// (on the input's device).
#[derive(Clone, Debug)]
pub struct SinusoidalTimeEmbedding {
    dim: usize,
    t: Option<Tensor>,
}

impl SinusoidalTimeEmbedding {
    /// An embedding of even width `dim` (the paper's networks use 64).
    pub fn new(dim: usize) -> Self {
        assert!(
            dim % 2 == 0 && dim > 0,
            "time embedding width must be even and positive"
        );
        SinusoidalTimeEmbedding { dim, t: None }
    }

    /// `ω_i`, `i < dim/2`.
    pub fn frequencies(&self) -> Vec<f64> {
        ops::time_frequencies(self.dim / 2)
    }
}

impl Module for SinusoidalTimeEmbedding {
    fn forward(&mut self, t: &Tensor, mode: Mode) -> Result<Tensor> {
        let b = t.shape().first().copied().unwrap_or(0);
        if t.numel() != b || t.rank() == 0 || t.rank() > 2 {
            return Err(Error::BadInput {
                layer: "SinusoidalTimeEmbedding",
                expected: "[B] or [B, 1]".into(),
                got: t.shape().to_vec(),
            });
        }
        let y = ops::time_embedding(t, self.dim)?;
        if mode == Mode::Train {
            self.t = Some(t.clone());
        }
        Ok(y)
    }

    /// `∂L/∂t = Σ_k ω_k·(cos(tω_k)·dy_sin,k − sin(tω_k)·dy_cos,k)`.
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let t = self.t.take().ok_or(Error::NoForwardCache {
            layer: "SinusoidalTimeEmbedding",
        })?;
        Ok(ops::time_embedding_backward(&t, dy, self.dim)?)
    }

    fn params(&mut self) -> Vec<ParamMut<'_>> {
        Vec::new()
    }
}
