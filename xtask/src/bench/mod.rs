//! `cargo xtask bench [gemm|dt-step|dt-epoch|ct-fm|baselines|pytorch|fidelity|distributed|distributed-accuracy|all|render]`:
//! run our benchmarks and their peers in one sitting, store the raw numbers
//! as JSON under `docs/results/`, and render `docs/BENCHMARKS.md` from every
//! JSON there.
//!
//! Each peer runs in the same invocation as ours, alternating rounds, so the
//! ratios compare numbers measured minutes apart on the same machine. Run it
//! with nothing else on the machine: two 2-thread processes at once slow each
//! other several-fold.
//!
//! * [`capture`]: running a measuring subprocess and keeping its `RESULT`
//!   JSON lines; host description; writing `docs/results/<name>.json`.
//! * [`kernels`]: `gemm` and `dt-step`, the kernel-level benchmarks.
//! * [`training`]: `dt-epoch`, `ct-fm` and `baselines`, whole `noprop train`
//!   and `noprop eval` runs.
//! * [`pytorch`]: `pytorch --row ROW`, one row of the table against the
//!   PyTorch transcriptions in `benches/peers/` (training and 1000-step
//!   inference of every method).
//! * [`fidelity`]: CT and FM with each embedding on the real-digit split,
//!   ours beside the PyTorch transcription at equal epochs and steps.
//! * [`render`]: `docs/BENCHMARKS.md` from `docs/results/*.json` (`bench
//!   render` runs only this step).

mod capture;
mod distributed;
mod fidelity;
mod kernels;
mod pytorch;
mod render;
mod training;

use anyhow::{bail, Result};

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Which benchmark: gemm, dt-step, dt-epoch, ct-fm, baselines, pytorch (one `--row` against the PyTorch transcriptions), fidelity (CT/FM accuracies beside the PyTorch transcription's; `--epochs` each), distributed (needs mpirun; writes docs/DISTRIBUTED.md's measured section), distributed-accuracy (needs mpirun; the whole split: data-parallel and block-parallel dim20 accuracies against the single process), all, or render (only re-render the report).
    #[arg(default_value = "gemm")]
    pub what: String,
    /// Rounds of alternating ours/peer runs (the best median per side is kept).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Epochs of ours for dt-epoch (test accuracy is reported after each).
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Epochs of the PyTorch peer for dt-epoch (the throughput ratio uses epoch 1).
    #[arg(long, default_value_t = 1)]
    pub peer_epochs: usize,
    /// Seeds of `distributed-accuracy` (0, 1, …): each trains the four runs once.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// `distributed-accuracy`: keep the seeds already in
    /// docs/results/distributed_accuracy.json (each run records its revision)
    /// and train only the missing ones.
    #[arg(long)]
    pub keep_seeds: bool,
    /// `pytorch`: the row to measure (fm-infer, ct-infer, dt-train,
    /// adjoint-train, ct-train, fm-train, backprop-train, or all).
    #[arg(long)]
    pub row: Option<String>,
    /// Python interpreter for the peers.
    #[arg(long, default_value = "python3")]
    pub python: String,
}

/// `cargo xtask bench`.
pub fn run(a: BenchArgs) -> Result<()> {
    match a.what.as_str() {
        "gemm" => kernels::gemm(&a)?,
        "dt-step" => kernels::dt_step(&a)?,
        "dt-epoch" => training::dt_epoch(&a)?,
        "ct-fm" => training::ct_fm(&a)?,
        "baselines" => training::baselines(&a)?,
        "pytorch" => pytorch::pytorch(&a)?,
        "fidelity" => fidelity::fidelity(&a)?,
        // Needs mpirun; not part of `all`.
        "distributed" => distributed::distributed(&a)?,
        // Needs mpirun; the whole split, accuracies of the distributed
        // schedules against the single process.
        "distributed-accuracy" => distributed::accuracy(&a)?,
        "all" => {
            kernels::gemm(&a)?;
            kernels::dt_step(&a)?;
            training::dt_epoch(&a)?;
            training::ct_fm(&a)?;
            training::baselines(&a)?;
        }
        "render" => distributed::render_all(&capture::results_dir())?,
        other => bail!(
            "unknown benchmark `{other}` (gemm, dt-step, dt-epoch, ct-fm, baselines, pytorch, fidelity, distributed, distributed-accuracy, all, render)"
        ),
    }
    render::render()
}
