//! What a training or evaluation run is asked to do, and the one validation
//! step that rejects contradictory requests before any data is loaded.

use std::path::PathBuf;

use noprop_datasets::DatasetName;
use noprop_models::EmbeddingKind;

use crate::error::{Error, Result};
use crate::options::{
    ActivationArg, AnchorCe, CclLossArg, ClassifierArg, DeviceArg, DistributedArg, EmbedGradArg,
    EmbeddingInitArg, MethodName, OrderArg, SamplerArg,
};

/// A training run: the method, the data, the model's options and the
/// bookkeeping (results, checkpoints, resume).
///
/// `Option` fields are method-specific: `None` means "the method's default"
/// (and is the only legal value for methods the option does not apply to —
/// [`TrainConfig::validate`] says so by name).
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// The algorithm.
    pub method: MethodName,
    /// The dataset.
    pub dataset: DatasetName,
    /// The class embedding (the adjoint baseline supports one-hot only).
    pub embedding: EmbeddingKind,
    /// How a learned `dimN` embedding starts (`None`: orthogonal when `N ≥ m`,
    /// random otherwise); only with a `dimN` embedding.
    pub embedding_init: Option<EmbeddingInitArg>,
    /// Epochs.
    pub epochs: usize,
    /// Seed of everything random (initialisation, noise, dropout, shuffles).
    pub seed: u64,
    /// Where to train.
    pub device: DeviceArg,
    /// Mini-batch size.
    pub batch_size: usize,
    /// DT and backprop: number of blocks T (default 10). CT/FM: inference
    /// steps of the final evaluation (default 1000, as in the paper).
    /// Adjoint: Euler steps for training and inference (default 1000).
    pub steps: Option<usize>,
    /// η, the weight of the L2 terms (DT: 0.1, CT: 1; DT/CT only).
    pub eta: Option<f64>,
    /// CT/FM inference sampler (CT: ancestral, FM: euler).
    pub sampler: Option<SamplerArg>,
    /// CT/FM/adjoint: inference steps of the per-epoch evaluations (CT/FM
    /// default: `min(steps, 100)`, [`crate::methods::EPOCH_EVAL_STEPS`]; adjoint:
    /// `steps`).
    pub eval_steps: Option<usize>,
    /// FM: σ of the path of Eq. 10 (default 0).
    pub fm_sigma: Option<f64>,
    /// FM: the anchor cross-entropy of Eq. 13.
    pub anchor_ce: Option<AnchorCe>,
    /// CT/FM: compute the image path once per image at inference (default true).
    pub image_cache: Option<bool>,
    /// Learning rate.
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// DT: loop order (default batch).
    pub order: Option<OrderArg>,
    /// DT: output classifier (default softmax).
    pub classifier: Option<ClassifierArg>,
    /// DT: σ of the posterior classifier (default 1).
    pub sigma: Option<f64>,
    /// DT: gradient routes into `W_Embed` (default all).
    pub embed_grad: Option<EmbedGradArg>,
    /// DT: run the T block updates of a mini-batch one after another even
    /// when they could run concurrently.
    pub sequential_blocks: bool,
    /// Fresh noise at inference (Eq. 3); only NoProp can turn it off.
    pub inference_noise: bool,
    /// Relatives: hidden widths (grad-boost: one width, the units per stage).
    pub hidden: Option<Vec<usize>>,
    /// Relatives: the hidden non-linearity.
    pub activation: Option<ActivationArg>,
    /// Forward-Forward: the goodness threshold θ (default 0.5).
    pub ff_threshold: Option<f64>,
    /// CCL: the layer-wise loss (default code).
    pub ccl_loss: Option<CclLossArg>,
    /// Gradient boosting: the number of stages T (default 10).
    pub boost_stages: Option<usize>,
    /// Gradient boosting: epochs per stage (default 1).
    pub epochs_per_stage: Option<usize>,
    /// Relatives: clip each network's global gradient norm to this value
    /// (`0` turns clipping off); default 1 for CCL (its code's), off for the
    /// others.
    pub clip_grad_norm: Option<f64>,
    /// Stochastic inference runs averaged for the final test accuracy.
    pub inference_runs: usize,
    /// Use only the first N training images (0 = all).
    pub limit_train: usize,
    /// Use only the first N test images (0 = all).
    pub limit_test: usize,
    /// Measure train accuracy on a seeded class-balanced subset of at most N images (0 = all).
    pub train_eval_limit: usize,
    /// A data root searched before the default places.
    pub data_dir: Option<PathBuf>,
    /// Verify dataset checksums (default true).
    pub verify: bool,
    /// Where the JSON result and `checkpoints/<name>/` go.
    pub results_dir: PathBuf,
    /// Run name (default `method-dataset-embedding-sSEED`).
    pub name: Option<String>,
    /// Checkpoint every N mini-batches (0: only at epoch ends).
    pub checkpoint_every: u64,
    /// Continue from the run's last checkpoint if it exists.
    pub resume: bool,
    /// Stop (as if interrupted) after N mini-batches of this invocation.
    pub stop_after: Option<u64>,
    /// Spread the run over the ranks of the trainer's communicator
    /// (`None`: every rank would train alone — a single process).
    pub distributed: Option<DistributedArg>,
}

impl TrainConfig {
    /// The defaults of `noprop train` (the paper's batch size, learning rate
    /// and weight decay; one epoch; seed 0; CPU) for `method` on `dataset`.
    pub fn new(method: MethodName, dataset: DatasetName) -> Self {
        TrainConfig {
            method,
            dataset,
            embedding: EmbeddingKind::OneHot,
            embedding_init: None,
            epochs: 1,
            seed: 0,
            device: DeviceArg::Cpu,
            batch_size: 128,
            steps: None,
            eta: None,
            sampler: None,
            eval_steps: None,
            fm_sigma: None,
            anchor_ce: None,
            image_cache: None,
            lr: 1e-3,
            weight_decay: 1e-3,
            order: None,
            classifier: None,
            sigma: None,
            embed_grad: None,
            sequential_blocks: false,
            inference_noise: true,
            hidden: None,
            activation: None,
            ff_threshold: None,
            ccl_loss: None,
            boost_stages: None,
            epochs_per_stage: None,
            clip_grad_norm: None,
            inference_runs: 1,
            limit_train: 0,
            limit_test: 0,
            train_eval_limit: 10_000,
            data_dir: None,
            verify: true,
            results_dir: PathBuf::from("results"),
            name: None,
            checkpoint_every: 200,
            resume: false,
            stop_after: None,
            distributed: None,
        }
    }

    /// The run's name: `name` or `method-dataset-embedding-sSEED`
    /// (`method-dataset-embedding-init-sSEED` with `--embedding-init`).
    pub fn run_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let init = self
                .embedding_init
                .map(|i| format!("-{}", noprop_models::EmbeddingInit::from(i)))
                .unwrap_or_default();
            format!(
                "{}-{}-{}{init}-s{}",
                self.method,
                self.dataset.as_str(),
                self.embedding,
                self.seed
            )
        })
    }

    /// `results_dir/checkpoints/<run name>/last.safetensors`.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.results_dir
            .join("checkpoints")
            .join(self.run_name())
            .join("last.safetensors")
    }

    /// Reject every option that does not apply to the method, every
    /// contradictory combination and every out-of-range number, naming the
    /// option. Called by [`crate::Trainer::new`] before anything is loaded.
    pub fn validate(&self) -> Result<()> {
        use MethodName::*;
        let m = self.method;
        let only = |set: bool, flag: &str, methods: &[MethodName]| -> Result<()> {
            if set && !methods.contains(&m) {
                let names: Vec<&str> = methods.iter().map(|m| m.as_str()).collect();
                return Err(Error::config(format!(
                    "{flag} applies to {} only, not to {m}",
                    names.join(", ")
                )));
            }
            Ok(())
        };
        only(self.eta.is_some(), "--eta", &[NopropDt, NopropCt])?;
        only(self.sampler.is_some(), "--sampler", &[NopropCt, NopropFm])?;
        only(
            self.eval_steps.is_some(),
            "--eval-steps",
            &[NopropCt, NopropFm, Adjoint],
        )?;
        only(self.fm_sigma.is_some(), "--fm-sigma", &[NopropFm])?;
        only(self.anchor_ce.is_some(), "--anchor-ce", &[NopropFm])?;
        only(
            self.image_cache.is_some(),
            "--no-image-cache",
            &[NopropCt, NopropFm],
        )?;
        only(self.order.is_some(), "--order", &[NopropDt])?;
        only(self.classifier.is_some(), "--classifier", &[NopropDt])?;
        only(self.sigma.is_some(), "--sigma", &[NopropDt])?;
        only(self.embed_grad.is_some(), "--embed-grad", &[NopropDt])?;
        only(self.sequential_blocks, "--sequential-blocks", &[NopropDt])?;
        only(
            !self.inference_noise,
            "--no-inference-noise",
            &[NopropDt, NopropCt, NopropFm],
        )?;
        let rel = MethodName::RELATIVES;
        only(self.hidden.is_some(), "--hidden", &rel)?;
        only(self.activation.is_some(), "--activation", &rel)?;
        only(
            self.ff_threshold.is_some(),
            "--ff-threshold",
            &[ForwardForward],
        )?;
        only(self.ccl_loss.is_some(), "--ccl-loss", &[Ccl])?;
        only(self.boost_stages.is_some(), "--boost-stages", &[GradBoost])?;
        only(
            self.epochs_per_stage.is_some(),
            "--epochs-per-stage",
            &[GradBoost],
        )?;
        only(self.clip_grad_norm.is_some(), "--clip-grad-norm", &rel)?;
        only(
            self.steps.is_some(),
            "--steps",
            &[NopropDt, NopropCt, NopropFm, Backprop, Adjoint],
        )?;
        if let Some(h) = &self.hidden {
            if h.is_empty() || h.contains(&0) {
                return Err(Error::config(format!(
                    "--hidden: give one or more widths ≥ 1 separated by commas (e.g. 256,256), got {h:?}"
                )));
            }
            if m == GradBoost && h.len() != 1 {
                return Err(Error::config(format!(
                    "--hidden: grad-boost grows one hidden layer; give one width (units per stage), got {h:?}"
                )));
            }
        }
        if m.relative().is_some() && self.embedding != EmbeddingKind::OneHot {
            return Err(Error::config(format!(
                "{m} uses one-hot labels only, not the {} embedding",
                self.embedding
            )));
        }
        if let Some(v) = self.ff_threshold {
            if !v.is_finite() {
                return Err(Error::config(format!(
                    "--ff-threshold must be finite, got {v}"
                )));
            }
        }
        if let Some(c) = self.clip_grad_norm {
            if !(c >= 0.0 && c.is_finite()) {
                return Err(Error::config(format!(
                    "--clip-grad-norm must be a finite norm ≥ 0 (0: no clipping), got {c}"
                )));
            }
        }
        if self.boost_stages == Some(0) || self.epochs_per_stage == Some(0) {
            return Err(Error::config(
                "--boost-stages and --epochs-per-stage must be at least 1",
            ));
        }
        if self.distributed == Some(DistributedArg::Block) {
            if m != NopropDt {
                return Err(Error::config(format!(
                    "--distributed block splits NoProp-DT's independent blocks across ranks; {m} has none: use --distributed data"
                )));
            }
            if self.order == Some(OrderArg::Paper) {
                return Err(Error::config(
                    "--distributed block runs the T blocks of each mini-batch in parallel: it needs --order batch, not --order paper",
                ));
            }
            if self.sequential_blocks {
                return Err(Error::config(
                    "--distributed block and --sequential-blocks contradict each other",
                ));
            }
        }
        if m == NopropFm && self.sampler == Some(SamplerArg::Ancestral) {
            return Err(Error::config(
                "--sampler ancestral simulates a diffusion; noprop-fm integrates an ODE: use --sampler euler or heun",
            ));
        }
        if self.sigma.is_some() && self.classifier != Some(ClassifierArg::Posterior) {
            return Err(Error::config(
                "--sigma is the posterior classifier's σ: add --classifier posterior",
            ));
        }
        if m == Adjoint && self.embedding != EmbeddingKind::OneHot {
            return Err(Error::config(format!(
                "the adjoint baseline uses the one-hot embedding only (as in the paper), not {}",
                self.embedding
            )));
        }
        if self.embedding_init.is_some() && !matches!(self.embedding, EmbeddingKind::Learned { .. })
        {
            return Err(Error::config(format!(
                "--embedding-init applies to a learned dimN embedding (--embedding dimN), not {}",
                self.embedding
            )));
        }
        if let EmbeddingKind::Learned { dim: 0 } = self.embedding {
            return Err(Error::config(
                "--embedding dim0: the dimension must be at least 1",
            ));
        }
        let positive = |v: usize, flag: &str| -> Result<()> {
            if v == 0 {
                return Err(Error::config(format!("{flag} must be at least 1")));
            }
            Ok(())
        };
        positive(self.epochs, "--epochs")?;
        positive(self.batch_size, "--batch-size")?;
        positive(self.inference_runs, "--inference-runs")?;
        if let Some(s) = self.steps {
            positive(s, "--steps")?;
        }
        if let Some(s) = self.eval_steps {
            positive(s, "--eval-steps")?;
        }
        let finite_nonneg = |v: f64, flag: &str| -> Result<()> {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::config(format!(
                    "{flag} must be a finite number ≥ 0, got {v}"
                )));
            }
            Ok(())
        };
        finite_nonneg(self.lr, "--lr")?;
        finite_nonneg(self.weight_decay, "--weight-decay")?;
        if let Some(v) = self.eta {
            finite_nonneg(v, "--eta")?;
        }
        if let Some(v) = self.fm_sigma {
            finite_nonneg(v, "--fm-sigma")?;
        }
        if let Some(v) = self.sigma {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::config(format!("--sigma must be > 0, got {v}")));
            }
        }
        if let Some(name) = &self.name {
            if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
                return Err(Error::config(format!(
                    "--name `{name}` must be a plain file name (no path separators)"
                )));
            }
        }
        Ok(())
    }
}

/// An evaluation of a checkpoint on a dataset's test split (`noprop eval`).
#[derive(Clone, Debug)]
pub struct EvalConfig {
    /// The checkpoint to evaluate.
    pub checkpoint: PathBuf,
    /// The dataset (required: checkpoints do not record it).
    pub dataset: DatasetName,
    /// Stochastic inference runs averaged.
    pub inference_runs: usize,
    /// Fresh noise at inference (NoProp only).
    pub inference_noise: bool,
    /// CT/FM: inference steps (default 1000). Adjoint: Euler steps (default: as trained).
    pub steps: Option<usize>,
    /// CT/FM: the sampler (CT: ancestral, FM: euler).
    pub sampler: Option<SamplerArg>,
    /// CT/FM: compute the image path once per image (default true).
    pub image_cache: bool,
    /// Use only the first N test images (0 = all).
    pub limit_test: usize,
    /// A data root searched first.
    pub data_dir: Option<PathBuf>,
    /// Verify dataset checksums.
    pub verify: bool,
    /// Where to evaluate.
    pub device: DeviceArg,
}

impl EvalConfig {
    /// Defaults of `noprop eval`: one inference run with noise, on the CPU.
    pub fn new(checkpoint: impl Into<PathBuf>, dataset: DatasetName) -> Self {
        EvalConfig {
            checkpoint: checkpoint.into(),
            dataset,
            inference_runs: 1,
            inference_noise: true,
            steps: None,
            sampler: None,
            image_cache: true,
            limit_test: 0,
            data_dir: None,
            verify: true,
            device: DeviceArg::Cpu,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(m: MethodName) -> TrainConfig {
        TrainConfig::new(m, DatasetName::MnistTestSplit)
    }

    #[test]
    fn defaults_are_valid_for_every_method() {
        for m in MethodName::ALL.into_iter().chain(MethodName::RELATIVES) {
            cfg(m).validate().unwrap();
        }
        let mut c = cfg(MethodName::GradBoost);
        c.hidden = Some(vec![8, 8]);
        assert!(c.validate().unwrap_err().to_string().contains("one width"));
        let mut c = cfg(MethodName::Dfa);
        c.ccl_loss = Some(CclLossArg::Code);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--ccl-loss applies to ccl only"));
        let mut c = cfg(MethodName::Ccl);
        c.steps = Some(3);
        assert!(c.validate().unwrap_err().to_string().contains("--steps"));
        let mut c = cfg(MethodName::NopropDt);
        c.clip_grad_norm = Some(1.0);
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--clip-grad-norm applies to"));
        let mut c = cfg(MethodName::Dfa);
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            c.clip_grad_norm = Some(bad);
            assert!(c.validate().is_err(), "{bad}");
        }
        c.clip_grad_norm = Some(0.0);
        c.validate().unwrap();
    }

    #[test]
    fn options_of_other_methods_are_rejected_by_name() {
        let mut c = cfg(MethodName::NopropFm);
        c.sampler = Some(SamplerArg::Ancestral);
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("--sampler ancestral") && e.contains("euler"),
            "{e}"
        );

        let mut c = cfg(MethodName::Backprop);
        c.order = Some(OrderArg::Paper);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("--order applies to noprop-dt only"), "{e}");

        let mut c = cfg(MethodName::NopropDt);
        c.sampler = Some(SamplerArg::Euler);
        assert!(c.validate().unwrap_err().to_string().contains("--sampler"));

        let mut c = cfg(MethodName::Adjoint);
        c.inference_noise = false;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--no-inference-noise"));

        let mut c = cfg(MethodName::Adjoint);
        c.embedding = EmbeddingKind::Prototype;
        assert!(c.validate().unwrap_err().to_string().contains("one-hot"));

        let mut c = cfg(MethodName::NopropDt);
        c.embedding_init = Some(EmbeddingInitArg::Random);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("--embedding-init") && e.contains("dimN"), "{e}");
        c.embedding = EmbeddingKind::Learned { dim: 784 };
        c.validate().unwrap();

        let mut c = cfg(MethodName::NopropDt);
        c.sigma = Some(2.0);
        assert!(c.validate().unwrap_err().to_string().contains("posterior"));
        c.classifier = Some(ClassifierArg::Posterior);
        c.validate().unwrap();

        let mut c = cfg(MethodName::NopropCt);
        c.epochs = 0;
        assert!(c.validate().unwrap_err().to_string().contains("--epochs"));
        let mut c = cfg(MethodName::NopropCt);
        c.lr = f64::NAN;
        assert!(c.validate().unwrap_err().to_string().contains("--lr"));
        let mut c = cfg(MethodName::NopropCt);
        c.name = Some("../x".into());
        assert!(c.validate().unwrap_err().to_string().contains("--name"));
    }

    #[test]
    fn run_name_and_checkpoint_path() {
        let mut c = cfg(MethodName::NopropCt);
        c.embedding = EmbeddingKind::Learned { dim: 20 };
        c.seed = 3;
        assert_eq!(c.run_name(), "noprop-ct-mnist-test-split-dim20-s3");
        assert!(c
            .checkpoint_path()
            .ends_with("checkpoints/noprop-ct-mnist-test-split-dim20-s3/last.safetensors"));
        c.embedding_init = Some(EmbeddingInitArg::Random);
        assert_eq!(c.run_name(), "noprop-ct-mnist-test-split-dim20-random-s3");
    }
}
