//! `cargo xtask gpu-check`: build the CUDA test binaries of noprop-tensor,
//! noprop-models and noprop-train and the `noprop` binary (release, feature `cuda`), then run
//! `benches/gpu/gpu_check.sh`: the parity tests (failing if any was skipped
//! for want of a GPU), one NoProp-DT Fashion-MNIST epoch with `noprop` and
//! with the PyTorch peer on the GPU, and `docs/GPU.md` with the timings.
//!
//! On a GPU machine without a Rust toolchain, bundle the binaries elsewhere
//! (`benches/gpu/gpu_check.sh --bundle DIR`) and run `DIR/gpu_check.sh`.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Build the test binaries, then run the GPU check script.
pub fn run() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let builds: [&[&str]; 2] = [
        &[
            "test",
            "--release",
            "-p",
            "noprop-tensor",
            "-p",
            "noprop-models",
            "-p",
            "noprop-train",
            "--features",
            "noprop-models/cuda,noprop-train/cuda",
            "--no-run",
        ],
        &["build", "--release", "-p", "noprop", "--features", "cuda"],
    ];
    for build in builds {
        eprintln!("==> cargo {}", build.join(" "));
        let status = Command::new(&cargo)
            .args(build)
            .status()
            .context("could not start cargo")?;
        if !status.success() {
            bail!("building the CUDA binaries failed ({status})");
        }
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../benches/gpu/gpu_check.sh");
    let status = Command::new("bash")
        .arg(script)
        .status()
        .with_context(|| format!("could not run {script}"))?;
    if !status.success() {
        bail!("GPU check failed ({status})");
    }
    Ok(())
}
