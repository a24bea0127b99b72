//! The adjoint-sensitivity neural ODE of the paper's Table 1 (Chen et al.
//! 2018; docs/DECISIONS.md §§ 16 and 17, note I).
//!
//! # The model
//!
//! `dz/dt = g_θ(z, x, t) = logits_θ(z, x, t)·W_Embed` with the CT/FM network
//! of §6.2 ([`CtNet`]) and the fixed one-hot `W_Embed`, `z_0 ~ N(0, I)`,
//! `K` fixed Euler steps on `t_k = k/K` (`h = 1/K`, 1000 in the paper, for
//! training and inference):
//!
//! `z_{k+1} = z_k + h·g_θ(z_k, x, t_k)`, and a linear classifier on `z_1 = z_K`
//! trained with cross-entropy; one AdamW over the network and the classifier.
//!
//! # The gradient: the exact discrete adjoint, with no stored trajectory
//!
//! The adjoint `a_k = ∂L/∂z_k` obeys, exactly for the Euler scheme,
//!
//! `a_K = ∂L/∂z_K`, `a_k = a_{k+1} + h·(∂g/∂z)ᵀ(z_k, t_k)·a_{k+1}`,
//! `∂L/∂θ = Σ_k h·(∂g/∂θ)ᵀ(z_k, t_k)·a_{k+1}`,
//!
//! i.e. the adjoint ODE `da/dt = −(∂g/∂z)ᵀa` (and `dθ̄/dt = −(∂g/∂θ)ᵀa`)
//! integrated backward on the same grid with the network's vector–Jacobian
//! products (docs/DECISIONS.md § 16). It needs `z_k` at every step on the way back. The
//! trajectory is **not stored** (memory is constant in `K`); each `z_k` is
//! recovered by inverting the Euler step, i.e. by solving
//!
//! `z_k = z_{k+1} − h·g_θ(z_k, t_k)`
//!
//! with the fixed-point iteration `z ← z_{k+1} − h·g_θ(z, t_k)`, started
//! from `z_{k+1} − h·g_θ(z_{k+1}, t_{k+1})` (the value just used one step
//! later; for `k = K − 1` the forward's last `g`, which makes the guess exact).
//! The map is a contraction when `h·Lip_z(g) < 1`, so the iteration
//! converges geometrically. Measured in f32 training (MNIST / Fashion-MNIST,
//! batch 128): with `K = 1000` the first guess already meets the tolerance
//! (1.0 evaluation per step), with `K = 100` about 1.4, with `K = 10`–`20`
//! about 2–3 — so a training step costs roughly one forward evaluation plus
//! one training-mode evaluation and its backward per Euler step, like
//! back-propagation through the unrolled steps, without its `O(K)` memory. It stops when the Euler residual
//! `‖z + h·g(z, t_k) − z_{k+1}‖_∞ ≤ 8ε·(1 + ‖z_{k+1}‖_∞)` (ε of the dtype),
//! when it stops shrinking, or after [`MAX_FIXED_POINT_ITERS`] evaluations;
//! the accepted point is the last one evaluated, whose training-mode
//! evaluation then gives the vector–Jacobian products. [`AdjointStats`]
//! reports the evaluations used, the largest residual, and how far the
//! reconstructed `ẑ_0` ended from the true `z_0` (which is kept: one
//! `[B, d]` tensor).
//!
//! Why not the usual continuous adjoint with a reconstructed state
//! (torchdiffeq: integrate `[z, a, θ̄]` backward with `z` stepped back by
//! `−h·g(z_{k+1}, t_{k+1})`)? That is the adjoint of a *different*
//! discretisation: its gradients differ from the gradient of the computed
//! loss by `O(h)`, so it cannot agree with back-propagation through the
//! Euler steps to 10⁻⁶. Inverting the step gives that agreement (the test
//! checks it in f64 against [`Adjoint::accumulate_grads_unrolled`], which
//! stores the trajectory) at the price of one or a few extra network
//! evaluations per step, and keeps memory constant; checkpointing would
//! store `O(√K)` states.
//!
//! # Image-path caching (docs/DECISIONS.md § 17)
//!
//! The conv image path depends on `x` only. Training runs it once per
//! mini-batch in training mode (one dropout mask for the whole trajectory —
//! the network is the same function at every step), every forward and
//! backward evaluation reuses it, the image-path gradient is summed across
//! the steps and back-propagated through the conv path once
//! ([`CtNet::image_train`], [`CtNet::finish_image`]). Inference runs the
//! image path once per image.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use noprop_models::{
    row_halves, stack_row_halves, ClassEmbedding, ConvStack, CtNet, EmbeddingKind, ImageCache,
};
use noprop_nn::io::{self, FromCheckpoint, HasConfig};
use noprop_nn::layers::{mix_stream, Linear};
use noprop_nn::optim::{Adam, Optimizer};
use noprop_nn::state::{self, join, StateDict, StateLoader, StateVisitor};
use noprop_nn::{prefixed, Mode, Module, ParamMut};
use noprop_tensor::ops::{self, FoldedRows, Transpose};
use noprop_tensor::philox::RngStream;
use noprop_tensor::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The most network evaluations spent recovering one `z_k`.
pub const MAX_FIXED_POINT_ITERS: usize = 50;

/// Configuration of the adjoint baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdjointConfig {
    /// Image `(C, H, W)`.
    pub image: (usize, usize, usize),
    /// Number of classes `m` (one-hot: `d = m`).
    pub classes: usize,
    /// The image path's conv stack (Tiny ImageNet's has a fourth conv, v2).
    /// Written only when it is not three convs, so checkpoints of the other
    /// datasets keep their format, and older checkpoints read as three convs.
    #[serde(default, skip_serializing_if = "ConvStack::is_three")]
    pub conv_stack: ConvStack,
    /// Euler steps `K` for training and inference (1000 in the paper).
    pub steps: usize,
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Decoupled weight decay (AdamW, 1e-3).
    pub weight_decay: f64,
    /// Master seed.
    pub seed: u64,
}

impl AdjointConfig {
    /// The paper's settings (Table 4: AdamW, lr 1e-3, wd 1e-3, 1000 steps).
    pub fn paper(image: (usize, usize, usize), classes: usize, seed: u64) -> Self {
        AdjointConfig {
            image,
            classes,
            conv_stack: ConvStack::paper(image),
            steps: 1000,
            lr: 1e-3,
            weight_decay: 1e-3,
            seed,
        }
    }
}

/// How the state reconstruction of the last mini-batch went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AdjointStats {
    /// Network evaluations spent recovering the `K` states (≥ `K`).
    pub evaluations: usize,
    /// Largest relative Euler residual `‖z + h·g(z) − z_{k+1}‖_∞ / (1 + ‖z_{k+1}‖_∞)` accepted.
    pub max_residual: f64,
    /// `‖ẑ_0 − z_0‖_∞`: how far the reconstruction ended from the true start.
    pub z0_drift: f64,
    /// Steps whose iteration stopped above the tolerance.
    pub unconverged: usize,
}

/// A neural ODE on the CT network trained by the discrete adjoint (see the
/// module documentation).
pub struct Adjoint {
    /// The configuration.
    pub config: AdjointConfig,
    net: CtNet,
    /// The linear classifier on `z_1`.
    pub classifier: Linear,
    /// The fixed one-hot `W_Embed`.
    pub embedding: ClassEmbedding,
    opt: Adam,
    /// Mini-batches trained so far (the key of every random draw).
    pub step: u64,
    /// The reconstruction statistics of the last mini-batch.
    pub last_stats: AdjointStats,
    /// Where the network, classifier, `W_Embed` and the AdamW state live.
    device: Device,
}

impl std::fmt::Debug for Adjoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adjoint")
            .field("config", &self.config)
            .field("step", &self.step)
            .finish()
    }
}

const Z0: u64 = 31;
const DROPOUT: u64 = 32;
const INFER: u64 = 33;

fn stream(purpose: u64, key: u64) -> u64 {
    mix_stream(mix_stream(purpose, 0xAD), key)
}

/// `‖x‖_∞` of a `[B, d]` state (NaN entries skipped, as `f64::max` does):
/// the row maxima on `x`'s device, then the `B` of them on the host — the
/// scalar that decides whether the fixed-point iteration goes on.
fn max_abs(x: &Tensor) -> Result<f64> {
    Ok(ops::row_max_abs(x)?
        .try_to_vec_f64()?
        .iter()
        .fold(0.0f64, |m, v| m.max(*v)))
}

impl Adjoint {
    /// Build the baseline (one-hot embedding, `d = m`).
    pub fn new(config: AdjointConfig) -> Result<Self> {
        if config.steps == 0 {
            return Err(Error::Config {
                what: "the adjoint ODE needs at least one Euler step".into(),
            });
        }
        let d = config.classes;
        Ok(Adjoint {
            net: CtNet::new(
                config.image,
                config.conv_stack,
                config.classes,
                d,
                config.seed,
            )?,
            classifier: Linear::new(d, config.classes, config.seed, "classifier"),
            embedding: ClassEmbedding::one_hot(config.classes),
            opt: Adam::adamw(config.lr, config.weight_decay),
            config,
            step: 0,
            last_stats: AdjointStats::default(),
            device: Device::Cpu,
        })
    }

    /// Move the network, the classifier, `W_Embed` and the AdamW moments to
    /// `device`; every later draw and per-sample tensor is made there.
    pub fn to_device(&mut self, device: &Device) -> Result<()> {
        self.net.to_device(device)?;
        self.classifier.to_device(device)?;
        self.embedding.to_device(device)?;
        self.opt.to_device(device)?;
        self.device = device.clone();
        Ok(())
    }

    /// The shared network.
    pub fn net_mut(&mut self) -> &mut CtNet {
        &mut self.net
    }

    /// Trainable scalars of the network (the CT column of Table 5).
    pub fn num_params(&mut self) -> usize {
        self.net.num_params()
    }

    /// Every parameter with its gradient, named `net.…` and `classifier.…`.
    pub fn params(&mut self) -> Vec<ParamMut<'_>> {
        let mut p = prefixed("net", self.net.params());
        p.extend(prefixed("classifier", self.classifier.params()));
        p
    }

    /// Zero every gradient.
    pub fn zero_grad(&mut self) {
        for p in self.params() {
            p.grad.fill(0.0);
        }
    }

    /// Convert parameters, gradients and `W_Embed` to `dtype` (`F64` for
    /// gradient checks; training and checkpoints use `F32`).
    pub fn to_dtype(&mut self, dtype: DType) {
        for p in self.params() {
            *p.value = p.value.to_dtype(dtype);
            *p.grad = p.grad.to_dtype(dtype);
        }
        self.embedding.weight = self.embedding.weight.to_dtype(dtype);
    }

    fn dtype(&self) -> DType {
        self.embedding.weight.dtype()
    }

    fn z0(&self, b: usize, purpose: u64, key: u64) -> Result<Tensor> {
        let mut rng = RngStream::new(self.config.seed, stream(purpose, key));
        Ok(ops::randn_on(
            &self.device,
            &[b, self.config.classes],
            self.dtype(),
            &mut rng,
        )?)
    }

    /// `g = logits·W_Embed`.
    fn velocity(&self, logits: &Tensor) -> Result<Tensor> {
        Ok(ops::matmul(
            logits,
            Transpose::No,
            &self.embedding.weight,
            Transpose::No,
        )?)
    }

    /// `K` Euler steps `z ← z + h·g(z, t_k)` from `z0` on the cached image
    /// path: the final state and the last velocity. Where
    /// [`row_halves`] splits the batch, the two row halves run the whole
    /// loop side by side, each on its own core (the rows are independent; one
    /// batch-wide step is a chain of small kernels that each made the cores
    /// wait for one another).
    fn euler(&mut self, cache: &ImageCache, z0: &Tensor, h: f64) -> Result<(Tensor, Tensor)> {
        let k_steps = self.config.steps;
        let b = z0.dim(0);
        let head = match z0.device().is_cpu() {
            // The per-layer head, not `fused_cached_head`: the fused kernel
            // sums in another order on some row counts (its 64-row halves
            // among them), so the adjoint's training numbers would move
            // (docs/PERFORMANCE.md round 10).
            true => self.net.cached_head()?,
            false => None,
        };
        let Some(head) = head else {
            // The reference loop (a device, or a label path without a shared head).
            let mut z = z0.clone();
            let mut g = z.zeros_like();
            for k in 0..k_steps {
                let logits = self.net.forward_cached(cache, &z, k as f64 * h)?;
                g = self.velocity(&logits)?;
                z = ops::add_scaled(1.0, &z, h, &g)?;
            }
            return Ok((z, g));
        };
        let w = &self.embedding.weight;
        let run = |rows: Range<usize>| -> Result<(Tensor, Tensor)> {
            let (part, mut z) = if rows.len() == b {
                (cache.clone(), z0.clone())
            } else {
                let z = ops::gather_rows(z0, &rows.clone().collect::<Vec<_>>())?;
                (cache.rows(rows)?, z)
            };
            let mut g = z.zeros_like();
            for k in 0..k_steps {
                let logits = head.logits(&part, &z, k as f64 * h)?;
                g = ops::matmul(&logits, Transpose::No, w, Transpose::No)?;
                z = ops::add_scaled(1.0, &z, h, &g)?;
            }
            Ok((z, g))
        };
        let Some([lo, hi]) = row_halves(b, &z0.device()) else {
            return run(0..b);
        };
        let (lo, hi) = rayon::join(|| run(lo), || run(hi));
        let ((z_lo, g_lo), (z_hi, g_hi)) = (lo?, hi?);
        Ok((
            stack_row_halves(&z_lo, &z_hi)?,
            stack_row_halves(&g_lo, &g_hi)?,
        ))
    }

    /// The cross-entropy of the current step's mini-batch with its gradient
    /// *added* to every accumulator by the discrete adjoint (no update; same
    /// random draws as [`Adjoint::train_batch`]). Memory is constant in `K`.
    /// A non-finite loss is returned without a backward pass.
    pub fn accumulate_grads(&mut self, x: &Tensor, labels: &[usize]) -> Result<f64> {
        let k_steps = self.config.steps;
        let h = 1.0 / k_steps as f64;
        let z0 = self.z0(labels.len(), Z0, self.step)?;
        self.net.set_rng_key(stream(DROPOUT, self.step));
        let mut cache = self.net.image_train(x)?;

        // Forward: K Euler steps, nothing kept but the current state.
        let (mut z, g_last) = self.euler(cache.eval_cache(), &z0, h)?;
        let logits = self.classifier.forward(&z, Mode::Train)?;
        let (ce, dlogits) = ops::softmax_cross_entropy(&logits, labels)?;
        if !ce.is_finite() {
            // Nothing to differentiate; the caller reports it.
            return Ok(ce);
        }
        let mut a = self.classifier.backward(&dlogits)?;

        // Backward: recover z_k from z_{k+1}, then a_k = a_{k+1} + h·J(z_k)ᵀa_{k+1}.
        let eps = match self.dtype() {
            DType::F64 => f64::EPSILON,
            _ => f32::EPSILON as f64,
        };
        let mut stats = AdjointStats::default();
        let mut g_guess = g_last;
        for k in (0..k_steps).rev() {
            let t = k as f64 * h;
            let z_next = z;
            let scale = 1.0 + max_abs(&z_next)?;
            let tol = 8.0 * eps * scale;
            let mut guess = ops::add_scaled(1.0, &z_next, -h, &g_guess)?;
            let mut prev_res = f64::INFINITY;
            let mut iters = 0;
            let (z_k, g_k) = loop {
                let logits = self.net.step_forward(&mut cache, &guess, t)?;
                let g = self.velocity(&logits)?;
                iters += 1;
                // Residual of the Euler step at `guess` = the fixed-point update's size.
                let next = ops::add_scaled(1.0, &z_next, -h, &g)?;
                let res = max_abs(&ops::sub(&next, &guess)?)?;
                if !(res > tol && res < prev_res && iters < MAX_FIXED_POINT_ITERS) {
                    stats.evaluations += iters;
                    stats.max_residual = stats.max_residual.max(res / scale);
                    if res.is_nan() || res > tol {
                        stats.unconverged += 1;
                    }
                    break (guess, g);
                }
                prev_res = res;
                guess = next;
            };
            // VJP at (z_k, t_k): dlogits = (h·a)·W_Embedᵀ.
            let ha = ops::scale(&a, h)?;
            let dl = ops::matmul(&ha, Transpose::No, &self.embedding.weight, Transpose::Yes)?;
            let dz = self.net.step_backward(&mut cache, &dl)?;
            ops::add_assign(&mut a, &dz)?;
            z = z_k;
            g_guess = g_k;
        }
        stats.z0_drift = max_abs(&ops::sub(&z, &z0)?)?;
        self.net.finish_image(cache)?;
        self.last_stats = stats;
        Ok(ce)
    }

    /// The reference gradient: back-propagation through the unrolled Euler
    /// steps with the trajectory stored (memory `O(K)`) and the full network
    /// (image path included, same dropout mask) re-run at every step. Same
    /// loss and draws as [`Adjoint::accumulate_grads`]; for tests.
    pub fn accumulate_grads_unrolled(&mut self, x: &Tensor, labels: &[usize]) -> Result<f64> {
        let k_steps = self.config.steps;
        let h = 1.0 / k_steps as f64;
        let key = stream(DROPOUT, self.step);
        let b = labels.len();
        let mut traj = vec![self.z0(b, Z0, self.step)?];
        for k in 0..k_steps {
            self.net.set_rng_key(key);
            let t = vec![k as f64 * h; b];
            let logits = self.net.forward(x, &traj[k], &t, Mode::Train)?;
            let g = self.velocity(&logits)?;
            traj.push(ops::add_scaled(1.0, &traj[k], h, &g)?);
        }
        let logits = self.classifier.forward(&traj[k_steps], Mode::Train)?;
        let (ce, dlogits) = ops::softmax_cross_entropy(&logits, labels)?;
        let mut a = self.classifier.backward(&dlogits)?;
        for k in (0..k_steps).rev() {
            self.net.set_rng_key(key);
            let t = vec![k as f64 * h; b];
            self.net.forward(x, &traj[k], &t, Mode::Train)?;
            let ha = ops::scale(&a, h)?;
            let dl = ops::matmul(&ha, Transpose::No, &self.embedding.weight, Transpose::Yes)?;
            let dz = self.net.backward(&dl)?;
            ops::add_assign(&mut a, &dz)?;
        }
        Ok(ce)
    }

    /// One mini-batch: the discrete-adjoint gradient and one AdamW step.
    /// Advances [`Adjoint::step`].
    pub fn train_batch(&mut self, x: &Tensor, labels: &[usize], epoch: usize) -> Result<f64> {
        if x.rank() != 4 || x.dim(0) != labels.len() || labels.is_empty() {
            return Err(Error::Config {
                what: format!(
                    "a batch needs images [B, C, H, W] and B labels, got {:?} and {}",
                    x.shape(),
                    labels.len()
                ),
            });
        }
        let ce = self.accumulate_grads(x, labels)?;
        if !ce.is_finite() {
            self.zero_grad();
            return Err(Error::NonFiniteLoss {
                epoch,
                step: self.step,
                value: ce,
            });
        }
        let mut params = prefixed("net", self.net.params());
        params.extend(prefixed("classifier", self.classifier.params()));
        self.opt.step(params)?;
        self.zero_grad();
        self.step += 1;
        Ok(ce)
    }

    /// `z_1` after `steps` Euler steps from `z_0 ~ N(0, I)` keyed by `key`,
    /// the image path run once (docs/DECISIONS.md § 17).
    pub fn sample(&mut self, x: &Tensor, steps: usize, key: u64) -> Result<Tensor> {
        if steps == 0 {
            return Err(Error::Config {
                what: "inference needs at least one Euler step".into(),
            });
        }
        let h = 1.0 / steps as f64;
        let mut z = self.z0(x.dim(0), INFER, key)?;
        let cache = self.net.prepare(x)?;
        // One head for every step (its weights frozen, and packed for the
        // fused kernel where it runs), built once, with the label layer
        // folded into `W1_z` row by row across the steps (`trail`); the
        // prototype path has none and evaluates through the network.
        if let Some(head) = self.net.fused_cached_head()? {
            let mut trail = FoldedRows::default();
            for k in 0..steps {
                let logits = head.logits_along(&mut trail, &cache, &z, k as f64 * h)?;
                z = ops::add_scaled(1.0, &z, h, &self.velocity(&logits)?)?;
            }
            return Ok(z);
        }
        for k in 0..steps {
            let logits = self.net.forward_cached(&cache, &z, k as f64 * h)?;
            z = ops::add_scaled(1.0, &z, h, &self.velocity(&logits)?)?;
        }
        Ok(z)
    }

    /// `argmax` of the classifier on `z_1` after `steps` Euler steps.
    pub fn predict(&mut self, x: &Tensor, steps: usize, key: u64) -> Result<Vec<usize>> {
        let z = self.sample(x, steps, key)?;
        let logits = self.classifier.forward(&z, Mode::Eval)?;
        Ok(noprop_models::dt::argmax_rows(&logits)?)
    }

    /// Every tensor of the model and optimiser, named for a checkpoint.
    pub fn state_tensors(&mut self) -> Result<Vec<(String, Tensor)>> {
        Ok(state::state_tensors(self)?)
    }

    /// Write an atomic safetensors checkpoint (config and method in the metadata).
    pub fn save(&mut self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        Ok(io::save_model(self, path, metadata)?)
    }

    /// Rebuild from a checkpoint written by [`Adjoint::save`].
    pub fn load(path: &Path) -> Result<(Self, HashMap<String, String>)> {
        io::load_model(path)
    }

    /// The embedding kind (always one-hot: the paper runs the adjoint baseline with one-hot only).
    pub fn embedding_kind(&self) -> EmbeddingKind {
        EmbeddingKind::OneHot
    }
}

/// `net.…` (the CT network), `classifier.{weight,bias}`, `opt.…` (the
/// AdamW) and `step`; the one-hot `W_Embed` is not saved.
impl StateDict for Adjoint {
    fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> noprop_nn::Result<()> {
        self.net.visit_state(&join(prefix, "net"), v)?;
        self.classifier
            .visit_state(&join(prefix, "classifier"), v)?;
        self.opt.visit_state(&join(prefix, "opt"), v)?;
        v.counter(&join(prefix, "step"), &mut self.step)
    }
}

impl HasConfig for Adjoint {
    type Config = AdjointConfig;
    fn config(&self) -> &AdjointConfig {
        &self.config
    }
    fn method(&self) -> &str {
        "adjoint"
    }
}

impl FromCheckpoint for Adjoint {
    type Error = Error;
    fn from_config(config: AdjointConfig, _: &StateLoader<'_>) -> Result<Self> {
        Adjoint::new(config)
    }
}
