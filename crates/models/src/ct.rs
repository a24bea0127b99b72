//! NoProp-CT (Eq. 9, Algorithm 2, learnable schedule) and NoProp-FM
//! (Eqs. 10–13, Algorithm 3): one shared network [`CtNet`], training,
//! inference by ancestral simulation or ODE integration with the image path
//! cached (docs/DECISIONS.md § 17), and checkpoints (docs/DECISIONS.md §§ 8–12,
//! notes D and E).

use noprop_nn::layers::mix_stream;
use noprop_nn::optim::Adam;
use noprop_schedules::LearnableSchedule;
use noprop_tensor::{DType, Device};

use crate::classifier::{ClassifierKind, OutputClassifier};
use crate::ct_net::CtNet;
use crate::embedding::ClassEmbedding;
use crate::{Error, Result};

mod checkpoint;
mod config;
mod sample;
mod train;

pub use checkpoint::ContCheckpoint;
pub use config::{ContConfig, ContMethod, Sampler};

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

/// The optimiser's name of the learnable schedule's parameter vector.
const SCHEDULE_PARAM: &str = "schedule.params";

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
    /// Where the network, classifier, embedding and their optimiser state
    /// live (the schedule stays on the host, see [`NoPropCont::to_device`]).
    device: Device,
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
        let net = CtNet::new(
            config.image,
            config.conv_stack,
            config.classes,
            d,
            config.seed,
        )?;
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
            device: Device::Cpu,
        })
    }

    /// Move the network, the classifier, `W_Embed` (values, gradients,
    /// buffers) and their Adam moments to `device`; every later draw and
    /// every per-sample tensor of training and inference is made there.
    ///
    /// The learnable schedule (CT) stays on the host: it is 3·width+3 `f64`
    /// parameters (GPU tensors are `f32`), evaluated at the `B` times of a
    /// mini-batch to give per-row coefficients (uploaded as one `[B]` tensor)
    /// and updated from `B` per-row scalars; its Adam moments stay with it.
    pub fn to_device(&mut self, device: &Device) -> Result<()> {
        self.net.to_device(device)?;
        self.classifier.to_device(device)?;
        self.embedding.to_device(device)?;
        self.opt
            .to_device_where(device, |name| name != SCHEDULE_PARAM)?;
        self.device = device.clone();
        Ok(())
    }

    /// The device of the network (see [`NoPropCont::to_device`]).
    pub fn device(&self) -> &Device {
        &self.device
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
}
