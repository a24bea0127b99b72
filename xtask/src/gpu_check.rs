//! `cargo xtask gpu-check`: build the CUDA test binaries of noprop-tensor
//! (release, feature `cuda`) and run them through `benches/gpu/gpu_check.sh`,
//! which fails if any parity test was skipped for want of a GPU.
//!
//! On a GPU machine without a Rust toolchain, bundle the binaries elsewhere
//! (`benches/gpu/gpu_check.sh --bundle DIR`) and run `DIR/gpu_check.sh`.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// Build the test binaries, then run the GPU check script.
pub fn run() -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let build = [
        "test",
        "--release",
        "-p",
        "noprop-tensor",
        "--features",
        "cuda",
        "--no-run",
    ];
    eprintln!("==> cargo {}", build.join(" "));
    let status = Command::new(&cargo)
        .args(build)
        .status()
        .context("could not start cargo")?;
    if !status.success() {
        bail!("building the CUDA test binaries failed ({status})");
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
