//! `noprop train`: its options, their translation into the library's
//! [`TrainConfig`], and the run.

use std::path::PathBuf;

use anyhow::Result;
use noprop_train::{
    ActivationArg, AnchorCe, CclLossArg, ClassifierArg, DatasetArg, DeviceArg, DistributedArg,
    EmbedGradArg, EmbeddingArg, EmbeddingInitArg, MethodName, OnOff, OrderArg, ProgressLines,
    SamplerArg, TerminalBars, TrainConfig, Trainer,
};

use crate::switches::switch;

/// Options of `noprop train`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// The algorithm.
    #[arg(long, value_enum, default_value_t = MethodName::NopropDt)]
    pub method: MethodName,
    /// Dataset: mnist, fashion-mnist, cifar10, cifar100, mnist-test-split
    /// (the real MNIST test set split 8,000 / 2,000) or tiny-imagenet (the
    /// unpacked tiny-imagenet-200 tree, decoded once and cached).
    #[arg(long)]
    pub dataset: DatasetArg,
    /// Class embedding: one-hot, dim20 (any dimN) or prototype.
    #[arg(long, default_value = "one-hot")]
    pub embedding: EmbeddingArg,
    /// How a learned dimN embedding starts (with --embedding dimN; prototype
    /// needs N = C·H·W) [default: orthogonal when N ≥ classes, else random].
    #[arg(long, value_enum)]
    pub embedding_init: Option<EmbeddingInitArg>,
    /// Epochs.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Seed of everything random (initialisation, noise, dropout, shuffles).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Device: cpu, cuda, cuda:N or auto (CUDA when it works, else the CPU).
    /// Under mpirun, cuda and auto give each rank GPU local_rank mod n_gpus; cuda:N puts every rank on GPU N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceArg,
    /// Mini-batch size.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// noprop-dt and backprop: number of blocks T [default: 10]. noprop-ct/fm:
    /// inference steps of the final test evaluation [default: 1000, as in the
    /// paper]. adjoint: Euler steps for training and inference [default: 1000].
    #[arg(long)]
    pub steps: Option<usize>,
    /// η, the weight of the L2 terms (noprop-dt [default: 0.1], noprop-ct [default: 1]).
    #[arg(long)]
    pub eta: Option<f64>,
    /// noprop-ct/fm inference sampler [default: ancestral for CT, euler for FM;
    /// ancestral is CT's only].
    #[arg(long, value_enum)]
    pub sampler: Option<SamplerArg>,
    /// noprop-ct/fm/adjoint: inference steps of the per-epoch evaluations [default:
    /// noprop-ct/fm min(--steps, 100), the final test evaluation keeping --steps;
    /// adjoint --steps].
    #[arg(long)]
    pub eval_steps: Option<usize>,
    /// noprop-fm: σ of the path of Eq. 10 [default: 0].
    #[arg(long)]
    pub fm_sigma: Option<f64>,
    /// noprop-fm: the anchor cross-entropy of Eq. 13 [default: auto = on with a learned embedding].
    #[arg(long, value_enum)]
    pub anchor_ce: Option<AnchorCe>,
    /// noprop-ct/fm: run the image path at every inference step instead of
    /// once per image (same result, slower; for checking).
    #[arg(long)]
    pub no_image_cache: bool,
    /// Deprecated spelling of --no-image-cache (`--image-cache off`).
    #[arg(long, value_enum, hide = true)]
    pub image_cache: Option<OnOff>,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Weight decay.
    #[arg(long, default_value_t = 1e-3)]
    pub weight_decay: f64,
    /// noprop-dt loop order [default: batch].
    #[arg(long, value_enum)]
    pub order: Option<OrderArg>,
    /// noprop-dt output classifier [default: softmax].
    #[arg(long, value_enum)]
    pub classifier: Option<ClassifierArg>,
    /// noprop-dt: σ of the posterior classifier (with --classifier posterior) [default: 1].
    #[arg(long)]
    pub sigma: Option<f64>,
    /// noprop-dt: gradient routes into W_Embed [default: all].
    #[arg(long, value_enum)]
    pub embed_grad: Option<EmbedGradArg>,
    /// NoProp: no fresh noise at inference (deterministic predictions).
    #[arg(long)]
    pub no_inference_noise: bool,
    /// Deprecated spelling of --no-inference-noise (`--inference-noise off`).
    #[arg(long, value_enum, hide = true)]
    pub inference_noise: Option<OnOff>,
    /// Relatives (backprop-mlp, ccl, dfa, drtp, forward-forward, grad-boost):
    /// hidden widths, comma-separated [default: 256,256,256,256,256 (CCL's
    /// Table 1 MLP); forward-forward 500,500,500,500; grad-boost: 32 units per stage].
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Relatives: the hidden non-linearity [default: elu for backprop-mlp and
    /// ccl, tanh for dfa and drtp, relu for forward-forward and grad-boost].
    #[arg(long, value_enum)]
    pub activation: Option<ActivationArg>,
    /// forward-forward: the goodness threshold θ [default: 0.5].
    #[arg(long)]
    pub ff_threshold: Option<f64>,
    /// ccl: the layer-wise loss, the released code's or the paper's [default: code;
    /// the paper's collapses here, see docs/RELATIVES.md].
    #[arg(long, value_enum)]
    pub ccl_loss: Option<CclLossArg>,
    /// grad-boost: the number of stages T [default: 10].
    #[arg(long)]
    pub boost_stages: Option<usize>,
    /// grad-boost: epochs spent on each stage [default: 1].
    #[arg(long)]
    pub epochs_per_stage: Option<usize>,
    /// Relatives: clip each network's global gradient norm before every
    /// step, g ← g·min(1, c/(‖g‖ + 1e-6)); 0 turns it off [default: 1 for
    /// ccl (the authors' code clips its forward and feedback networks at 1),
    /// off for the others].
    #[arg(long)]
    pub clip_grad_norm: Option<f64>,
    /// Stochastic inference runs averaged for the final test accuracy.
    #[arg(long, default_value_t = 1)]
    pub inference_runs: usize,
    /// noprop-dt: run the T block updates of a mini-batch one after another
    /// even when they could run concurrently.
    #[arg(long)]
    pub sequential_blocks: bool,
    /// Use only the first N training images (0 = all).
    #[arg(long, default_value_t = 0)]
    pub limit_train: usize,
    /// Use only the first N test images (0 = all; for timing and memory runs).
    #[arg(long, default_value_t = 0)]
    pub limit_test: usize,
    /// Measure train accuracy on a seeded class-balanced subset of at most N images (0 = all).
    #[arg(long, default_value_t = 10_000)]
    pub train_eval_limit: usize,
    /// A dataset root searched before the default places.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Skip checksum verification.
    #[arg(long)]
    pub no_verify: bool,
    /// Where results and checkpoints go.
    #[arg(long, default_value = "results")]
    pub results_dir: PathBuf,
    /// Run name [default: method-dataset-embedding-sSEED].
    #[arg(long)]
    pub name: Option<String>,
    /// Checkpoint every N mini-batches (0: only at epoch ends).
    #[arg(long, default_value_t = 200)]
    pub checkpoint_every: u64,
    /// Continue from the run's last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop (as if interrupted) after N mini-batches of this invocation — for resume tests.
    #[arg(long, hide = true)]
    pub stop_after: Option<u64>,
    /// Spread the run over the ranks of `mpirun -np R noprop train …`:
    /// `block` splits NoProp-DT's T blocks across the ranks, `data` gives
    /// each rank a slice of every mini-batch (docs/DISTRIBUTED.md). Without
    /// mpirun, or with R = 1, the same schedule runs in one process.
    #[arg(long, value_enum)]
    pub distributed: Option<DistributedArg>,
    /// Every rank also writes its log to DIR/rank-R.log (rank 0 still
    /// prints to the terminal; the others print only warnings and errors).
    #[arg(long, value_name = "DIR")]
    pub rank_log: Option<PathBuf>,
}

impl TrainArgs {
    /// The library's configuration for these options (validated later, by
    /// [`Trainer::new`]).
    pub fn config(&self) -> Result<TrainConfig> {
        let mut c = TrainConfig::new(self.method, self.dataset.0);
        c.embedding = self.embedding.0;
        c.embedding_init = self.embedding_init;
        c.epochs = self.epochs;
        c.seed = self.seed;
        c.device = self.device.clone();
        c.batch_size = self.batch_size;
        c.steps = self.steps;
        c.eta = self.eta;
        c.sampler = self.sampler;
        c.eval_steps = self.eval_steps;
        c.fm_sigma = self.fm_sigma;
        c.anchor_ce = self.anchor_ce;
        let cache = switch(self.no_image_cache, self.image_cache, "image-cache")?;
        c.image_cache = (!cache || self.image_cache.is_some()).then_some(cache);
        c.lr = self.lr;
        c.weight_decay = self.weight_decay;
        c.order = self.order;
        c.classifier = self.classifier;
        c.sigma = self.sigma;
        c.embed_grad = self.embed_grad;
        c.sequential_blocks = self.sequential_blocks;
        c.inference_noise = switch(
            self.no_inference_noise,
            self.inference_noise,
            "inference-noise",
        )?;
        c.hidden = self.hidden.clone();
        c.activation = self.activation;
        c.ff_threshold = self.ff_threshold;
        c.ccl_loss = self.ccl_loss;
        c.boost_stages = self.boost_stages;
        c.epochs_per_stage = self.epochs_per_stage;
        c.clip_grad_norm = self.clip_grad_norm;
        c.inference_runs = self.inference_runs;
        c.limit_train = self.limit_train;
        c.limit_test = self.limit_test;
        c.train_eval_limit = self.train_eval_limit;
        c.data_dir = self.data_dir.clone();
        c.verify = !self.no_verify;
        c.results_dir = self.results_dir.clone();
        c.name = self.name.clone();
        c.checkpoint_every = self.checkpoint_every;
        c.resume = self.resume;
        c.stop_after = self.stop_after;
        c.distributed = self.distributed;
        Ok(c)
    }
}

/// `noprop train`: validate, train with live progress, print `RESULT {json}`.
/// Under MPI, every rank runs this; rank 0 alone shows progress and prints
/// the result.
pub fn run(a: TrainArgs) -> Result<()> {
    let config = a.config()?;
    let comm = crate::launch::communicator(config.distributed.is_some())?;
    let root = comm.is_root();
    let mut trainer = Trainer::new(config)?.communicator(comm.clone())?;
    if root {
        trainer = trainer.observe(TerminalBars::new());
        if let Some(lines) = ProgressLines::from_env() {
            trainer = trainer.observe(lines);
        }
    }
    let report = match trainer.fit() {
        Ok(r) => r,
        Err(e) if comm.size() > 1 => {
            // The other ranks may wait in a collective: stop the whole job.
            eprintln!("error (rank {} of {}): {e}", comm.rank(), comm.size());
            comm.abort(1);
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    if root && !report.result.is_null() {
        println!("RESULT {}", serde_json::to_string(&report.result)?);
    }
    Ok(())
}
