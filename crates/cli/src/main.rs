//! `noprop` — train and evaluate NoProp models and their baselines.
//!
//! ```text
//! noprop train --method noprop-dt --dataset mnist-test-split --embedding one-hot --epochs 2 --seed 0
//! noprop train --method noprop-ct --dataset mnist-test-split --epochs 10 --steps 1000 --sampler ancestral
//! noprop train --method noprop-fm --dataset mnist-test-split --embedding dim20 --epochs 10 --sampler euler
//! noprop train --method backprop --dataset mnist-test-split --embedding one-hot --epochs 2
//! noprop train --method adjoint --dataset mnist-test-split --epochs 2 --steps 1000
//! noprop eval --dataset mnist-test-split --checkpoint results/checkpoints/<run>/last.safetensors
//! noprop data check --dataset fashion-mnist
//! ```
//!
//! A thin shell over the `noprop-train` library: options are parsed into
//! its typed `TrainConfig` / `EvalConfig`, validated there, and run by its
//! `Trainer`. Every training run writes one JSON result (config, seed, git
//! revision, host, per-epoch metrics, wall time, peak memory) and prints
//! `RESULT {json}` as its last line. `cargo xtask train` / `eval` build this
//! binary in release mode and run it.

mod data_cmd;
mod eval_args;
mod launch;
mod switches;
mod train_args;

use anyhow::Result;
use clap::{Parser, Subcommand};
use noprop_train::memory::Counting;

/// mimalloc under the peak-memory counter. It keeps freed pages for reuse:
/// under the system allocator the multi-MB conv activations kept landing
/// on fresh pages, whose page faults took about 8 % of a NoProp-DT epoch
/// (docs/PERFORMANCE.md, round 5).
#[global_allocator]
static GLOBAL: Counting<mimalloc::MiMalloc> = Counting::new(mimalloc::MiMalloc);

/// `mi_option_purge_delay`: position 15 of `mi_option_e` in mimalloc's
/// `mimalloc.h` (libmimalloc-sys names only some of the options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Never hand freed memory back to the OS: a training run frees and
/// re-allocates the same activations every step, and after each purge the
/// kernel had to fault in and zero fresh (huge) pages again, 12 % of a CT
/// inference run in `clear_page_erms`. The process keeps its peak instead.
fn keep_freed_memory() {
    // SAFETY: `mi_option_set` only stores the option's value; mimalloc
    // reads it on its next purge, and -1 is its documented "never purge".
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// No transparent huge pages for this process (`noprop eval`). mimalloc
/// asks for them (`MADV_HUGEPAGE`), and where the kernel's `defrag` setting
/// honours that, a fault on a fresh 2 MiB page can wait for the kernel to
/// compact memory. An inference run touches its ~190 MB working set once
/// and is short: ct-infer (2k digits, 1000 steps) spent 0.24–0.53 s in the
/// kernel with huge pages and 0.10–0.15 s without (median 1.89 → 1.72 s
/// over six alternating runs each, docs/PERFORMANCE.md). Training keeps
/// mimalloc's default: on a 2k-digit backprop epoch two A/B sittings
/// disagreed (about 5 % slower without huge pages in one, 7 % faster in
/// the other), within this machine's noise.
fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process, which
    // the kernel reads at later page faults.
    let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if rc != 0 {
        tracing::debug!(
            "PR_SET_THP_DISABLE failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Run the whole command on a worker of rayon's global pool.
///
/// Every tensor op splits its work with rayon. Called from the main thread,
/// which is not one of the pool's workers, each op is injected into the
/// pool and the main thread sleeps on a lock until it is done: a futex wake
/// and a sleep per op, thousands of times per mini-batch. Called from a
/// worker, the op's halves go on that worker's own queue and the worker
/// helps with them. Same work in the same order, so the same bits; a
/// one-epoch adjoint run on 8k digits went from 9.9–13.0 s to 8.2–10.4 s
/// (docs/PERFORMANCE.md, round 9).
fn on_the_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    // `scope` runs its closure on a worker (from outside the pool it
    // blocks this thread until the closure returns).
    rayon::scope(|_| f())
}

#[derive(Parser, Debug)]
#[command(
    name = "noprop",
    version,
    about = "Train and evaluate NoProp models (arXiv 2503.24322) and their baselines",
    after_help = "Examples:\n  noprop train --method noprop-dt --dataset mnist-test-split --epochs 2\n  noprop eval --dataset mnist-test-split --checkpoint results/checkpoints/noprop-dt-mnist-test-split-one-hot-s0/last.safetensors\n  noprop data check --dataset fashion-mnist\n\nLog level: NOPROP_LOG=debug|info|warn. Progress lines for a parent process: NOPROP_PROGRESS=lines."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a model and write its JSON result and checkpoints.
    #[command(
        after_help = "Examples:\n  noprop train --method noprop-dt --dataset mnist-test-split --embedding one-hot --epochs 2\n  noprop train --method noprop-fm --dataset fashion-mnist --embedding dim20 --steps 1000 --eval-steps 20\n  noprop train --method backprop --dataset cifar10 --epochs 150 --device auto --resume"
    )]
    Train(Box<train_args::TrainArgs>),
    /// Evaluate a checkpoint on a dataset's test split.
    #[command(
        after_help = "Examples:\n  noprop eval --dataset mnist-test-split --checkpoint results/checkpoints/noprop-dt-mnist-test-split-one-hot-s0/last.safetensors --inference-runs 5\n  noprop eval --dataset mnist --checkpoint results/checkpoints/noprop-ct-mnist-one-hot-s0/last.safetensors --sampler heun --steps 40"
    )]
    Eval(eval_args::EvalArgs),
    /// Inspect datasets without training.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
}

fn main() {
    keep_freed_memory();
    let cli = Cli::parse();
    if matches!(cli.command, Command::Eval(_)) {
        no_huge_pages();
    }
    let rank_log = match &cli.command {
        Command::Train(a) => a.rank_log.clone(),
        _ => None,
    };
    let out: Result<()> = on_the_pool(|| {
        launch::init_logging(rank_log.as_deref()).and_then(|()| match cli.command {
            Command::Train(a) => train_args::run(*a),
            Command::Eval(a) => eval_args::run(a),
            Command::Data(c) => data_cmd::run(c),
        })
    });
    if let Err(e) = out {
        match launch::launcher_rank() {
            Some((rank, size)) if size > 1 => eprintln!("error (rank {rank} of {size}): {e:#}"),
            _ => eprintln!("error: {e:#}"),
        }
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Option 15 is the purge delay: it starts at mimalloc's documented
    /// default of 1000 ms (unless the environment overrides it), and
    /// `keep_freed_memory` sets it to "never".
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reading and setting an option only touches mimalloc's
        // option table.
        let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(before, 1000, "option 15 is not mimalloc's purge delay");
        }
        keep_freed_memory();
        // SAFETY: as above.
        assert_eq!(
            unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) },
            -1
        );
    }
}
