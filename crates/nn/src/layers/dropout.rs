//! Element-wise (inverted) dropout with Philox masks.

use noprop_tensor::ops;
use noprop_tensor::philox::RngStream;
use noprop_tensor::Tensor;

use crate::{Error, Mode, Module, ParamMut, Result};

/// Inverted dropout: in training `y = x ⊙ m` with `m_i = 1/(1−p)` with
/// probability `1 − p` and `0` otherwise; identity in evaluation.
///
/// Masks come from a Philox stream, so a run is reproducible and resumable
/// from `(seed, stream, offset)` ([`Dropout::rng`]).
#[derive(Clone, Debug)]
pub struct Dropout {
    p: f64,
    /// The random stream the masks are drawn from.
    pub rng: RngStream,
    mask: Option<Tensor>,
}

impl Dropout {
    /// Dropout with drop probability `p`, masks from `(seed, stream)`.
    pub fn new(p: f64, seed: u64, stream: u64) -> Self {
        Dropout {
            p,
            rng: RngStream::new(seed, stream),
            mask: None,
        }
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }
}

impl Module for Dropout {
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Eval || self.p == 0.0 {
            self.mask = None;
            return Ok(x.clone());
        }
        let mask = ops::dropout_mask(x.shape(), self.p, x.dtype(), &mut self.rng)?;
        let y = ops::mul(x, &mask)?;
        self.mask = Some(mask);
        Ok(y)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        if self.p == 0.0 {
            return Ok(dy.clone());
        }
        let mask = self
            .mask
            .take()
            .ok_or(Error::NoForwardCache { layer: "Dropout" })?;
        Ok(ops::mul(dy, &mask)?)
    }

    fn params(&mut self) -> Vec<ParamMut<'_>> {
        Vec::new()
    }
}
