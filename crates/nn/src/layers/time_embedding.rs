//! Sinusoidal embedding of a scalar time `t ∈ [0, 1]` (NoProp-CT/FM, docs/DECISIONS.md § 8).

use noprop_tensor::{with_dtype, Elem, Tensor};

use crate::{Error, Mode, Module, ParamMut, Result};

/// `emb(t) = [sin(t·ω_0), …, sin(t·ω_{h−1}), cos(t·ω_0), …, cos(t·ω_{h−1})]`
/// with `ω_i = exp(−ln(10000)·i/h)`, `h = dim/2` (64-d: `h = 32`); `t` is
/// used unscaled. Input `[B]` or `[B, 1]`, output `[B, dim]`.
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
        let h = self.dim / 2;
        (0..h)
            .map(|i| (-(10000f64).ln() * i as f64 / h as f64).exp())
            .collect()
    }
}

impl Module for SinusoidalTimeEmbedding {
    fn forward(&mut self, t: &Tensor, mode: Mode) -> Result<Tensor> {
        let b = t.dim(0);
        if t.numel() != b || t.rank() == 0 || t.rank() > 2 {
            return Err(Error::BadInput {
                layer: "SinusoidalTimeEmbedding",
                expected: "[B] or [B, 1]".into(),
                got: t.shape().to_vec(),
            });
        }
        let w = self.frequencies();
        let h = self.dim / 2;
        let mut y = Tensor::zeros(&[b, self.dim], t.dtype());
        with_dtype!(t.dtype(), T, {
            let ts = t.as_slice::<T>()?.to_vec();
            let ys = y.as_mut_slice::<T>()?;
            for (i, &tv) in ts.iter().enumerate() {
                for (k, &wk) in w.iter().enumerate() {
                    let a = tv.to_f64_lossless() * wk;
                    ys[i * self.dim + k] = T::from_f64_lossy(a.sin());
                    ys[i * self.dim + h + k] = T::from_f64_lossy(a.cos());
                }
            }
        });
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
        let w = self.frequencies();
        let h = self.dim / 2;
        let mut dt = t.zeros_like();
        with_dtype!(t.dtype(), T, {
            let ts = t.as_slice::<T>()?;
            let dys = dy.as_slice::<T>()?;
            let out = dt.as_mut_slice::<T>()?;
            for (i, &tv) in ts.iter().enumerate() {
                let mut s = 0.0f64;
                for (k, &wk) in w.iter().enumerate() {
                    let a = tv.to_f64_lossless() * wk;
                    s += wk
                        * (a.cos() * dys[i * self.dim + k].to_f64_lossless()
                            - a.sin() * dys[i * self.dim + h + k].to_f64_lossless());
                }
                out[i] = T::from_f64_lossy(s);
            }
        });
        Ok(dt)
    }

    fn params(&mut self) -> Vec<ParamMut<'_>> {
        Vec::new()
    }
}
