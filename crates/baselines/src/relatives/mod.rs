//! Back-propagation-free relatives of NoProp, and their matched back-prop
//! reference, on one fully connected network ([`Mlp`]):
//!
//! * [`backprop_mlp`]: the same MLP trained end to end (the reference row);
//! * [`dfa`]: Direct Feedback Alignment (Nøkland 2016, arXiv 1609.01596) and
//!   Direct Random Target Projection (Frenkel, Lefebvre & Bol 2021,
//!   arXiv 1909.01311): fixed random matrices carry the output error (DFA)
//!   or the target (DRTP) to every hidden layer;
//! * [`ccl`]: Counter-Current Learning (Kao & Hariharan, NeurIPS 2024,
//!   arXiv 2409.19841): a feedback network processes the targets and each
//!   layer pair is aligned by a local loss with stop-gradients;
//! * [`forward_forward`]: Forward-Forward, supervised variant (Hinton 2022,
//!   arXiv 2212.13345);
//! * [`grad_boost`]: sequential training of a one-hidden-layer network with
//!   gradient boosting (Emami & Martínez-Muñoz, IEEE Access 2023).
//!
//! One [`Relative`] holds the networks, one AdamW over all of them, and the
//! step counter; it saves and restores through the same safetensors
//! checkpoints as the other baselines (every tensor, optimiser moments
//! included, so a resumed run is bit-identical to an uninterrupted one).

pub mod backprop_mlp;
pub mod ccl;
pub mod dfa;
pub mod forward_forward;
pub mod grad_boost;
pub mod mlp;

use std::collections::HashMap;
use std::path::Path;

use noprop_nn::io::{self, FromCheckpoint, HasConfig};
use noprop_nn::optim::{Adam, Optimizer};
use noprop_nn::state::{join, StateDict, StateLoader, StateVisitor};
use noprop_nn::{Mode, ParamMut};
use noprop_tensor::Tensor;
use serde::{Deserialize, Serialize};

pub use mlp::{Activation, Mlp};

use crate::{Error, Result};

/// Which relative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RelativeMethod {
    /// The MLP trained end to end with cross-entropy.
    BackpropMlp,
    /// Direct Feedback Alignment.
    Dfa,
    /// Direct Random Target Projection.
    Drtp,
    /// Counter-Current Learning.
    Ccl,
    /// Forward-Forward (supervised).
    ForwardForward,
    /// Gradient-boosted sequential training.
    GradBoost,
}

impl RelativeMethod {
    /// The name used on the command line, in results and in checkpoints.
    pub const fn as_str(self) -> &'static str {
        match self {
            RelativeMethod::BackpropMlp => "backprop-mlp",
            RelativeMethod::Dfa => "dfa",
            RelativeMethod::Drtp => "drtp",
            RelativeMethod::Ccl => "ccl",
            RelativeMethod::ForwardForward => "forward-forward",
            RelativeMethod::GradBoost => "grad-boost",
        }
    }
}

/// CCL's layer-wise loss (see [`ccl`] for both and how they differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CclLoss {
    /// The paper's text: squared distance between each sample's forward
    /// activation and the feedback activation of its own target.
    Paper,
    /// The released code: forward activations against the feedback
    /// activations of *every* class, dot products regressed on the one-hot
    /// label, and cross-entropy on the output layer.
    Code,
}

/// Configuration of a relative.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelativeConfig {
    /// The algorithm.
    pub method: RelativeMethod,
    /// Image `(C, H, W)`; the network sees it flattened.
    pub image: (usize, usize, usize),
    /// Number of classes.
    pub classes: usize,
    /// Hidden widths (gradient boosting: `[J]`, the units of one stage).
    pub hidden: Vec<usize>,
    /// The hidden non-linearity.
    pub activation: Activation,
    /// Learning rate (AdamW).
    pub lr: f64,
    /// Decoupled weight decay (AdamW).
    pub weight_decay: f64,
    /// Master seed.
    pub seed: u64,
    /// Forward-Forward: the goodness threshold θ (default 0.5: with 2 the
    /// 500-unit layers spend the first epochs growing their goodness and the
    /// test accuracy after 3 epochs on `mnist-test-split` is 0.28, with 0.5
    /// it is 0.78; docs/RELATIVES.md).
    pub ff_threshold: f64,
    /// CCL: which layer-wise loss (default: the released code's — the
    /// paper's squared distance collapses here, docs/RELATIVES.md).
    pub ccl_loss: CclLoss,
    /// Gradient boosting: the number of stages `T`.
    pub stages: usize,
    /// Gradient boosting: epochs spent on each stage.
    pub epochs_per_stage: usize,
    /// Clip each network's global gradient norm to this value before every
    /// step, `g ← g·min(1, c/(‖g‖ + 10⁻⁶))` over all the gradients of one
    /// network (`noprop_nn::optim::clip_grad_norm`); CCL clips its forward
    /// and its feedback network separately, as the authors' code does
    /// (`clip_grad_norm_` on `forward_params` and on `backward_params`, both
    /// at 1). `None`: no clipping. Default: `Some(1.0)` for CCL, `None` for
    /// the others (checkpoints written before the option existed read as
    /// `None`, the behaviour they were trained with).
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
}

impl RelativeConfig {
    /// Each method's defaults (docs/RELATIVES.md says where they come from):
    /// the CCL paper's MNIST/Fashion-MNIST MLP (five hidden layers of 256)
    /// for back-prop, DFA, DRTP and CCL; four hidden layers of 500 ReLUs
    /// for Forward-Forward (Hinton's are 2000 wide); ten stages of 32 ReLUs,
    /// one epoch each, for gradient boosting. AdamW, lr 1e-3, wd 1e-3.
    /// CCL clips each network's gradient norm at 1 (its code's
    /// `grad_clip_F = grad_clip_B = 1`); the others do not clip.
    pub fn defaults(
        method: RelativeMethod,
        image: (usize, usize, usize),
        classes: usize,
        seed: u64,
    ) -> Self {
        let (hidden, activation) = match method {
            RelativeMethod::BackpropMlp | RelativeMethod::Ccl => (vec![256; 5], Activation::Elu),
            RelativeMethod::Dfa | RelativeMethod::Drtp => (vec![256; 5], Activation::Tanh),
            RelativeMethod::ForwardForward => (vec![500; 4], Activation::Relu),
            RelativeMethod::GradBoost => (vec![32], Activation::Relu),
        };
        RelativeConfig {
            method,
            image,
            classes,
            hidden,
            activation,
            lr: 1e-3,
            weight_decay: 1e-3,
            seed,
            ff_threshold: 0.5,
            ccl_loss: CclLoss::Code,
            stages: 10,
            epochs_per_stage: 1,
            clip_grad_norm: (method == RelativeMethod::Ccl).then_some(1.0),
        }
    }

    /// Input features `C·H·W`.
    pub fn inputs(&self) -> usize {
        self.image.0 * self.image.1 * self.image.2
    }

    fn check(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Config { what });
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return bad(format!(
                "{}: hidden widths must be at least one layer of ≥ 1 unit, got {:?}",
                self.method.as_str(),
                self.hidden
            ));
        }
        if self.method == RelativeMethod::GradBoost && self.hidden.len() != 1 {
            return bad(format!(
                "grad-boost grows one hidden layer: give one width (units per stage), got {:?}",
                self.hidden
            ));
        }
        if self.method == RelativeMethod::ForwardForward && self.inputs() < self.classes {
            return bad(
                "forward-forward writes the label into the first inputs: too few inputs".into(),
            );
        }
        if self.stages == 0 || self.epochs_per_stage == 0 {
            return bad("grad-boost: stages and epochs per stage must be at least 1".into());
        }
        if let Some(c) = self.clip_grad_norm {
            if !(c > 0.0 && c.is_finite()) {
                return bad(format!(
                    "gradient clipping needs a positive finite max norm, got {c}"
                ));
            }
        }
        if !self.ff_threshold.is_finite() {
            return bad(format!("forward-forward threshold {}", self.ff_threshold));
        }
        Ok(())
    }
}

/// A relative: its networks, one AdamW over all of them, the step counter.
pub struct Relative {
    /// The configuration.
    pub config: RelativeConfig,
    /// The networks: the forward network; CCL adds the feedback network;
    /// gradient boosting has one network per stage instead.
    pub(crate) nets: Vec<Mlp>,
    /// DFA/DRTP's fixed random feedback matrices `B_k` (`[classes, h_k]`),
    /// redrawn from the seed (not trained, so not saved).
    pub(crate) feedback: Vec<Tensor>,
    opt: Adam,
    /// Gradient boosting: how many stages have been trained (prediction uses those).
    pub stages_trained: u64,
    /// Mini-batches trained so far.
    pub step: u64,
}

impl std::fmt::Debug for Relative {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relative")
            .field("config", &self.config)
            .field("step", &self.step)
            .finish()
    }
}

impl Relative {
    /// A fresh model.
    pub fn new(config: RelativeConfig) -> Result<Self> {
        config.check()?;
        let (n, c, seed) = (config.inputs(), config.classes, config.seed);
        let widths = |out: usize| -> Vec<usize> {
            let mut w = vec![n];
            w.extend(&config.hidden);
            w.push(out);
            w
        };
        let act = config.activation;
        let mut feedback = Vec::new();
        let nets = match config.method {
            RelativeMethod::BackpropMlp | RelativeMethod::Dfa | RelativeMethod::Drtp => {
                vec![Mlp::new(&widths(c), act, seed, "forward")]
            }
            RelativeMethod::Ccl => {
                let mut back: Vec<usize> = widths(c);
                back.reverse();
                vec![
                    Mlp::new(&widths(c), act, seed, "forward"),
                    Mlp::new(&back, act, seed, "feedback"),
                ]
            }
            RelativeMethod::ForwardForward => {
                let mut w = vec![n];
                w.extend(&config.hidden);
                vec![Mlp::new(&w, act, seed, "forward").with_last_activation()]
            }
            RelativeMethod::GradBoost => (0..config.stages)
                .map(|t| Mlp::new(&widths(c), act, seed, &format!("stage{}", t + 1)))
                .collect(),
        };
        if matches!(config.method, RelativeMethod::Dfa | RelativeMethod::Drtp) {
            feedback = dfa::feedback_matrices(&config);
        }
        Ok(Relative {
            opt: Adam::adamw(config.lr, config.weight_decay),
            config,
            nets,
            feedback,
            stages_trained: 0,
            step: 0,
        })
    }

    /// The network's name in checkpoints and parameter names.
    fn net_name(&self, i: usize) -> String {
        match self.config.method {
            RelativeMethod::GradBoost => format!("stage{}", i + 1),
            RelativeMethod::Ccl if i == 1 => "feedback".into(),
            _ => "forward".into(),
        }
    }

    /// One AdamW step on the networks `which`, then zero their gradients.
    /// With [`RelativeConfig::clip_grad_norm`], each network's gradients are
    /// first clipped to that global norm, one network at a time. (The
    /// relatives have no named state for data-parallel training, so no
    /// gradient hook sums their gradients inside the step after clipping.)
    pub(crate) fn update(&mut self, which: &[usize]) -> Result<()> {
        self.clip_grads(which)?;
        let names: Vec<String> = which.iter().map(|&i| self.net_name(i)).collect();
        let mut params: Vec<ParamMut<'_>> = Vec::new();
        for (k, net) in self.nets.iter_mut().enumerate() {
            if let Some(j) = which.iter().position(|&i| i == k) {
                params.extend(noprop_nn::prefixed(&names[j], net.params()));
            }
        }
        self.opt.step(params)?;
        for &i in which {
            self.nets[i].zero_grad();
        }
        Ok(())
    }

    /// With [`RelativeConfig::clip_grad_norm`] `Some(c)`: clip the gradients
    /// of each network of `which` to the global norm `c`, one network at a
    /// time (`g ← g·min(1, c/(‖g‖ + 10⁻⁶))`, ‖g‖ over that network's
    /// gradients only).
    pub(crate) fn clip_grads(&mut self, which: &[usize]) -> Result<()> {
        if let Some(c) = self.config.clip_grad_norm {
            for &i in which {
                noprop_nn::optim::clip_grad_norm(&mut self.nets[i].params(), c)?;
            }
        }
        Ok(())
    }

    /// `x` as `[B, C·H·W]`.
    pub(crate) fn flat(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dim(0);
        Ok(x.clone().reshape(&[b, self.config.inputs()])?)
    }

    /// Train on one mini-batch; returns the sum of the loss values it
    /// produced and how many there were.
    pub fn train_batch(
        &mut self,
        x: &Tensor,
        labels: &[usize],
        epoch: usize,
    ) -> Result<(f64, usize)> {
        let x = self.flat(x)?;
        let (sum, n) = match self.config.method {
            RelativeMethod::BackpropMlp => backprop_mlp::train_batch(self, &x, labels)?,
            RelativeMethod::Dfa | RelativeMethod::Drtp => dfa::train_batch(self, &x, labels)?,
            RelativeMethod::Ccl => ccl::train_batch(self, &x, labels)?,
            RelativeMethod::ForwardForward => forward_forward::train_batch(self, &x, labels)?,
            RelativeMethod::GradBoost => grad_boost::train_batch(self, &x, labels, epoch)?,
        };
        if !sum.is_finite() {
            return Err(Error::NonFiniteLoss {
                epoch,
                step: self.step,
                value: sum,
            });
        }
        self.step += 1;
        Ok((sum, n))
    }

    /// Predicted classes.
    pub fn predict(&mut self, x: &Tensor) -> Result<Vec<usize>> {
        let x = self.flat(x)?;
        match self.config.method {
            RelativeMethod::ForwardForward => forward_forward::predict(self, &x),
            RelativeMethod::GradBoost => {
                let k = (self.stages_trained as usize).max(1);
                grad_boost::predict(self, &x, k)
            }
            _ => {
                let logits = self.nets[0].forward(&x, Mode::Eval)?;
                Ok(noprop_models::dt::argmax_rows(&logits)?)
            }
        }
    }

    /// Trainable scalars of the networks (CCL: forward + feedback).
    pub fn num_params(&mut self) -> usize {
        self.nets.iter_mut().map(Mlp::num_params).sum()
    }

    /// Write an atomic safetensors checkpoint (config in the metadata).
    pub fn save(&mut self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        Ok(io::save_model(self, path, metadata)?)
    }

    /// Rebuild from a checkpoint written by [`Relative::save`].
    pub fn load(path: &Path) -> Result<(Self, HashMap<String, String>)> {
        io::load_model(path)
    }

    /// Convert parameters to `dtype` (finite-difference checks use `F64`).
    #[cfg(test)]
    pub(crate) fn convert_dtype(&mut self, dtype: noprop_tensor::DType) {
        for n in &mut self.nets {
            n.to_dtype(dtype);
        }
        self.feedback = self.feedback.iter().map(|b| b.to_dtype(dtype)).collect();
    }
}

/// `forward.fc{k}.…` (and `feedback.…` for CCL, `stage{t}.…` for gradient
/// boosting), `opt.…` (the one AdamW), `stages_trained` and `step`.
impl StateDict for Relative {
    fn visit_state(&mut self, prefix: &str, v: &mut dyn StateVisitor) -> noprop_nn::Result<()> {
        let names: Vec<String> = (0..self.nets.len()).map(|i| self.net_name(i)).collect();
        for (net, name) in self.nets.iter_mut().zip(&names) {
            for p in net.params() {
                v.tensor(&join(prefix, &format!("{name}.{}", p.name)), p.value)?;
            }
        }
        self.opt.visit_state(&join(prefix, "opt"), v)?;
        v.counter(&join(prefix, "stages_trained"), &mut self.stages_trained)?;
        v.counter(&join(prefix, "step"), &mut self.step)
    }
}

impl HasConfig for Relative {
    type Config = RelativeConfig;
    fn config(&self) -> &RelativeConfig {
        &self.config
    }
    fn method(&self) -> &str {
        self.config.method.as_str()
    }
}

impl FromCheckpoint for Relative {
    type Error = Error;
    fn from_config(config: RelativeConfig, _tensors: &StateLoader<'_>) -> Result<Self> {
        Relative::new(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use noprop_tensor::ops;

    fn grad_norm(net: &mut Mlp) -> f64 {
        net.params()
            .iter()
            .map(|p| ops::sum_sq(p.grad).unwrap())
            .sum::<f64>()
            .sqrt()
    }

    /// CCL clips by default, each network to its own norm: the forward
    /// network's large gradients shrink to norm 1, the feedback network's
    /// small ones stay as they are (clipping both together would shrink
    /// them as well); with clipping off nothing changes.
    #[test]
    fn ccl_clips_each_network_separately() {
        let cfg = RelativeConfig {
            hidden: vec![4, 3],
            ..RelativeConfig::defaults(RelativeMethod::Ccl, (1, 2, 3), 3, 0)
        };
        assert_eq!(cfg.clip_grad_norm, Some(1.0));
        let fill = |m: &mut Relative| {
            for p in m.nets[0].params() {
                p.grad.try_fill(2.0).unwrap();
            }
            for p in m.nets[1].params() {
                p.grad.try_fill(1e-3).unwrap();
            }
        };
        let mut m = Relative::new(cfg.clone()).unwrap();
        fill(&mut m);
        let (n0, n1) = (grad_norm(&mut m.nets[0]), grad_norm(&mut m.nets[1]));
        assert!(n0 > 10.0 && n1 < 0.1, "{n0} {n1}");
        m.clip_grads(&[0, 1]).unwrap();
        assert!((grad_norm(&mut m.nets[0]) - 1.0).abs() < 1e-5);
        assert_eq!(grad_norm(&mut m.nets[1]), n1);

        let mut m = Relative::new(RelativeConfig {
            clip_grad_norm: None,
            ..cfg
        })
        .unwrap();
        fill(&mut m);
        m.clip_grads(&[0, 1]).unwrap();
        assert_eq!(grad_norm(&mut m.nets[0]), n0);
        for method in [RelativeMethod::Dfa, RelativeMethod::BackpropMlp] {
            let d = RelativeConfig::defaults(method, (1, 2, 3), 3, 0);
            assert_eq!(d.clip_grad_norm, None, "{method:?}");
        }
    }
}
