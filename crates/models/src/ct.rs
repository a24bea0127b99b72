//! NoProp-CT (Eq. 9, Algorithm 2, learnable schedule) and NoProp-FM
//! (Eqs. 10–13, Algorithm 3): one shared network [`CtNet`], training,
//! inference by ancestral simulation or ODE integration with the image path
//! cached (docs/DECISIONS.md § 17), and checkpoints (docs/DECISIONS.md §§ 8–12,
//! notes D and E).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use noprop_nn::io;
use noprop_nn::layers::mix_stream;
use noprop_nn::optim::{Adam, Optimizer};
use noprop_nn::{Mode, ParamMut};
use noprop_schedules::learnable::{kl_z0, kl_z0_dalpha};
use noprop_schedules::ode::{combine_rows, noisy_latent_rows, row_dots, scale_rows};
use noprop_schedules::{
    ancestral_step, fm_extrapolate, fm_path, noisy_latent, LearnableSchedule, Stepper,
};
use noprop_tensor::ops::{self, Transpose};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::block::ImageDims;
use crate::classifier::{ClassifierKind, OutputClassifier};
use crate::ct_net::{CtNet, ImageCache};
use crate::dt::argmax_rows;
use crate::embedding::{ClassEmbedding, EmbeddingKind};
use crate::{Error, Result};

/// Which continuous-time method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContMethod {
    /// NoProp-CT: diffusion with a learnable schedule (Eq. 9).
    Ct,
    /// NoProp-FM: flow matching (Eq. 11, plus Eq. 13 with a learned embedding).
    Fm,
}

impl ContMethod {
    /// `noprop-ct` or `noprop-fm`.
    pub fn name(self) -> &'static str {
        match self {
            ContMethod::Ct => "noprop-ct",
            ContMethod::Fm => "noprop-fm",
        }
    }

    /// The default sampler (docs/DECISIONS.md §§ 10 and 11): ancestral for CT, Euler for FM.
    pub fn default_sampler(self) -> Sampler {
        match self {
            ContMethod::Ct => Sampler::Ancestral,
            ContMethod::Fm => Sampler::Euler,
        }
    }
}

/// How inference simulates `z_0 → z_1` (docs/DECISIONS.md §§ 10 and 11).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampler {
    /// CT only: the discretised diffusion of docs/DECISIONS.md, note D (i).
    Ancestral,
    /// Euler steps of the ODE (CT: docs/DECISIONS.md, note D (ii); FM: `dz/dt = v̂`).
    Euler,
    /// Heun steps of the same ODE.
    Heun,
}

impl FromStr for Sampler {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ancestral" => Ok(Sampler::Ancestral),
            "euler" => Ok(Sampler::Euler),
            "heun" => Ok(Sampler::Heun),
            _ => Err(Error::Config {
                what: format!("unknown sampler `{s}` (ancestral, euler, heun)"),
            }),
        }
    }
}

impl std::fmt::Display for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sampler::Ancestral => "ancestral",
            Sampler::Euler => "euler",
            Sampler::Heun => "heun",
        })
    }
}

/// Everything that defines a NoProp-CT/FM model and its training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContConfig {
    /// CT or FM.
    pub method: ContMethod,
    /// Image `(C, H, W)`.
    pub image: ImageDims,
    /// Number of classes `m`.
    pub classes: usize,
    /// The class embedding.
    pub embedding: EmbeddingKind,
    /// η of Eq. 9 (CT; 1 in Table 4).
    pub eta: f64,
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Weight decay, coupled L2 as in `torch.optim.Adam` (1e-3).
    pub weight_decay: f64,
    /// σ of the FM path, Eq. 10 (docs/DECISIONS.md § 11: 0).
    pub fm_sigma: f64,
    /// Add the anchor cross-entropy of Eq. 13 (FM; on with a learned embedding).
    pub anchor_ce: bool,
    /// Master seed.
    pub seed: u64,
}

impl ContConfig {
    /// The paper's settings (Table 4) for `method`.
    pub fn paper(
        method: ContMethod,
        image: ImageDims,
        classes: usize,
        embedding: EmbeddingKind,
        seed: u64,
    ) -> Self {
        ContConfig {
            method,
            image,
            classes,
            embedding,
            eta: 1.0,
            lr: 1e-3,
            weight_decay: 1e-3,
            fm_sigma: 0.0,
            anchor_ce: method == ContMethod::Fm && embedding != EmbeddingKind::OneHot,
            seed,
        }
    }

    /// The embedding dimension `d`.
    pub fn embed_dim(&self) -> usize {
        match self.embedding {
            EmbeddingKind::OneHot => self.classes,
            EmbeddingKind::Learned { dim } => dim,
            EmbeddingKind::Prototype => self.image.0 * self.image.1 * self.image.2,
        }
    }
}

/// Random-stream purposes; every draw is keyed by `(seed, purpose, step)`.
#[derive(Clone, Copy)]
#[repr(u64)]
enum Purpose {
    Time = 21,
    Zt = 22,
    Z1 = 23,
    Dropout = 24,
    Inference = 25,
    FmZ0 = 26,
    FmEps = 27,
    Schedule = 28,
}

fn stream(purpose: Purpose, step: u64) -> u64 {
    mix_stream(mix_stream(purpose as u64, 0xC7), step)
}

/// Loss terms of one mini-batch (batch means).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ContLoss {
    /// CT: `(η/2)·mean SNR′(t)‖û − u_y‖²`; FM: `mean ‖v̂ − (z_1 − z_0)‖²`.
    pub l2: f64,
    /// CT: classifier CE on `z_1 ~ q(z_1|y)`; FM: the anchor CE of Eq. 13 (0 when off).
    pub ce: f64,
    /// CT: `KL(q(z_0|y) ‖ N(0, I))`; FM: 0.
    pub kl: f64,
}

impl ContLoss {
    /// The whole objective.
    pub fn total(&self) -> f64 {
        self.l2 + self.ce + self.kl
    }
}

/// A checkpoint's configuration, string metadata and tensors by name.
pub type ContCheckpoint = io::Checkpoint<ContConfig>;

/// A NoProp-CT or NoProp-FM model: the shared network, the classifier, the
/// class embedding, the learnable schedule (CT) and one Adam (coupled L2)
/// over all of them.
pub struct NoPropCont {
    /// The configuration.
    pub config: ContConfig,
    net: CtNet,
    /// `p̂_θout` (CT always; FM with the anchor CE).
    pub classifier: OutputClassifier,
    /// `W_Embed`.
    pub embedding: ClassEmbedding,
    /// The learnable schedule (CT only).
    pub schedule: Option<LearnableSchedule>,
    opt: Adam,
    /// Mini-batches trained so far (the key of every random draw).
    pub step: u64,
}

impl std::fmt::Debug for NoPropCont {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoPropCont")
            .field("config", &self.config)
            .field("step", &self.step)
            .finish()
    }
}

impl NoPropCont {
    /// Build a model; `embedding` must match `config.embedding`.
    pub fn new(config: ContConfig, embedding: ClassEmbedding) -> Result<Self> {
        if embedding.kind != config.embedding
            || embedding.classes() != config.classes
            || embedding.dim() != config.embed_dim()
        {
            return Err(Error::Config {
                what: format!(
                    "embedding {} ({}×{}) does not match the config ({} with {} classes, d = {})",
                    embedding.kind,
                    embedding.classes(),
                    embedding.dim(),
                    config.embedding,
                    config.classes,
                    config.embed_dim()
                ),
            });
        }
        if !(config.fm_sigma >= 0.0 && config.fm_sigma.is_finite()) {
            return Err(Error::Config {
                what: format!("FM σ = {} must be ≥ 0", config.fm_sigma),
            });
        }
        if config.method == ContMethod::Ct && config.anchor_ce {
            return Err(Error::Config {
                what: "the anchor cross-entropy (Eq. 13) is an FM term".into(),
            });
        }
        let d = config.embed_dim();
        let net = CtNet::new(config.image, config.classes, d, config.seed)?;
        let schedule = match config.method {
            ContMethod::Ct => Some(LearnableSchedule::new(
                config.seed,
                stream(Purpose::Schedule, 0),
            )?),
            ContMethod::Fm => None,
        };
        Ok(NoPropCont {
            classifier: OutputClassifier::new(
                d,
                config.classes,
                ClassifierKind::Softmax,
                config.seed,
            ),
            opt: Adam::adam(config.lr, config.weight_decay),
            net,
            embedding,
            schedule,
            config,
            step: 0,
        })
    }

    /// The shared network.
    pub fn net_mut(&mut self) -> &mut CtNet {
        &mut self.net
    }

    /// Trainable scalars of the network (Table 5's CT column: excludes
    /// `W_Embed`, the classifier and the schedule).
    pub fn num_params(&mut self) -> usize {
        self.net.num_params()
    }

    fn schedule(&self) -> Result<&LearnableSchedule> {
        self.schedule.as_ref().ok_or_else(|| Error::Config {
            what: "NoProp-FM has no noise schedule".into(),
        })
    }

    fn check_finite(&self, epoch: usize, loss: &ContLoss) -> Result<()> {
        for (term, value) in [("L2", loss.l2), ("cross-entropy", loss.ce), ("KL", loss.kl)] {
            if !value.is_finite() {
                return Err(Error::NonFiniteLoss {
                    block: 1,
                    epoch,
                    step: self.step,
                    term,
                    value,
                });
            }
        }
        Ok(())
    }

    /// One mini-batch of Algorithm 2 (CT) or Algorithm 3 (FM) and one Adam
    /// step of every trainable parameter. Advances [`NoPropCont::step`].
    pub fn train_batch(&mut self, x: &Tensor, labels: &[usize], epoch: usize) -> Result<ContLoss> {
        if x.rank() != 4 || x.dim(0) != labels.len() || labels.is_empty() {
            return Err(Error::Config {
                what: format!(
                    "a batch needs images [B, C, H, W] and B labels, got {:?} and {}",
                    x.shape(),
                    labels.len()
                ),
            });
        }
        let loss = self.accumulate_grads(x, labels)?;
        self.check_finite(epoch, &loss)?;
        let mut params: Vec<ParamMut<'_>> = noprop_nn::prefixed("net", self.net.params());
        if self.config.method == ContMethod::Ct || self.config.anchor_ce {
            params.extend(self.classifier.params());
        }
        if let Some(p) = self.embedding.param() {
            params.push(p);
        }
        if let Some(s) = self.schedule.as_mut() {
            let (value, grad) = s.param_and_grad();
            params.push(ParamMut {
                name: "schedule.params".into(),
                value,
                grad,
            });
        }
        self.opt.step(params)?;
        self.net.zero_grad();
        for p in self.classifier.params() {
            p.grad.fill(0.0);
        }
        self.embedding.zero_grad();
        if let Some(s) = self.schedule.as_mut() {
            s.zero_grad();
        }
        self.step += 1;
        Ok(loss)
    }

    /// The loss of one mini-batch at the current step (same random draws as
    /// [`NoPropCont::train_batch`]), with its gradients *added* to every
    /// accumulator (network, classifier, `W_Embed`, schedule) and no update:
    /// the seam for gradient checks and for summing gradients across workers.
    pub fn accumulate_grads(&mut self, x: &Tensor, labels: &[usize]) -> Result<ContLoss> {
        match self.config.method {
            ContMethod::Ct => self.ct_grads(x, labels),
            ContMethod::Fm => self.fm_grads(x, labels),
        }
    }

    /// Convert the network, classifier and embedding (values and gradients)
    /// to `dtype`; noise is drawn in the embedding's dtype. `F64` is for
    /// finite-difference checks; training and checkpoints use `F32`.
    pub fn to_dtype(&mut self, dtype: DType) {
        for p in self.net.params() {
            *p.value = p.value.to_dtype(dtype);
            *p.grad = p.grad.to_dtype(dtype);
        }
        noprop_nn::Module::to_dtype(&mut self.classifier.fc, dtype);
        self.embedding.weight = self.embedding.weight.to_dtype(dtype);
        *self.embedding.grad_mut() = self.embedding.grad_mut().to_dtype(dtype);
    }

    /// Eq. (9) of arXiv 2503.24322 (Algorithm 2, Eq. 62), gradients into
    /// every accumulator: `L = CE(f_out(z_1), y) + KL(q(z_0|y) ‖ N(0, I)) +
    /// (η/2)·SNR′(t)·‖û_θ(z_t, x, t) − u_y‖²`, batch means, `t ~ U(0, 1)`,
    /// `z_t ~ N(√ᾱ(t)u_y, (1 − ᾱ(t))I)` reparameterised (so the schedule gets
    /// gradients through `ᾱ(t)`, `ᾱ(1)`, `ᾱ(0)` and `SNR′(t)`).
    fn ct_grads(&mut self, x: &Tensor, labels: &[usize]) -> Result<ContLoss> {
        let (seed, step, eta) = (self.config.seed, self.step, self.config.eta);
        let b = labels.len();
        let bf = b as f64;
        let u = self.embedding.lookup(labels)?;
        let d = u.dim(1);
        let ts = ops::rand_uniform(
            &[b],
            DType::F64,
            &mut RngStream::new(seed, stream(Purpose::Time, step)),
        )?
        .to_vec_f64();
        let eps_t = ops::randn(
            &[b, d],
            u.dtype(),
            &mut RngStream::new(seed, stream(Purpose::Zt, step)),
        )?;
        let eps_1 = ops::randn(
            &[b, d],
            u.dtype(),
            &mut RngStream::new(seed, stream(Purpose::Z1, step)),
        )?;
        let sched = self.schedule()?;
        let ats: Vec<_> = ts.iter().map(|&t| sched.at(t)).collect();
        let (ab1, ab0) = (sched.alpha_bar(1.0), sched.alpha_bar(0.0));
        let ab: Vec<f64> = ats.iter().map(|a| a.alpha_bar).collect();
        let z_t = noisy_latent_rows(&u, &ab, &eps_t)?;

        // The L2 term through the network.
        self.net.set_rng_key(stream(Purpose::Dropout, step));
        let logits = self.net.forward(x, &z_t, &ts, Mode::Train)?;
        let p = ops::softmax(&logits)?;
        let w = &self.embedding.weight;
        let u_hat = ops::matmul(&p, Transpose::No, w, Transpose::No)?;
        let diff = ops::sub(&u_hat, &u)?;
        let sq = row_dots(&diff, &diff)?;
        let l2 = ats
            .iter()
            .zip(&sq)
            .map(|(a, s)| 0.5 * eta * a.snr_prime * s)
            .sum::<f64>()
            / bf;
        let wts: Vec<f64> = ats.iter().map(|a| eta * a.snr_prime / bf).collect();
        let du_hat = scale_rows(&diff, &wts)?;
        let dp = ops::matmul(&du_hat, Transpose::No, w, Transpose::Yes)?;
        let dlogits = ops::softmax_backward(&p, &dp)?;
        let dz = self.net.backward(&dlogits)?;

        // The classifier on z_1 ~ q(z_1|y).
        let z1 = noisy_latent(&u, ab1, &eps_1)?;
        let lc = self.classifier.logits(&z1, &self.embedding, Mode::Train)?;
        let (ce, dlc) = ops::softmax_cross_entropy(&lc, labels)?;
        let g = self.classifier.backward(&dlc, &self.embedding)?;

        // KL(q(z_0|y) ‖ N(0, I)) with ᾱ_0 = ᾱ(0).
        let usq = row_dots(&u, &u)?;
        let kl = usq.iter().map(|&s| kl_z0(ab0, s, d)).sum::<f64>() / bf;
        let d_ab0 = usq.iter().map(|&s| kl_z0_dalpha(ab0, s, d)).sum::<f64>() / bf;

        // Schedule gradients: z = √ᾱ·u + √(1−ᾱ)·ε ⇒ ∂z/∂ᾱ = u/(2√ᾱ) − ε/(2√(1−ᾱ)).
        let dzu = row_dots(&dz, &u)?;
        let dze = row_dots(&dz, &eps_t)?;
        let mut times = ts.clone();
        let mut d_ab: Vec<f64> = (0..b)
            .map(|i| dzu[i] / (2.0 * ab[i].sqrt()) - dze[i] / (2.0 * (1.0 - ab[i]).sqrt()))
            .collect();
        let mut d_snrp: Vec<f64> = sq.iter().map(|s| 0.5 * eta * s / bf).collect();
        let d_ab1 = ops::dot(&g.dz, &u)? / (2.0 * ab1.sqrt())
            - ops::dot(&g.dz, &eps_1)? / (2.0 * (1.0 - ab1).sqrt());
        times.extend([1.0, 0.0]);
        d_ab.extend([d_ab1, d_ab0]);
        d_snrp.extend([0.0, 0.0]);
        if let Some(s) = self.schedule.as_mut() {
            s.accumulate_grad(&times, &d_ab, &d_snrp)?;
        }

        // W_Embed: output û = p·W, target u_y, noisy inputs z_t and z_1, and the KL term.
        if self.embedding.trainable() {
            let mut dw = ops::matmul(&p, Transpose::Yes, &du_hat, Transpose::No)?;
            let sab: Vec<f64> = ab.iter().map(|a| a.sqrt()).collect();
            let ones = vec![-1.0; b];
            let mut drow = combine_rows(&ones, &du_hat, &sab, &dz)?;
            ops::axpy(&mut drow, ab1.sqrt(), &g.dz)?;
            ops::axpy(&mut drow, ab0 / bf, &u)?;
            ops::add_assign(
                &mut dw,
                &ops::scatter_add_rows(&drow, labels, self.config.classes)?,
            )?;
            ops::add_assign(self.embedding.grad_mut(), &dw)?;
        }
        Ok(ContLoss { l2, ce, kl })
    }

    /// Eq. (11) of arXiv 2503.24322 (Algorithm 3): `‖v̂_θ(z_t, x, t) − (z_1 − z_0)‖²`
    /// with `z_1 = u_y`, `z_0 ~ N(0, I)`, `z_t` on the path of Eq. 10; with
    /// the anchor on, plus Eq. 13's `−log p̂_θout(y | z̃_1)`,
    /// `z̃_1 = z_t + (1 − t)·v̂` (Eq. 12). Gradients into every accumulator.
    fn fm_grads(&mut self, x: &Tensor, labels: &[usize]) -> Result<ContLoss> {
        let (seed, step) = (self.config.seed, self.step);
        let b = labels.len();
        let bf = b as f64;
        let u = self.embedding.lookup(labels)?;
        let d = u.dim(1);
        let ts = ops::rand_uniform(
            &[b],
            DType::F64,
            &mut RngStream::new(seed, stream(Purpose::Time, step)),
        )?
        .to_vec_f64();
        let z0 = ops::randn(
            &[b, d],
            u.dtype(),
            &mut RngStream::new(seed, stream(Purpose::FmZ0, step)),
        )?;
        let eps = if self.config.fm_sigma > 0.0 {
            Some(ops::randn(
                &[b, d],
                u.dtype(),
                &mut RngStream::new(seed, stream(Purpose::FmEps, step)),
            )?)
        } else {
            None
        };
        let z_t = fm_path(&z0, &u, &ts, self.config.fm_sigma, eps.as_ref())?;
        self.net.set_rng_key(stream(Purpose::Dropout, step));
        let logits = self.net.forward(x, &z_t, &ts, Mode::Train)?;
        let w = &self.embedding.weight;
        let v = ops::matmul(&logits, Transpose::No, w, Transpose::No)?;
        let target = ops::sub(&u, &z0)?;
        let diff = ops::sub(&v, &target)?;
        let l2 = ops::sum_sq(&diff)? / bf;
        let d_mse = ops::scale(&diff, 2.0 / bf)?;
        let mut dv = d_mse.clone();
        let mut ce = 0.0;
        let mut dz_direct = None;
        if self.config.anchor_ce {
            let zt1 = fm_extrapolate(&z_t, &v, &ts)?;
            let lc = self.classifier.logits(&zt1, &self.embedding, Mode::Train)?;
            let (c, dlc) = ops::softmax_cross_entropy(&lc, labels)?;
            ce = c;
            let g = self.classifier.backward(&dlc, &self.embedding)?;
            let om: Vec<f64> = ts.iter().map(|t| 1.0 - t).collect();
            ops::add_assign(&mut dv, &scale_rows(&g.dz, &om)?)?;
            dz_direct = Some(g.dz);
        }
        let dlogits = ops::matmul(&dv, Transpose::No, w, Transpose::Yes)?;
        let mut dz = self.net.backward(&dlogits)?;
        if let Some(dd) = dz_direct {
            ops::add_assign(&mut dz, &dd)?;
        }
        if self.embedding.trainable() {
            // v = logits·W: ∂W += logitsᵀ·∂v; target u_y: −∂mse; z_t = t·u_y + …: t·∂z_t.
            let mut dw = ops::matmul(&logits, Transpose::Yes, &dv, Transpose::No)?;
            let neg = vec![-1.0; b];
            let drow = combine_rows(&neg, &d_mse, &ts, &dz)?;
            ops::add_assign(
                &mut dw,
                &ops::scatter_add_rows(&drow, labels, self.config.classes)?,
            )?;
            ops::add_assign(self.embedding.grad_mut(), &dw)?;
        }
        Ok(ContLoss { l2, ce, kl: 0.0 })
    }

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
            ops::randn(&[b, d], self.embedding.weight.dtype(), &mut rng)?
        } else {
            Tensor::zeros(&[b, d], self.embedding.weight.dtype())
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
                        Some(ops::randn(&[b, d], w.dtype(), &mut rng)?)
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
                let wn: Vec<f64> = row_dots(w, w)?.iter().map(|v| -v).collect();
                let wn = Tensor::from_vec(wn, &[w.dim(0)])?.to_dtype(s.dtype());
                ops::add_bias_rows(&mut s, &wn)?;
                argmax_rows(&s)
            }
        }
    }

    /// Every tensor of the model and optimiser, named for a checkpoint.
    pub fn state_tensors(&mut self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = noprop_nn::prefixed("net", self.net.params())
            .into_iter()
            .map(|p| (p.name, p.value.clone()))
            .collect();
        out.extend(
            self.classifier
                .params()
                .into_iter()
                .map(|p| (p.name, p.value.clone())),
        );
        out.push(("embed.weight".into(), self.embedding.weight.clone()));
        if let Some(s) = self.schedule.as_mut() {
            out.push(("schedule.params".into(), s.param_and_grad().0.clone()));
        }
        out.extend(
            self.opt
                .state()
                .into_iter()
                .map(|(n, v)| (format!("opt.{n}"), v)),
        );
        out.push(("step".into(), Tensor::scalar(self.step as f64, DType::F64)));
        out
    }

    /// Restore from tensors written by [`NoPropCont::state_tensors`].
    pub fn load_state_tensors(
        &mut self,
        path: &Path,
        tensors: HashMap<String, Tensor>,
    ) -> Result<()> {
        let missing = |k: &str| Error::Checkpoint {
            path: path.to_path_buf(),
            what: format!("missing tensor `{k}`"),
        };
        let take =
            |k: &str, dst: &mut Tensor| -> Result<()> { Ok(io::restore(path, &tensors, k, dst)?) };
        for p in noprop_nn::prefixed("net", self.net.params()) {
            take(&p.name, p.value)?;
        }
        for p in self.classifier.params() {
            take(&p.name, p.value)?;
        }
        take("embed.weight", &mut self.embedding.weight)?;
        if let Some(s) = self.schedule.as_mut() {
            take("schedule.params", s.param_and_grad().0)?;
            let v = s.params();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    what: "non-finite schedule parameters".into(),
                });
            }
        }
        self.opt.load_state(
            tensors
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("opt.").map(|n| (n.to_string(), v.clone())))
                .collect(),
        )?;
        self.step = tensors.get("step").ok_or_else(|| missing("step"))?.item()? as u64;
        Ok(())
    }

    /// Write an atomic safetensors checkpoint with `metadata` (the config is
    /// added as `config`, the method as `method`).
    pub fn save(&mut self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        let tensors = self.state_tensors();
        let method = self.config.method.name();
        Ok(io::save_checkpoint(
            path,
            &tensors,
            &self.config,
            method,
            metadata,
        )?)
    }

    /// Read a checkpoint's config and metadata without building a model.
    pub fn read_config(path: &Path) -> Result<ContCheckpoint> {
        Ok(io::load_checkpoint(path)?)
    }

    /// Rebuild a model from a checkpoint written by [`NoPropCont::save`].
    pub fn load(path: &Path) -> Result<(Self, HashMap<String, String>)> {
        let (cfg, meta, tensors) = Self::read_config(path)?;
        let emb = tensors
            .get("embed.weight")
            .ok_or_else(|| Error::Checkpoint {
                path: path.to_path_buf(),
                what: "missing tensor `embed.weight`".into(),
            })?;
        let embedding = ClassEmbedding::from_saved(cfg.embedding, emb)?;
        let mut model = NoPropCont::new(cfg, embedding)?;
        model.load_state_tensors(path, tensors)?;
        Ok((model, meta))
    }
}
