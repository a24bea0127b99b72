//! NoProp-DT: T independent denoising blocks, Eq. 8 loss, training in the
//! paper's block-outer order or the default batch-outer order, stochastic
//! inference by Eq. 3, and checkpoints (docs/DECISIONS.md §§ 1–7, note B).

use noprop_nn::layers::mix_stream;
use noprop_nn::optim::{Adam, Optimizer};
use noprop_nn::{Mode, ParamMut};
use noprop_schedules::{noisy_latent, CosineSchedule};
use noprop_tensor::ops::{self, Transpose};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{DType, Device, Tensor};
use rayon::prelude::*;

use crate::block::DenoiseBlock;
use crate::classifier::OutputClassifier;
use crate::embedding::ClassEmbedding;
use crate::{Error, Result};

mod checkpoint;
mod config;

pub use checkpoint::CheckpointContents;
pub use config::{DtConfig, EmbedGrad, Order};

/// Random-stream purposes; every draw is keyed by `(seed, purpose, t, step)`.
#[derive(Clone, Copy)]
#[repr(u64)]
enum Purpose {
    ZPrev = 1,
    ZT = 2,
    Dropout = 3,
    Inference = 4,
}

fn stream(purpose: Purpose, t: usize, step: u64) -> u64 {
    mix_stream(mix_stream(purpose as u64, t as u64), step)
}

/// Losses of one block update (Eq. 8 terms, batch means).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct BlockLoss {
    /// `(Tη/2)·(SNR(t) − SNR(t−1))·mean‖û − u_y‖²`.
    pub l2: f64,
    /// Cross-entropy of the classifier on `z_T ~ q(z_T|y)`.
    pub ce: f64,
    /// `KL(q(z_0|y) ‖ N(0, I))`, batch mean.
    pub kl: f64,
}

impl BlockLoss {
    /// The full Eq. 8 estimate for this block.
    pub fn total(&self) -> f64 {
        self.l2 + self.ce + self.kl
    }
}

/// What a block's own update leaves for the shared step (what the
/// block-parallel schedule exchanges between ranks).
#[derive(Clone, Debug)]
pub struct BlockOut {
    /// The block's Eq. 8 L2 term (batch mean).
    pub loss_l2: f64,
    /// `∂L/∂W_Embed` from this block's L2 term (learned embeddings only).
    pub dembed: Option<Tensor>,
}

/// A NoProp-DT model: `T` blocks with their own AdamW, the classifier and the
/// class embedding with one shared AdamW.
///
/// The only state that crosses blocks is the shared part (classifier,
/// `W_Embed`): a block's step borrows its own parameters mutably and the
/// shared ones immutably, so no gradient can flow from one block into another.
pub struct NoPropDt {
    /// The configuration.
    pub config: DtConfig,
    /// The schedule.
    pub schedule: CosineSchedule,
    blocks: Vec<DenoiseBlock>,
    block_opts: Vec<Adam>,
    /// `p̂_θout`.
    pub classifier: OutputClassifier,
    /// `W_Embed`.
    pub embedding: ClassEmbedding,
    shared_opt: Adam,
    /// Mini-batches trained so far (the key of every random draw).
    pub step: u64,
    device: Device,
    /// Run the block updates on the calling thread whatever the config says
    /// (data-parallel training hooks every optimiser step on that thread).
    on_caller_thread: bool,
}

impl std::fmt::Debug for NoPropDt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoPropDt")
            .field("config", &self.config)
            .field("step", &self.step)
            .finish()
    }
}

impl NoPropDt {
    /// Build a model. `embedding` must match `config.embedding` (build it with
    /// [`ClassEmbedding`]'s constructors; the prototype one needs the data).
    pub fn new(config: DtConfig, embedding: ClassEmbedding) -> Result<Self> {
        if embedding.kind != config.embedding || embedding.classes() != config.classes {
            return Err(Error::Config {
                what: format!(
                    "embedding {} with {} classes does not match the config ({} with {})",
                    embedding.kind,
                    embedding.classes(),
                    config.embedding,
                    config.classes
                ),
            });
        }
        if embedding.dim() != config.embed_dim() {
            return Err(Error::Config {
                what: format!(
                    "embedding dimension {} != {}",
                    embedding.dim(),
                    config.embed_dim()
                ),
            });
        }
        let schedule = CosineSchedule::new(config.steps)?;
        let d = config.embed_dim();
        let z_grad = embedding.trainable() && config.embed_grad == EmbedGrad::All;
        let blocks = (1..=config.steps)
            .map(|t| {
                DenoiseBlock::new(
                    config.image,
                    config.conv_stack,
                    config.classes,
                    d,
                    t,
                    config.seed,
                    z_grad,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let block_opts = (0..config.steps)
            .map(|_| Adam::adamw(config.lr, config.weight_decay))
            .collect();
        Ok(NoPropDt {
            classifier: OutputClassifier::new(d, config.classes, config.classifier, config.seed),
            shared_opt: Adam::adamw(config.lr, config.weight_decay),
            schedule,
            blocks,
            block_opts,
            embedding,
            config,
            step: 0,
            device: Device::Cpu,
            on_caller_thread: false,
        })
    }

    /// Move the whole model (blocks, classifier, `W_Embed` and every
    /// optimiser state) to `device`; batches passed to the training and
    /// inference methods must then live there too.
    ///
    /// On a GPU the blocks share the device handle's stream: block updates
    /// run one after the other (the rayon-concurrent block schedule is a host
    /// feature); per-block streams are not used yet.
    pub fn to_device(&mut self, device: &Device) -> Result<()> {
        for (blk, opt) in self.blocks.iter_mut().zip(&mut self.block_opts) {
            blk.to_device(device)?;
            opt.to_device(device)?;
        }
        self.classifier.to_device(device)?;
        self.embedding.to_device(device)?;
        self.shared_opt.to_device(device)?;
        self.device = device.clone();
        Ok(())
    }

    /// Take every optimiser step of [`NoPropDt::train_batch`] on the calling
    /// thread (the sequential block schedule, bit-identical to the concurrent
    /// one), whatever `config.concurrent_blocks` says; not saved in
    /// checkpoints. Data-parallel training needs it: its gradient hook
    /// (`noprop_nn::optim::with_grad_hook`) is per thread.
    pub fn set_steps_on_caller_thread(&mut self, yes: bool) {
        self.on_caller_thread = yes;
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Block `t` (1-based).
    pub fn block_mut(&mut self, t: usize) -> &mut DenoiseBlock {
        &mut self.blocks[t - 1]
    }

    /// Number of blocks `T`.
    pub fn num_blocks(&self) -> usize {
        self.blocks.len()
    }

    #[allow(clippy::too_many_arguments)]
    /// Block `t`'s own update (Eq. 8 L2 term): draws `z_{t−1} ~ q(z_{t−1}|y)`,
    /// runs the block, backpropagates *inside the block only*, and steps the
    /// block's AdamW. Reads the shared state without changing it.
    fn block_update(
        cfg: &DtConfig,
        schedule: &CosineSchedule,
        embedding: &ClassEmbedding,
        block: &mut DenoiseBlock,
        opt: &mut Adam,
        t: usize,
        step: u64,
        x: &Tensor,
        labels: &[usize],
    ) -> Result<BlockOut> {
        let b = labels.len();
        let u = embedding.lookup(labels)?;
        let d = u.dim(1);
        let mut rng = RngStream::new(cfg.seed, stream(Purpose::ZPrev, t, step));
        let eps = ops::randn_on(&u.device(), &[b, d], DType::F32, &mut rng)?;
        let ab_prev = schedule.alpha_bar(t - 1);
        let z_prev = noisy_latent(&u, ab_prev, &eps)?;
        block.set_rng_key(stream(Purpose::Dropout, t, step));
        let logits = block.forward(x, &z_prev, Mode::Train)?;
        let p = ops::softmax(&logits)?;
        let u_hat = ops::matmul(&p, Transpose::No, &embedding.weight, Transpose::No)?;
        let diff = ops::sub(&u_hat, &u)?;
        // Eq. 8: (T/2)·η·(SNR(t) − SNR(t−1))·‖û − u_y‖², batch mean.
        let w = cfg.steps as f64 / 2.0 * cfg.eta * schedule.snr_diff(t);
        let loss_l2 = w * ops::sum_sq(&diff)? / b as f64;
        let du_hat = ops::scale(&diff, 2.0 * w / b as f64)?;
        let dp = ops::matmul(&du_hat, Transpose::No, &embedding.weight, Transpose::Yes)?;
        let dlogits = ops::softmax_backward(&p, &dp)?;
        let dz = block.backward(&dlogits)?;
        opt.step(block.params())?;
        block.zero_grad();
        let dembed = if embedding.trainable() {
            // Output: û = p·W → ∂W += pᵀ·∂û.
            let mut dw = ops::matmul(&p, Transpose::Yes, &du_hat, Transpose::No)?;
            if cfg.embed_grad == EmbedGrad::All {
                // Target u_y: ∂/∂u_y of ‖û − u_y‖² is −∂û.
                let mut dt = ops::scale(&du_hat, -1.0)?;
                // Noisy input z_{t−1} = √ᾱ_{t−1}·u_y + …: ∂u_y += √ᾱ_{t−1}·∂z.
                if dz.numel() > 0 && ab_prev > 0.0 {
                    ops::axpy(&mut dt, ab_prev.sqrt(), &dz)?;
                }
                ops::add_assign(&mut dw, &ops::scatter_add_rows(&dt, labels, cfg.classes)?)?;
            }
            Some(dw)
        } else {
            None
        };
        Ok(BlockOut { loss_l2, dembed })
    }

    /// The shared step that follows block `t`'s update: classifier CE on
    /// `z_T ~ q(z_T|y)`, the KL term, and one AdamW step of θ_out and `W_Embed`
    /// on block `t`'s loss.
    fn shared_update(&mut self, t: usize, x_labels: &[usize], out: BlockOut) -> Result<BlockLoss> {
        let cfg = &self.config;
        let b = x_labels.len();
        let u = self.embedding.lookup(x_labels)?;
        let d = u.dim(1);
        let big_t = cfg.steps;
        let ab_t = self.schedule.alpha_bar(big_t);
        let mut rng = RngStream::new(cfg.seed, stream(Purpose::ZT, t, self.step));
        let eps = ops::randn_on(&self.device, &[b, d], DType::F32, &mut rng)?;
        let z_t = noisy_latent(&u, ab_t, &eps)?;
        let logits = self.classifier.logits(&z_t, &self.embedding, Mode::Train)?;
        let (ce, dlogits) = ops::softmax_cross_entropy(&logits, x_labels)?;
        let g = self.classifier.backward(&dlogits, &self.embedding)?;
        // KL(q(z_0|y) ‖ N(0,I)) = ½[ᾱ_0‖u‖² − dᾱ_0 − d ln(1−ᾱ_0)], batch mean.
        let ab0 = self.schedule.alpha_bar(0);
        // ‖u_i‖² on `u`'s device; the `B` squared norms come to the host for
        // the KL value (a logged loss term: its gradient below is a tensor op).
        let usq = ops::row_dots(&u, &u)?.try_to_vec_f64()?;
        let kl = usq.iter().map(|&s| self.schedule.kl_z0(s, d));
        let kl: f64 = if ab0 == 0.0 {
            0.0
        } else {
            kl.sum::<f64>() / b as f64
        };
        if self.embedding.trainable() {
            let mut dw = out
                .dembed
                .unwrap_or_else(|| self.embedding.weight.zeros_like());
            if self.config.embed_grad == EmbedGrad::All {
                // Classifier input z_T = √ᾱ_T·u_y + …, and the KL term ½ᾱ_0‖u_y‖²/B.
                let mut du = ops::scale(&g.dz, ab_t.sqrt())?;
                if ab0 > 0.0 {
                    ops::axpy(&mut du, ab0 / b as f64, &u)?;
                }
                ops::add_assign(
                    &mut dw,
                    &ops::scatter_add_rows(&du, x_labels, self.config.classes)?,
                )?;
                if let Some(de) = g.dembed {
                    ops::add_assign(&mut dw, &de)?;
                }
            }
            ops::add_assign(self.embedding.grad_mut(), &dw)?;
        }
        let mut params: Vec<ParamMut<'_>> = self.classifier.params();
        if let Some(p) = self.embedding.param() {
            params.push(p);
        }
        self.shared_opt.step(params)?;
        for p in self.classifier.params() {
            p.grad.fill(0.0);
        }
        self.embedding.zero_grad();
        Ok(BlockLoss {
            l2: out.loss_l2,
            ce,
            kl,
        })
    }

    fn check_finite(&self, t: usize, epoch: usize, loss: &BlockLoss) -> Result<()> {
        for (term, value) in [("L2", loss.l2), ("cross-entropy", loss.ce), ("KL", loss.kl)] {
            if !value.is_finite() {
                return Err(Error::NonFiniteLoss {
                    block: t,
                    epoch,
                    step: self.step,
                    term,
                    value,
                });
            }
        }
        Ok(())
    }

    /// One mini-batch in `--order batch`: for t = 1…T, block t's update and
    /// one shared step. With a fixed embedding and `concurrent_blocks`, the T
    /// block updates run concurrently first (they read no trainable shared
    /// state) and the T shared steps follow in order — bit-identical to the
    /// sequential schedule. Returns the per-block losses.
    pub fn train_batch(
        &mut self,
        x: &Tensor,
        labels: &[usize],
        epoch: usize,
    ) -> Result<Vec<BlockLoss>> {
        let t_steps = self.config.steps;
        let mut losses = Vec::with_capacity(t_steps);
        if !self.embedding.trainable()
            && self.config.concurrent_blocks
            && !self.on_caller_thread
            && self.device.is_cpu()
            && rayon::current_num_threads() > 1
        {
            let (cfg, schedule, embedding, step) =
                (&self.config, &self.schedule, &self.embedding, self.step);
            let outs: Vec<Result<BlockOut>> = self
                .blocks
                .par_iter_mut()
                .zip(self.block_opts.par_iter_mut())
                .enumerate()
                .map(|(i, (blk, opt))| {
                    Self::block_update(cfg, schedule, embedding, blk, opt, i + 1, step, x, labels)
                })
                .collect();
            for (i, out) in outs.into_iter().enumerate() {
                let loss = self.shared_update(i + 1, labels, out?)?;
                self.check_finite(i + 1, epoch, &loss)?;
                losses.push(loss);
            }
        } else {
            for t in 1..=t_steps {
                losses.push(self.train_block(t, x, labels, epoch)?);
            }
        }
        self.step += 1;
        Ok(losses)
    }

    /// The block-parallel schedule's first half: the updates of blocks
    /// `owned` (1-based, a sub-range of `1..=T`) on this mini-batch, run
    /// concurrently on the rayon pool (one after the other on a GPU), every
    /// block reading the shared state as it stands at the start of the
    /// mini-batch. Returns their outputs in
    /// block order; the caller gathers all T of them (from every rank) and
    /// passes them to [`NoPropDt::shared_steps`].
    ///
    /// With a fixed (one-hot) embedding no block reads trainable shared
    /// state, so the pair is bit-identical to [`NoPropDt::train_batch`]
    /// whatever the split of the blocks; with a learned `W_Embed` every block
    /// reads the embedding of the mini-batch start (up to T − 1 shared steps
    /// stale), the same for every split.
    pub fn update_blocks(
        &mut self,
        owned: std::ops::Range<usize>,
        x: &Tensor,
        labels: &[usize],
    ) -> Result<Vec<BlockOut>> {
        if owned.start == 0 || owned.end > self.config.steps + 1 || owned.start > owned.end {
            return Err(Error::Config {
                what: format!(
                    "blocks {}..{} are outside 1..={}",
                    owned.start,
                    owned.end.saturating_sub(1),
                    self.config.steps
                ),
            });
        }
        let (cfg, schedule, embedding, step) =
            (&self.config, &self.schedule, &self.embedding, self.step);
        let lo = owned.start - 1;
        let hi = owned.end - 1;
        let update = |(i, (blk, opt)): (usize, (&mut DenoiseBlock, &mut Adam))| {
            Self::block_update(
                cfg,
                schedule,
                embedding,
                blk,
                opt,
                lo + i + 1,
                step,
                x,
                labels,
            )
        };
        if !self.device.is_cpu() {
            // On a GPU the blocks share the model's stream (and its cuBLAS
            // handle): one after the other, as in `train_batch`.
            return self.blocks[lo..hi]
                .iter_mut()
                .zip(self.block_opts[lo..hi].iter_mut())
                .enumerate()
                .map(update)
                .collect();
        }
        self.blocks[lo..hi]
            .par_iter_mut()
            .zip(self.block_opts[lo..hi].par_iter_mut())
            .enumerate()
            .map(update)
            .collect()
    }

    /// The block-parallel schedule's second half: the T shared steps of the
    /// mini-batch in block order (block `t`'s classifier CE and KL terms plus
    /// its `∂L/∂W_Embed`, one shared AdamW step each — docs/DECISIONS.md § 6),
    /// then the step counter advances. `outs` are all T blocks' outputs of
    /// [`NoPropDt::update_blocks`], in block order.
    pub fn shared_steps(
        &mut self,
        outs: Vec<BlockOut>,
        labels: &[usize],
        epoch: usize,
    ) -> Result<Vec<BlockLoss>> {
        if outs.len() != self.config.steps {
            return Err(Error::Config {
                what: format!(
                    "{} block outputs for T = {} blocks",
                    outs.len(),
                    self.config.steps
                ),
            });
        }
        let mut losses = Vec::with_capacity(outs.len());
        for (i, out) in outs.into_iter().enumerate() {
            let loss = self.shared_update(i + 1, labels, out)?;
            self.check_finite(i + 1, epoch, &loss)?;
            losses.push(loss);
        }
        self.step += 1;
        Ok(losses)
    }

    /// Block `t`'s update followed by one shared step (the unit of both
    /// orders). Does not advance [`NoPropDt::step`]; in `--order paper` the
    /// caller advances it once per mini-batch.
    pub fn train_block(
        &mut self,
        t: usize,
        x: &Tensor,
        labels: &[usize],
        epoch: usize,
    ) -> Result<BlockLoss> {
        if t == 0 || t > self.config.steps {
            return Err(Error::Config {
                what: format!("block index {t} is outside 1..={}", self.config.steps),
            });
        }
        let out = Self::block_update(
            &self.config,
            &self.schedule,
            &self.embedding,
            &mut self.blocks[t - 1],
            &mut self.block_opts[t - 1],
            t,
            self.step,
            x,
            labels,
        )?;
        let loss = self.shared_update(t, labels, out)?;
        self.check_finite(t, epoch, &loss)?;
        Ok(loss)
    }

    /// Stochastic inference by Eq. 3: `z_0 ~ N(0, I)`, then for t = 1…T
    /// `z_t = a_t·û_θt(z_{t−1}, x) + b_t·z_{t−1} + √c_t·ε_t`, and
    /// `ŷ = argmax p̂_θout(y | z_T)`. Noise is keyed by `(seed, key)`; with
    /// `noise = false`, `z_0 = 0` and `ε_t = 0` (the mean path).
    /// The T image paths do not depend on `z` (docs/DECISIONS.md § 17), but each block
    /// has its own, so they simply run inside each block.
    pub fn predict(&mut self, x: &Tensor, noise: bool, key: u64) -> Result<Vec<usize>> {
        let b = x.dim(0);
        let d = self.config.embed_dim();
        let mut rng = RngStream::new(self.config.seed, stream(Purpose::Inference, 0, key));
        let mut z = if noise {
            ops::randn_on(&self.device, &[b, d], DType::F32, &mut rng)?
        } else {
            Tensor::zeros_on(&[b, d], DType::F32, &self.device)?
        };
        for t in 1..=self.config.steps {
            let post = self.schedule.posterior(t);
            let logits = self.blocks[t - 1].forward(x, &z, Mode::Eval)?;
            let p = ops::softmax(&logits)?;
            let u_hat = ops::matmul(&p, Transpose::No, &self.embedding.weight, Transpose::No)?;
            let mut next = ops::add_scaled(post.a, &u_hat, post.b, &z)?;
            if noise {
                let eps = ops::randn_on(&self.device, &[b, d], DType::F32, &mut rng)?;
                ops::axpy(&mut next, post.c.sqrt(), &eps)?;
            }
            z = next;
        }
        let logits = self.classifier.logits(&z, &self.embedding, Mode::Eval)?;
        argmax_rows(&logits)
    }

    /// Trainable scalars per block (Table 5 counts: excludes `W_Embed` and the classifier).
    pub fn params_per_block(&mut self) -> usize {
        self.blocks[0].num_params()
    }
}

/// Index of the largest entry of each row (the first on ties):
/// [`ops::argmax_rows`] on `x`'s device.
pub fn argmax_rows(x: &Tensor) -> Result<Vec<usize>> {
    Ok(ops::argmax_rows(x)?)
}
