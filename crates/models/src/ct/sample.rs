//! Inference: `z_0 → z_1` by ancestral simulation (CT) or Euler/Heun steps of
//! an ODE, the image path cached (docs/DECISIONS.md § 17), and the class read-out.

use noprop_nn::Mode;
use std::ops::Range;

use noprop_schedules::learnable::LearnableSchedule;
use noprop_schedules::{ancestral_step, Posterior, Stepper};
use noprop_tensor::ops::{self, FoldedRows, Transpose};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{DType, Elem, Tensor};

use super::{stream, ContMethod, NoPropCont, Purpose, Sampler};
use crate::ct_net::{row_halves, stack_row_halves, CachedHead, ImageCache};
use crate::dt::argmax_rows;
use crate::{Error, Result};

/// What the row halves of [`NoPropCont::sample`] share (all borrowed, so
/// both can run at once).
struct Shared<'a> {
    ctx: &'a Ctx,
    head: CachedHead<'a>,
    w: &'a Tensor,
    schedule: Option<&'a LearnableSchedule>,
    seed: u64,
}

impl Shared<'_> {
    /// The sampling loop on rows `rows` of the batch through the FC label
    /// path's shared evaluation, the label layer folded into `W1_z` row by
    /// row across the steps ([`crate::ct_net::CachedHead::logits_along`],
    /// one `FoldedRows` per call).
    fn sample_rows(&self, run: Run, cache: &ImageCache, rows: Range<usize>) -> Result<Tensor> {
        let part = if rows.len() == run.batch {
            cache.clone()
        } else {
            cache.rows(rows.clone())?
        };
        let w = self.w;
        let mut rng = RngStream::new(self.seed, stream(Purpose::Inference, run.key));
        let mut trail = FoldedRows::default();
        steps_with_rows(self.ctx, run, w, self.schedule, &mut rng, rows, |z, t| {
            self.head.logits_along(&mut trail, &part, z, t)
        })
    }
}

/// The model's device, embedding width and method, for the step loop.
struct Ctx {
    device: noprop_tensor::Device,
    d: usize,
    method: ContMethod,
    /// CT's ancestral step coefficients from `t_k` to `t_{k+1}` for every
    /// step of the run (computed once, shared by the row halves); empty
    /// for the other samplers.
    posteriors: Vec<Posterior>,
}

/// The fixed arguments of one call of [`NoPropCont::sample`].
#[derive(Clone, Copy)]
struct Run {
    sampler: Sampler,
    steps: usize,
    noise: bool,
    key: u64,
    /// Rows of the whole batch (the noise is drawn for all of them).
    batch: usize,
}

impl NoPropCont {
    /// Run the image path once for `x` (docs/DECISIONS.md § 17).
    pub fn prepare(&mut self, x: &Tensor) -> Result<ImageCache> {
        self.net.prepare(x)
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
        let run = Run {
            sampler,
            steps,
            noise,
            key,
            batch: b,
        };
        let ctx = self.ctx(&run)?;
        let cache = if cached { Some(self.prepare(x)?) } else { None };
        let head = match &cache {
            Some(_) => self.net.fused_cached_head()?,
            None => None,
        };
        let (Some(cache), Some(head)) = (&cache, head) else {
            // Uncached (the reference), or the prototype label path: a conv
            // stack whose layers keep state, evaluated through `&mut`.
            let w = self.embedding.weight.clone();
            let mut rng = self.noise_stream(key);
            let (net, schedule) = (&mut self.net, self.schedule.as_ref());
            let mut trail = FoldedRows::default();
            return steps_with(&ctx, run, &w, schedule, &mut rng, |z, t| match &cache {
                Some(c) => net.forward_cached(c, z, t),
                None => net.forward_uncached(x, z, t, &mut trail),
            });
        };
        let shared = Shared {
            ctx: &ctx,
            head,
            w: &self.embedding.weight,
            schedule: self.schedule.as_ref(),
            seed: self.config.seed,
        };
        let Some([lo, hi]) = row_halves(b, &self.device) else {
            return shared.sample_rows(run, cache, 0..b);
        };
        // Two halves of the rows side by side, each on its own core with no
        // synchronisation between the 1000 steps' small kernels (every row's
        // path is independent, and each half draws its rows of the whole
        // batch's noise, see `randn_rows`).
        let (lo, hi) = rayon::join(
            || shared.sample_rows(run, cache, lo),
            || shared.sample_rows(run, cache, hi),
        );
        stack_row_halves(&lo?, &hi?)
    }

    /// What the step loop of `run` needs of the model besides the network.
    fn ctx(&self, run: &Run) -> Result<Ctx> {
        let posteriors = match (self.config.method, run.sampler, &self.schedule) {
            (ContMethod::Ct, Sampler::Ancestral, Some(schedule)) => {
                let dt = 1.0 / run.steps as f64;
                let ts: Vec<f64> = (0..=run.steps).map(|k| k as f64 * dt).collect();
                schedule.posteriors(&ts)
            }
            (ContMethod::Ct, Sampler::Ancestral, None) => {
                return Err(Error::Config {
                    what: "NoProp-CT without a noise schedule".into(),
                })
            }
            _ => Vec::new(),
        };
        Ok(Ctx {
            device: self.device.clone(),
            d: self.config.embed_dim(),
            method: self.config.method,
            posteriors,
        })
    }

    /// The Philox stream of inference `key`.
    fn noise_stream(&self, key: u64) -> RngStream {
        RngStream::new(self.config.seed, stream(Purpose::Inference, key))
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

/// [`steps_with_rows`] on the whole batch.
fn steps_with(
    ctx: &Ctx,
    run: Run,
    w: &Tensor,
    schedule: Option<&LearnableSchedule>,
    rng: &mut RngStream,
    logits: impl FnMut(&Tensor, f64) -> Result<Tensor>,
) -> Result<Tensor> {
    steps_with_rows(ctx, run, w, schedule, rng, 0..run.batch, logits)
}

/// The step loop of [`NoPropCont::sample`] on rows `rows` of the batch:
/// `z_0` and every step's noise are those of the whole batch's draws
/// (`[run.batch, d]`, see [`randn_rows`]); `logits(z, t)` evaluates the
/// network on these rows.
fn steps_with_rows(
    ctx: &Ctx,
    run: Run,
    w: &Tensor,
    schedule: Option<&LearnableSchedule>,
    rng: &mut RngStream,
    rows: Range<usize>,
    mut logits: impl FnMut(&Tensor, f64) -> Result<Tensor>,
) -> Result<Tensor> {
    let d = ctx.d;
    let draw =
        |rng: &mut RngStream| randn_rows(&ctx.device, rng, run.batch, d, rows.clone(), w.dtype());
    let schedule = || {
        schedule.ok_or_else(|| Error::Config {
            what: "NoProp-FM has no noise schedule".into(),
        })
    };
    let mut z = if run.noise {
        draw(rng)?
    } else {
        Tensor::zeros_on(&[rows.len(), d], w.dtype(), &ctx.device)?
    };
    let dt = 1.0 / run.steps as f64;
    let method = ctx.method;
    for k in 0..run.steps {
        let t = k as f64 * dt;
        z = match (method, run.sampler) {
            (ContMethod::Ct, Sampler::Ancestral) => {
                let p = ops::softmax(&logits(&z, t)?)?;
                let u_hat = ops::matmul(&p, Transpose::No, w, Transpose::No)?;
                let post = &ctx.posteriors[k];
                let eps = if run.noise { Some(draw(rng)?) } else { None };
                ancestral_step(post, &u_hat, &z, eps.as_ref())?
            }
            (_, Sampler::Euler | Sampler::Heun) => {
                let stepper = if run.sampler == Sampler::Euler {
                    Stepper::Euler
                } else {
                    Stepper::Heun
                };
                let zc = z.clone();
                stepper.step::<Error, _>(&zc, t, dt, |zz, tt| {
                    let l = logits(zz, tt)?;
                    match method {
                        ContMethod::Fm => Ok(ops::matmul(&l, Transpose::No, w, Transpose::No)?),
                        ContMethod::Ct => {
                            let p = ops::softmax(&l)?;
                            let u_hat = ops::matmul(&p, Transpose::No, w, Transpose::No)?;
                            let (ku, kz) = schedule()?.pf_ode_coeffs(tt);
                            Ok(ops::add_scaled(ku, &u_hat, kz, zz)?)
                        }
                    }
                })?
            }
            (ContMethod::Fm, Sampler::Ancestral) => unreachable!("rejected by sample"),
        };
    }
    Ok(z)
}

/// Standard normals for rows `rows` of a `[batch, d]` draw from `rng`: the
/// numbers the whole draw puts there (Philox is counter-based and each block
/// holds four values, so a part of a draw starts at the block holding its
/// first value); `rng` then advances past the whole draw.
fn randn_rows(
    device: &noprop_tensor::Device,
    rng: &mut RngStream,
    batch: usize,
    d: usize,
    rows: Range<usize>,
    dtype: DType,
) -> Result<Tensor> {
    if rows.len() == batch {
        return Ok(ops::randn_on(device, &[batch, d], dtype, rng)?);
    }
    let first = rows.start * d;
    let (skip, n) = (first % 4, rows.len() * d);
    let part = RngStream::at(rng.seed, rng.stream, rng.offset() + (first / 4) as u64);
    rng.skip(noprop_tensor::philox::blocks_for(batch * d));
    fn part_of<T: Elem>(mut part: RngStream, skip: usize, n: usize) -> Vec<T> {
        let mut v = vec![T::zero(); skip + n];
        part.fill_normal(&mut v);
        v.split_off(skip)
    }
    let shape = [rows.len(), d];
    let t = match dtype {
        DType::F32 => Tensor::from_vec(part_of::<f32>(part, skip, n), &shape)?,
        DType::F64 => Tensor::from_vec(part_of::<f64>(part, skip, n), &shape)?,
    };
    Ok(t.to_device(device)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use noprop_tensor::Device;

    #[test]
    fn a_part_of_a_draw_is_those_rows_of_the_whole_draw() {
        for (batch, d, rows) in [(7, 10, 3..7), (9, 3, 1..4), (5, 4, 0..5), (6, 5, 5..6)] {
            let mut whole = RngStream::new(3, 4);
            let full = ops::randn(&[batch, d], DType::F32, &mut whole).unwrap();
            for dtype in [DType::F32, DType::F64] {
                let mut rng = RngStream::new(3, 4);
                let part =
                    randn_rows(&Device::Cpu, &mut rng, batch, d, rows.clone(), dtype).unwrap();
                assert_eq!(part.shape(), &[rows.len(), d]);
                let want: Vec<f32> = full.to_vec_f32()[rows.start * d..rows.end * d].to_vec();
                assert_eq!(
                    part.to_dtype(DType::F32).to_vec_f32(),
                    want,
                    "{batch}x{d} {rows:?}"
                );
                assert_eq!(rng.offset(), whole.offset());
            }
        }
    }
}
