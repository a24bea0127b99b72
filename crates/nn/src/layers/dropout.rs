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
    seed: u64,
    stream: u64,
    /// The random stream the masks are drawn from.
    pub rng: RngStream,
    mask: Option<Tensor>,
}

impl Dropout {
    /// Dropout with drop probability `p`, masks from `(seed, stream)`.
    pub fn new(p: f64, seed: u64, stream: u64) -> Self {
        Dropout {
            p,
            seed,
            stream,
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
        let (y, mask) = ops::dropout_forward(x, self.p, &mut self.rng)?;
        self.mask = Some(mask);
        Ok(y)
    }

    /// Masks continue from `(seed, mix(stream, key), offset 0)`.
    fn set_rng_key(&mut self, key: u64) {
        self.rng = RngStream::new(self.seed, mix_stream(self.stream, key));
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

/// Combine a base stream id and a key into a new stream id (SplitMix64 finaliser).
pub fn mix_stream(stream: u64, key: u64) -> u64 {
    let mut z = stream ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
