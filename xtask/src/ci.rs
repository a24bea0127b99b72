//! `cargo xtask ci`: the checks `.ci/run` performs once its installs are done.
//!
//! The steps live in one list, [`STEPS`], that `.ci/run` also executes (it
//! calls `cargo xtask ci`), so the two can never drift apart. Before them,
//! `check-refs` (in process, no build) checks that every decision cited in
//! the code and docs has its section in `docs/DECISIONS.md`, and
//! `check-host-reads` (in process) that the crates above the tensor crate
//! read no host slices outside its allow-list.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Options of `cargo xtask ci`.
#[derive(clap::Args, Debug)]
pub struct CiArgs {
    /// Skip `check-refs`, `check-host-reads`, `cargo fmt --check`, clippy and docs (run the test
    /// steps only).
    #[arg(long)]
    pub tests_only: bool,
}

/// The CI steps, in order: a name and the cargo arguments.
pub const STEPS: &[(&str, &[&str])] = &[
    ("format", &["fmt", "--all", "--check"]),
    (
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--release",
            "--",
            "-D",
            "warnings",
        ],
    ),
    // The CUDA backend compiles without a toolkit (cudarc loads the
    // libraries at run time), so it is linted like the rest.
    (
        "clippy-cuda",
        &[
            "clippy",
            "-p",
            "noprop-tensor",
            "-p",
            "noprop-nn",
            "-p",
            "noprop-models",
            "-p",
            "noprop-train",
            "-p",
            "noprop",
            "--features",
            "noprop/cuda",
            "--all-targets",
            "--release",
            "--",
            "-D",
            "warnings",
        ],
    ),
    // The MPI communicator (`--distributed` under mpirun) builds against
    // Open MPI, which `.ci/run` installs; the default build needs none.
    (
        "clippy-mpi",
        &[
            "clippy",
            "-p",
            "noprop-train",
            "-p",
            "noprop",
            "--features",
            "noprop/mpi",
            "--all-targets",
            "--release",
            "--",
            "-D",
            "warnings",
        ],
    ),
    ("docs", &["doc", "--workspace", "--no-deps", "--release"]),
    (
        "docs-cuda",
        &[
            "doc",
            "-p",
            "noprop-tensor",
            "-p",
            "noprop-nn",
            "-p",
            "noprop-models",
            "--features",
            "noprop-models/cuda",
            "--no-deps",
            "--release",
        ],
    ),
    // The README's test command.
    ("tests", &["test", "--workspace", "--release"]),
    // The library trainer's example, as a user runs it (NoProp-DT on 1,024
    // real digits through `noprop-train`).
    (
        "example",
        &[
            "run",
            "--release",
            "-p",
            "noprop-train",
            "--example",
            "train_small",
        ],
    ),
    // The CUDA tests: `nvrtc_*` compile every kernel with NVRTC for sm_90
    // (needs libnvrtc.so.13, which `.ci/run` installs); the op, dispatch and
    // NoProp-DT step and per-method parity tests skip, saying why, when there
    // is no GPU.
    (
        "tests-cuda",
        &[
            "test",
            "-p",
            "noprop-tensor",
            "-p",
            "noprop-models",
            "-p",
            "noprop-train",
            "--features",
            "noprop-models/cuda,noprop-train/cuda",
            "--release",
        ],
    ),
    // Block-parallel NoProp-DT under `mpirun -np 2|3` (crates/cli/tests/mpi.rs):
    // bit-identity with the single process and resume after a killed rank.
    // NOPROP_REQUIRE_MPI=1 (set below) makes a missing mpirun a failure.
    (
        "tests-mpi",
        &[
            "test",
            "-p",
            "noprop",
            "--features",
            "noprop/mpi",
            "--release",
            "--test",
            "mpi",
        ],
    ),
];

/// Run every step, stopping at the first failure.
pub fn run(args: CiArgs) -> Result<()> {
    if !args.tests_only {
        eprintln!("==> ci step `check-refs`");
        crate::check_refs::run(crate::check_refs::CheckRefsArgs::default())
            .context("ci step `check-refs` failed")?;
        eprintln!("==> ci step `check-host-reads`");
        crate::check_host_reads::run(crate::check_host_reads::CheckHostReadsArgs::default())
            .context("ci step `check-host-reads` failed")?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    for (name, cargo_args) in STEPS {
        if args.tests_only && !(name.starts_with("tests") || *name == "example") {
            continue;
        }
        eprintln!("==> ci step `{name}`: cargo {}", cargo_args.join(" "));
        let mut cmd = Command::new(&cargo);
        cmd.args(*cargo_args);
        if name.starts_with("docs") {
            cmd.env("RUSTDOCFLAGS", "-D warnings");
        }
        if *name == "tests-mpi" {
            cmd.env("NOPROP_REQUIRE_MPI", "1");
        }
        let status = cmd
            .status()
            .with_context(|| format!("could not start `cargo {}`", cargo_args.join(" ")))?;
        if !status.success() {
            bail!("ci step `{name}` failed ({status})");
        }
    }
    eprintln!("==> all ci steps passed");
    Ok(())
}
