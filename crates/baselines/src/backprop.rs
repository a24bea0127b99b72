//! The back-propagation baseline of the paper's Table 1 (Eqs. 17–19;
//! docs/DECISIONS.md § 15, note I).

use std::collections::HashMap;
use std::path::Path;

use noprop_models::{
    ClassEmbedding, ClassifierKind, ConvStack, DenoiseBlock, EmbeddingKind, OutputClassifier,
};
use noprop_nn::io::{self, FromCheckpoint, HasConfig};
use noprop_nn::layers::mix_stream;
use noprop_nn::optim::{Adam, Optimizer};
use noprop_nn::state::{self, join, StateDict, StateLoader, StateVisitor};
use noprop_nn::{Mode, ParamMut};
use noprop_tensor::ops::{self, Transpose};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{DType, Device, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Configuration of the back-propagation baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackpropConfig {
    /// Image `(C, H, W)`.
    pub image: (usize, usize, usize),
    /// Number of classes.
    pub classes: usize,
    /// The image path's conv stack (Tiny ImageNet's has a fourth conv, v2).
    /// Written only when it is not three convs, so checkpoints of the other
    /// datasets keep their format, and older checkpoints read as three convs.
    #[serde(default, skip_serializing_if = "ConvStack::is_three")]
    pub conv_stack: ConvStack,
    /// The class embedding.
    pub embedding: EmbeddingKind,
    /// Number of blocks `T` (10).
    pub steps: usize,
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Decoupled weight decay (AdamW, 1e-3).
    pub weight_decay: f64,
    /// Master seed.
    pub seed: u64,
}

impl BackpropConfig {
    /// The paper's settings (Table 4: AdamW, lr 1e-3, wd 1e-3, T = 10).
    pub fn paper(
        image: (usize, usize, usize),
        classes: usize,
        embedding: EmbeddingKind,
        seed: u64,
    ) -> Self {
        BackpropConfig {
            image,
            classes,
            conv_stack: ConvStack::paper(image),
            embedding,
            steps: 10,
            lr: 1e-3,
            weight_decay: 1e-3,
            seed,
        }
    }

    /// The embedding dimension `d`.
    pub fn embed_dim(&self) -> usize {
        self.embedding.dim_for(self.image, self.classes)
    }
}

/// What one block's forward leaves for the backward pass.
struct StepCache {
    z_prev: Tensor,
    p: Tensor,
    u_hat: Tensor,
}

/// T DT blocks chained by Eq. 18 and trained end to end.
///
/// Forward (Eqs. 17–19): `z_0 ~ N(0, I)`, for t = 1…T
/// `z_t = (1 − α_t)·z_{t−1} + α_t·û_θt(z_{t−1}, x)` with
/// `û = softmax(logits)·W_Embed` and `α_t = tanh(w_t)`; `ŷ = argmax p̂_θout(y|z_T)`.
/// The loss is the cross-entropy of `p̂_θout(y | z_T)`; one AdamW updates
/// every block, every `w_t`, the classifier and (when learned) `W_Embed`.
/// `w_t` starts at `atanh(0.5)` so that `α_t = 0.5` (docs/DECISIONS.md § 15).
pub struct Backprop {
    /// The configuration.
    pub config: BackpropConfig,
    blocks: Vec<DenoiseBlock>,
    /// `w_t`, one scalar per block, as a `[T]` tensor.
    w: Tensor,
    grad_w: Tensor,
    /// `p̂_θout`.
    pub classifier: OutputClassifier,
    /// `W_Embed`.
    pub embedding: ClassEmbedding,
    opt: Adam,
    /// Mini-batches trained so far.
    pub step: u64,
    /// Where the blocks, `w_t`, classifier, `W_Embed` and the AdamW state live.
    device: Device,
}

impl std::fmt::Debug for Backprop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backprop")
            .field("config", &self.config)
            .field("step", &self.step)
            .finish()
    }
}

const Z0: u64 = 11;
const DROPOUT: u64 = 12;
const INFER: u64 = 13;

impl Backprop {
    /// Build the baseline; `embedding` must match the config.
    pub fn new(config: BackpropConfig, embedding: ClassEmbedding) -> Result<Self> {
        if embedding.kind != config.embedding || embedding.dim() != config.embed_dim() {
            return Err(Error::Config {
                what: format!(
                    "embedding {} (d = {}) does not match the config",
                    embedding.kind,
                    embedding.dim()
                ),
            });
        }
        let d = config.embed_dim();
        let blocks = (1..=config.steps)
            .map(|t| {
                DenoiseBlock::new(
                    config.image,
                    config.conv_stack,
                    config.classes,
                    d,
                    t,
                    config.seed,
                    true,
                )
            })
            .collect::<noprop_models::Result<Vec<_>>>()?;
        let w0 = 0.5f64.atanh();
        let w = Tensor::full(&[config.steps], w0, DType::F32);
        Ok(Backprop {
            grad_w: w.zeros_like(),
            w,
            classifier: OutputClassifier::new(
                d,
                config.classes,
                ClassifierKind::Softmax,
                config.seed,
            ),
            opt: Adam::adamw(config.lr, config.weight_decay),
            blocks,
            embedding,
            config,
            step: 0,
            device: Device::Cpu,
        })
    }

    /// Move the blocks, `w_t`, the classifier, `W_Embed` and the AdamW
    /// moments to `device`; every later draw and per-sample tensor is made there.
    pub fn to_device(&mut self, device: &Device) -> Result<()> {
        for blk in &mut self.blocks {
            blk.to_device(device)?;
        }
        self.w = self.w.to_device(device)?;
        self.grad_w = self.grad_w.to_device(device)?;
        self.classifier.to_device(device)?;
        self.embedding.to_device(device)?;
        self.opt.to_device(device)?;
        self.device = device.clone();
        Ok(())
    }

    /// The `T` gates `w_t` on the host: scalars that set the coefficients
    /// of Eq. 18's combination (one copy of `T` values per mini-batch).
    fn gates(&self) -> Result<Vec<f64>> {
        Ok(self.w.try_to_vec_f64()?)
    }

    /// `α_t = tanh(w_t)` for `t ∈ 1..=T`.
    pub fn alpha(&self, t: usize) -> f64 {
        self.w.to_vec_f64()[t - 1].tanh()
    }

    fn z0(&self, b: usize, key: u64) -> Result<Tensor> {
        let mut rng = RngStream::new(self.config.seed, mix_stream(Z0, key));
        Ok(ops::randn_on(
            &self.device,
            &[b, self.config.embed_dim()],
            DType::F32,
            &mut rng,
        )?)
    }

    /// Forward through the chain; returns `z_T` and, in training, the caches.
    ///
    /// Only the label path and head of block t read `z_{t−1}`; the T image
    /// paths read `x` alone, so on the CPU they run first, side by side (one
    /// block per rayon task, as NoProp-DT trains its blocks). Every kernel's
    /// work split depends on its shape only, so the numbers are those of
    /// running the blocks one after the other.
    fn forward(&mut self, x: &Tensor, z0: Tensor, mode: Mode) -> Result<(Tensor, Vec<StepCache>)> {
        let mut z = z0;
        let mut caches = Vec::new();
        let w = self.gates()?;
        if mode == Mode::Train {
            for (i, blk) in self.blocks.iter_mut().enumerate() {
                blk.set_rng_key(mix_stream(mix_stream(DROPOUT, i as u64 + 1), self.step));
            }
        }
        let image = |blk: &mut DenoiseBlock| -> Result<Tensor> { Ok(blk.forward_image(x, mode)?) };
        let fxs: Vec<Tensor> = if self.device.is_cpu() {
            self.blocks
                .par_iter_mut()
                .map(image)
                .collect::<Result<_>>()?
        } else {
            self.blocks.iter_mut().map(image).collect::<Result<_>>()?
        };
        for (i, (blk, fx)) in self.blocks.iter_mut().zip(fxs).enumerate() {
            let alpha = w[i].tanh();
            let logits = blk.forward_head(&fx, &z, mode)?;
            let p = ops::softmax(&logits)?;
            let u_hat = ops::matmul(&p, Transpose::No, &self.embedding.weight, Transpose::No)?;
            let next = ops::add_scaled(1.0 - alpha, &z, alpha, &u_hat)?;
            if mode == Mode::Train {
                caches.push(StepCache {
                    z_prev: z,
                    p,
                    u_hat,
                });
            }
            z = next;
        }
        Ok((z, caches))
    }

    /// One end-to-end step on a mini-batch; returns the cross-entropy.
    pub fn train_batch(&mut self, x: &Tensor, labels: &[usize], epoch: usize) -> Result<f64> {
        let b = labels.len();
        let z0 = self.z0(b, self.step)?;
        let (z_t, caches) = self.forward(x, z0, Mode::Train)?;
        let logits = self.classifier.logits(&z_t, &self.embedding, Mode::Train)?;
        let (ce, dlogits) = ops::softmax_cross_entropy(&logits, labels)?;
        if !ce.is_finite() {
            return Err(Error::NonFiniteLoss {
                epoch,
                step: self.step,
                value: ce,
            });
        }
        let g = self.classifier.backward(&dlogits, &self.embedding)?;
        let mut dz = g.dz;
        let w = self.gates()?;
        let mut dw = vec![0.0f64; w.len()];
        let mut dembed = self.embedding.weight.zeros_like();
        let mut dfxs: Vec<Option<Tensor>> = vec![None; caches.len()];
        for (i, c) in caches.into_iter().enumerate().rev() {
            let alpha = w[i].tanh();
            // z_t = (1−α)z_{t−1} + α·û: ∂α = Σ (û − z_{t−1})·∂z_t; ∂w = ∂α·(1 − tanh²w).
            let diff = ops::sub(&c.u_hat, &c.z_prev)?;
            dw[i] = ops::dot(&diff, &dz)? * (1.0 - alpha * alpha);
            let du_hat = ops::scale(&dz, alpha)?;
            // û = p·W: ∂W += pᵀ·∂û, ∂p = ∂û·Wᵀ, then through the softmax and the block.
            ops::gemm_into(
                &mut dembed,
                true,
                &c.p,
                Transpose::Yes,
                &du_hat,
                Transpose::No,
            )?;
            let dp = ops::matmul(
                &du_hat,
                Transpose::No,
                &self.embedding.weight,
                Transpose::Yes,
            )?;
            let dl = ops::softmax_backward(&c.p, &dp)?;
            let (dfx, dz_block) = self.blocks[i].backward_head(&dl)?;
            dfxs[i] = Some(dfx);
            let mut dz_prev = ops::scale(&dz, 1.0 - alpha)?;
            ops::add_assign(&mut dz_prev, &dz_block)?;
            dz = dz_prev;
        }
        // The image paths' backward passes, side by side as in `forward`.
        let image = |(blk, dfx): (&mut DenoiseBlock, Option<Tensor>)| -> Result<()> {
            let dfx = dfx.ok_or_else(|| Error::Config {
                what: "a block's image-path gradient is missing".into(),
            })?;
            Ok(blk.backward_image(&dfx)?)
        };
        if self.device.is_cpu() {
            self.blocks.par_iter_mut().zip(dfxs).try_for_each(image)?;
        } else {
            self.blocks.iter_mut().zip(dfxs).try_for_each(image)?;
        }
        // The T gate gradients are host scalars (each an `ops::dot`).
        self.grad_w =
            Tensor::from_vec(dw.iter().map(|&v| v as f32).collect::<Vec<_>>(), &[w.len()])?
                .to_device(&self.device)?;
        if self.embedding.trainable() {
            ops::add_assign(self.embedding.grad_mut(), &dembed)?;
        }
        let mut params: Vec<ParamMut<'_>> = Vec::new();
        for (i, blk) in self.blocks.iter_mut().enumerate() {
            params.extend(noprop_nn::prefixed(
                &format!("block{}", i + 1),
                blk.params(),
            ));
        }
        params.push(ParamMut {
            name: "alpha.w".into(),
            value: &mut self.w,
            grad: &mut self.grad_w,
        });
        params.extend(self.classifier.params());
        if let Some(p) = self.embedding.param() {
            params.push(p);
        }
        self.opt.step(params)?;
        for blk in &mut self.blocks {
            blk.zero_grad();
        }
        for p in self.classifier.params() {
            p.grad.fill(0.0);
        }
        self.embedding.zero_grad();
        self.step += 1;
        Ok(ce)
    }

    /// `argmax p̂_θout(y | z_T)` after the chain from `z_0 ~ N(0, I)` keyed by `key`.
    pub fn predict(&mut self, x: &Tensor, key: u64) -> Result<Vec<usize>> {
        let mut rng = RngStream::new(self.config.seed, mix_stream(INFER, key));
        let z0 = ops::randn_on(
            &self.device,
            &[x.dim(0), self.config.embed_dim()],
            DType::F32,
            &mut rng,
        )?;
        let (z_t, _) = self.forward(x, z0, Mode::Eval)?;
        let logits = self.classifier.logits(&z_t, &self.embedding, Mode::Eval)?;
        Ok(noprop_models::dt::argmax_rows(&logits)?)
    }

    /// Every tensor of the model and optimiser, named for a checkpoint.
    pub fn state_tensors(&mut self) -> Result<Vec<(String, Tensor)>> {
        Ok(state::state_tensors(self)?)
    }

    /// Write an atomic safetensors checkpoint (config in the metadata).
    pub fn save(&mut self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        Ok(io::save_model(self, path, metadata)?)
    }

    /// Rebuild from a checkpoint written by [`Backprop::save`].
    pub fn load(path: &Path) -> Result<(Self, HashMap<String, String>)> {
        io::load_model(path)
    }
}

/// `block{t}.…` (block `t`'s parameters and batch-norm statistics),
/// `alpha.w` (the `w_t`), `classifier.fc.…`, `embed.weight`, `opt.…` (the
/// one AdamW) and `step`.
impl StateDict for Backprop {
    fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> noprop_nn::Result<()> {
        for (i, blk) in self.blocks.iter_mut().enumerate() {
            blk.visit_state(&join(prefix, &format!("block{}", i + 1)), v)?;
        }
        v.tensor(&join(prefix, "alpha.w"), &mut self.w)?;
        self.classifier
            .visit_state(&join(prefix, "classifier"), v)?;
        self.embedding.visit_state(&join(prefix, "embed"), v)?;
        self.opt.visit_state(&join(prefix, "opt"), v)?;
        v.counter(&join(prefix, "step"), &mut self.step)
    }
}

impl HasConfig for Backprop {
    type Config = BackpropConfig;
    fn config(&self) -> &BackpropConfig {
        &self.config
    }
    fn method(&self) -> &str {
        "backprop"
    }
}

impl FromCheckpoint for Backprop {
    type Error = Error;
    fn from_config(config: BackpropConfig, tensors: &StateLoader<'_>) -> Result<Self> {
        let embedding = ClassEmbedding::from_saved(config.embedding, tensors.get("embed.weight")?)?;
        Backprop::new(config, embedding)
    }
}
