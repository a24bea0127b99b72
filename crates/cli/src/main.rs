//! `noprop` — train and evaluate NoProp models and their baselines.
//!
//! ```text
//! noprop train --method noprop-dt --dataset mnist-test-split --embedding one-hot --epochs 2 --seed 0
//! noprop train --method noprop-ct --dataset mnist-test-split --epochs 10 --steps 1000 --sampler ancestral
//! noprop train --method noprop-fm --dataset mnist-test-split --embedding dim20 --epochs 10 --sampler euler
//! noprop train --method backprop --dataset mnist-test-split --embedding one-hot --epochs 2
//! noprop train --method adjoint --dataset mnist-test-split --epochs 2 --steps 1000
//! noprop eval --checkpoint results/checkpoints/<run>/last.safetensors
//! ```
//!
//! Every run writes one JSON result (config, seed, git revision, host,
//! per-epoch metrics, wall time, peak memory) and prints `RESULT {json}` as
//! its last line. `cargo xtask train` / `eval` build this binary in release
//! mode and run it.

mod alloc;
mod base;
mod cont;
mod driver;
mod run;

use std::io::IsTerminal;

use clap::{Parser, Subcommand};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

#[derive(Parser, Debug)]
#[command(name = "noprop", version, about = "Train and evaluate NoProp models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model and write its JSON result and checkpoints.
    Train(Box<run::TrainArgs>),
    /// Evaluate a checkpoint on a dataset's test split.
    Eval(run::EvalArgs),
}

fn main() {
    noprop_tensor::tune_host_allocator();
    let filter = tracing_subscriber::EnvFilter::try_from_env("NOPROP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let out = match cli.command {
        Command::Train(a) => run::train(*a),
        Command::Eval(a) => run::eval(a),
    };
    if let Err(e) = out {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
