//! `cargo xtask train|eval`: build the release `noprop` binary and run it,
//! passing the arguments through (training never runs in a debug build).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Arguments passed through to `noprop <subcommand>`.
#[derive(clap::Args, Debug)]
pub struct PassThrough {
    /// Arguments for the `noprop` binary (see `noprop train --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// The workspace root (xtask's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The CPU's model name from `/proc/cpuinfo` (`unknown CPU` elsewhere).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The workspace's short git revision (`unknown` outside a checkout).
pub fn git_revision() -> String {
    Command::new("git")
        .current_dir(workspace_root())
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// `cargo build --release` of `package`'s binary `bin`; returns its path.
pub fn build_release(package: &str, bin: &str) -> Result<PathBuf> {
    build_release_with(package, bin, &[])
}

/// [`build_release`] with cargo features of `package` turned on.
pub fn build_release_with(package: &str, bin: &str, features: &[&str]) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let root = workspace_root();
    let mut args = vec!["build", "--release", "-p", package, "--bin", bin];
    let joined = features.join(",");
    if !features.is_empty() {
        args.extend(["--features", joined.as_str()]);
    }
    let status = Command::new(cargo)
        .current_dir(&root)
        .args(&args)
        .status()
        .context("could not run cargo build")?;
    if !status.success() {
        bail!("building {package} failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release").join(bin))
}

/// Build `noprop` and run `noprop <sub> <args…>`, passing output through.
pub fn run(sub: &str, args: PassThrough) -> Result<()> {
    let bin = build_release("noprop", "noprop")?;
    let status = Command::new(&bin)
        .arg(sub)
        .args(&args.args)
        .status()
        .with_context(|| format!("could not start {}", bin.display()))?;
    if !status.success() {
        bail!("noprop {sub} failed ({status})");
    }
    Ok(())
}
