//! The noprop-rs trainer as a library: train any of the five methods of the
//! paper's Table 1 — NoProp-DT, NoProp-CT, NoProp-FM and the two end-to-end
//! baselines (back-propagation through the same blocks, Eqs. 17–19, and the
//! adjoint-sensitivity neural ODE) — from Rust, with the same data order,
//! checkpoints, bit-exact resume, evaluation and JSON results as the
//! `noprop` CLI (which is a thin shell over this crate).
//!
//! ```
//! use noprop_datasets::DatasetName;
//! use noprop_train::{MethodName, TrainConfig, Trainer};
//!
//! let mut config = TrainConfig::new(MethodName::NopropDt, DatasetName::MnistTestSplit);
//! config.limit_train = 512; // a quick look: 512 real digits, T = 2 blocks
//! config.limit_test = 200;
//! config.steps = Some(2);
//! # let dir = tempfile::tempdir().map_err(|e| noprop_train::Error::config(e.to_string()))?;
//! # config.results_dir = dir.path().to_path_buf();
//! let report = Trainer::new(config)?.fit()?;
//! println!("test accuracy {:.4}", report.test_accuracy.unwrap_or(0.0));
//! # Ok::<(), noprop_train::Error>(())
//! ```
//!
//! The crate's example `examples/train_small.rs` runs the same on a small
//! slice of real digits (`cargo run --release -p noprop-train --example
//! train_small`).
//!
//! # Layout
//! * [`TrainConfig`] / [`EvalConfig`]: what a run is asked to do, with one
//!   validation step ([`TrainConfig::validate`]) that rejects options of
//!   other methods and contradictory combinations by name.
//! * [`options`]: the typed values of every option (shared with the CLI's
//!   `clap` parser: `--help` lists them, typos get suggestions).
//! * [`Method`]: what one algorithm does inside a mini-batch step; one
//!   implementation per algorithm in [`methods`]. New algorithms and
//!   distributed schedules plug in here.
//! * [`Trainer`]: the loop around it; [`Observer`]s see every epoch, batch
//!   and evaluation ([`TerminalBars`], [`ProgressLines`]).
//! * [`comm`]: the communication layer of distributed training (MPI with
//!   the `mpi` feature, threads, or a single process) behind
//!   `--distributed block|data`: [`methods::BlockParallelDt`] and
//!   [`methods::DataParallel`] (docs/DISTRIBUTED.md).
//! * [`evaluate`]: a checkpoint's test accuracy.
//! * [`memory`]: the counting allocator behind the peak-memory fields.

#![warn(missing_docs)]

pub mod comm;
mod config;
mod data;
mod error;
mod eval;
mod host;
pub mod memory;
mod method;
pub mod methods;
mod observe;
pub mod options;
mod progress;
pub mod prototypes;
mod trainer;

pub use config::{EvalConfig, TrainConfig};
pub use data::{accuracy_with, flat_images, load_data, to_tensor, EVAL_BATCH};
pub use error::{Error, Result};
pub use eval::{evaluate, EvalReport};
pub use host::{git_revision, host_info};
pub use method::{Method, Phase};
pub use methods::checkpoint_method;
pub use observe::{Event, Observer, ProgressLines, TerminalBars, PROGRESS_ENV, PROGRESS_PREFIX};
pub use options::{
    gpu_for_rank, ActivationArg, AnchorCe, CclLossArg, ClassifierArg, DatasetArg, DeviceArg,
    DistributedArg, EmbedGradArg, EmbeddingArg, EmbeddingInitArg, MethodName, OnOff, OrderArg,
    SamplerArg,
};
pub use progress::{
    recorded_normalization, EpochMetrics, Progress, NORMALIZATION_KEY, PROGRESS_KEY,
};
pub use trainer::{TrainReport, Trainer};
