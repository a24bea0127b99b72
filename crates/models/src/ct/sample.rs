//! Inference: `z_0 → z_1` by ancestral simulation (CT) or Euler/Heun steps of
//! an ODE, the image path cached (docs/DECISIONS.md § 17), and the class read-out.

use noprop_nn::Mode;
use noprop_schedules::{ancestral_step, Stepper};
use noprop_tensor::ops::{self, Transpose};
use noprop_tensor::philox::RngStream;
use noprop_tensor::Tensor;

use super::{stream, ContMethod, NoPropCont, Purpose, Sampler};
use crate::ct_net::ImageCache;
use crate::dt::argmax_rows;
use crate::{Error, Result};

impl NoPropCont {
    /// Run the image path once for `x` (docs/DECISIONS.md § 17).
    pub fn prepare(&mut self, x: &Tensor) -> Result<ImageCache> {
        self.net.prepare(x)
    }

    /// Logits of the network at `(z, t)`, from the cache or (when `cache` is
    /// `None`) re-running the image path on `x`.
    fn logits_at(
        &mut self,
        x: &Tensor,
        cache: Option<&ImageCache>,
        z: &Tensor,
        t: f64,
    ) -> Result<Tensor> {
        match cache {
            Some(c) => self.net.forward_cached(c, z, t),
            None => self.net.forward_uncached(x, z, t),
        }
    }

    /// The final latent `z_1` after `steps` steps of `sampler` from
    /// `z_0 ~ N(0, I)` (noise keyed by `(seed, key)`; `noise = false` starts
    /// from 0 and drops the ancestral noise). With `cached`, the image path
    /// runs once; otherwise once per network evaluation (the reference).
    ///
    /// * CT, ancestral (docs/DECISIONS.md, note D (i)): on `t_k = k/N`,
    ///   `z_{t_{k+1}} = a·û(z_{t_k}, x, t_k) + b·z_{t_k} + √c·ε`;
    /// * CT, Euler/Heun: the probability-flow ODE
    ///   `dz/dt = −½γ′(t)(√ᾱ(t)·û − ᾱ(t)·z)` (note D (ii));
    /// * FM, Euler/Heun: `dz/dt = v̂_θ(z, x, t)` (note E).
    pub fn sample(
        &mut self,
        x: &Tensor,
        sampler: Sampler,
        steps: usize,
        noise: bool,
        key: u64,
        cached: bool,
    ) -> Result<Tensor> {
        if steps == 0 {
            return Err(Error::Config {
                what: "inference needs at least one step".into(),
            });
        }
        if sampler == Sampler::Ancestral && self.config.method == ContMethod::Fm {
            return Err(Error::Config {
                what:
                    "the ancestral sampler is for NoProp-CT; FM integrates an ODE (euler or heun)"
                        .into(),
            });
        }
        let b = x.dim(0);
        let d = self.config.embed_dim();
        let mut rng = RngStream::new(self.config.seed, stream(Purpose::Inference, key));
        let mut z = if noise {
            ops::randn_on(
                &self.device,
                &[b, d],
                self.embedding.weight.dtype(),
                &mut rng,
            )?
        } else {
            Tensor::zeros_on(&[b, d], self.embedding.weight.dtype(), &self.device)?
        };
        let cache = if cached { Some(self.prepare(x)?) } else { None };
        let w = self.embedding.weight.clone();
        let dt = 1.0 / steps as f64;
        let method = self.config.method;
        for k in 0..steps {
            let t = k as f64 * dt;
            z = match (method, sampler) {
                (ContMethod::Ct, Sampler::Ancestral) => {
                    let logits = self.logits_at(x, cache.as_ref(), &z, t)?;
                    let p = ops::softmax(&logits)?;
                    let u_hat = ops::matmul(&p, Transpose::No, &w, Transpose::No)?;
                    let post = self.schedule()?.posterior(t, (k + 1) as f64 * dt);
                    let eps = if noise {
                        Some(ops::randn_on(&self.device, &[b, d], w.dtype(), &mut rng)?)
                    } else {
                        None
                    };
                    ancestral_step(&post, &u_hat, &z, eps.as_ref())?
                }
                (_, Sampler::Euler | Sampler::Heun) => {
                    let stepper = if sampler == Sampler::Euler {
                        Stepper::Euler
                    } else {
                        Stepper::Heun
                    };
                    let zc = z.clone();
                    stepper.step::<Error, _>(&zc, t, dt, |zz, tt| {
                        let logits = self.logits_at(x, cache.as_ref(), zz, tt)?;
                        match method {
                            ContMethod::Fm => {
                                Ok(ops::matmul(&logits, Transpose::No, &w, Transpose::No)?)
                            }
                            ContMethod::Ct => {
                                let p = ops::softmax(&logits)?;
                                let u_hat = ops::matmul(&p, Transpose::No, &w, Transpose::No)?;
                                let (ku, kz) = self.schedule()?.pf_ode_coeffs(tt);
                                Ok(ops::add_scaled(ku, &u_hat, kz, zz)?)
                            }
                        }
                    })?
                }
                (ContMethod::Fm, Sampler::Ancestral) => unreachable!("rejected above"),
            };
        }
        Ok(z)
    }

    /// Predicted classes: CT `argmax p̂_θout(y | z_1)`; FM the nearest class
    /// embedding `argmin_y ‖z_1 − u_y‖` (docs/DECISIONS.md, note E). See [`NoPropCont::sample`].
    pub fn predict(
        &mut self,
        x: &Tensor,
        sampler: Sampler,
        steps: usize,
        noise: bool,
        key: u64,
    ) -> Result<Vec<usize>> {
        let z = self.sample(x, sampler, steps, noise, key, true)?;
        self.classify(&z)
    }

    /// The read-out of a final latent `z_1` (see [`NoPropCont::predict`]).
    pub fn classify(&mut self, z: &Tensor) -> Result<Vec<usize>> {
        match self.config.method {
            ContMethod::Ct => {
                let logits = self.classifier.logits(z, &self.embedding, Mode::Eval)?;
                argmax_rows(&logits)
            }
            ContMethod::Fm => {
                // argmin ‖z − u_y‖² = argmax (2 z·u_y − ‖u_y‖²).
                let w = &self.embedding.weight;
                let mut s = ops::matmul(z, Transpose::No, w, Transpose::Yes)?;
                ops::scale_in_place(&mut s, 2.0)?;
                let wn = ops::scale(&ops::row_dots(w, w)?, -1.0)?.to_dtype(s.dtype());
                ops::add_bias_rows(&mut s, &wn)?;
                argmax_rows(&s)
            }
        }
    }
}
