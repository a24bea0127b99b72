//! `cargo xtask` — project automation for noprop-rs.
//!
//! A thin debug binary (the alias in `.cargo/config.toml` is
//! `run --package xtask --`). Heavy work runs in release-built subprocesses.
//!
//! * `cargo xtask ci` runs exactly what `.ci/run` runs after its installs:
//!   the reference check, formatting, clippy (also with `--features cuda`),
//!   docs, the README's test command and the CUDA compile check.
//! * `cargo xtask check-refs` checks that every decision cited in code and
//!   docs has its section in `docs/DECISIONS.md` and that nothing points to
//!   design notes outside the repository.
//! * `cargo xtask digest FILE...` prints the tensor digest of checkpoints
//!   (metadata excluded), to check that a change leaves training bit-identical.
//! * `cargo xtask check-host-reads` checks that the crates above the tensor
//!   crate call tensor ops only (no host-slice reads outside an allow-list).
//! * `cargo xtask fetch-data <mnist|fashion-mnist|cifar10|cifar100|tiny-imagenet|all>`
//!   downloads and verifies datasets.
//! * `cargo xtask train …` / `eval …` build the release `noprop` binary and
//!   run it with the given arguments.
//! * `cargo xtask reproduce [--quick|--full]` trains every cell of the
//!   paper's tables as subprocesses and renders `results/<mode>/REPORT.md`
//!   (and `docs/REPRODUCTION.md` with `--update-docs`).
//! * `cargo xtask bench [gemm|dt|all]` times our kernels and training next to
//!   their peers (NumPy/OpenBLAS, PyTorch) in one sitting and renders
//!   `docs/BENCHMARKS.md` from the JSON it writes under `docs/results/`.
//! * `cargo xtask gpu-check` builds the CUDA parity test binaries and runs
//!   them through `benches/gpu/gpu_check.sh` (CUDA vs CPU on a real GPU).

mod bench;
mod check_host_reads;
mod check_refs;
mod ci;
mod digest;
mod fetch_data;
mod gpu_check;
mod reproduce;
mod run_bin;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "cargo xtask", about = "noprop-rs project automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the CI checks: fmt, clippy, then the test command of README.md.
    Ci(ci::CiArgs),
    /// Check that every cited decision (`docs/DECISIONS.md § N`, `decision N`)
    /// and note resolves, and that nothing points outside the repository.
    CheckRefs(check_refs::CheckRefsArgs),
    /// Check that the crates above the tensor crate read no host slices on
    /// training/inference paths (outside an allow-list with reasons).
    CheckHostReads(check_host_reads::CheckHostReadsArgs),
    /// Print the tensor digest of safetensors checkpoints (metadata excluded).
    Digest(digest::DigestArgs),
    /// Download and verify a dataset into ./datasets (or --data-dir).
    FetchData(fetch_data::FetchDataArgs),
    /// Train a model (builds and runs the release `noprop train`).
    Train(run_bin::PassThrough),
    /// Evaluate a checkpoint (builds and runs the release `noprop eval`).
    Eval(run_bin::PassThrough),
    /// Run benchmarks and peers in one sitting and render docs/BENCHMARKS.md.
    Bench(bench::BenchArgs),
    /// Reproduce the paper's tables and figure (quick CPU preset or --full).
    Reproduce(Box<reproduce::ReproduceArgs>),
    /// Build the CUDA test binaries and run them (CUDA vs CPU parity) on this
    /// machine's GPU; fails when the parity tests are skipped.
    GpuCheck,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Ci(args) => ci::run(args),
        Command::CheckRefs(args) => check_refs::run(args),
        Command::CheckHostReads(args) => check_host_reads::run(args),
        Command::Digest(args) => digest::run(args),
        Command::FetchData(args) => fetch_data::run(args),
        Command::Train(args) => run_bin::run("train", args),
        Command::Eval(args) => run_bin::run("eval", args),
        Command::Bench(args) => bench::run(args),
        Command::Reproduce(args) => reproduce::run(*args),
        Command::GpuCheck => gpu_check::run(),
    }
}
