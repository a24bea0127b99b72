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

/// `mpirun --oversubscribe -np ranks bin` (as root too: Open MPI's
/// `OMPI_ALLOW_RUN_AS_ROOT*` variables are set; they are ignored otherwise).
pub fn mpirun(ranks: usize, bin: &Path) -> Command {
    let mut c = Command::new("mpirun");
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args(["--oversubscribe", "-np"])
        .arg(ranks.to_string())
        .arg(bin);
    c
}

/// `--mpi R` taken out of pass-through arguments (`cargo xtask train --mpi 2 …`).
pub fn take_mpi(args: &mut Vec<String>) -> Result<Option<usize>> {
    let Some(i) = args
        .iter()
        .position(|a| a == "--mpi" || a.starts_with("--mpi="))
    else {
        return Ok(None);
    };
    let value = match args[i].strip_prefix("--mpi=") {
        Some(v) => {
            let v = v.to_string();
            args.remove(i);
            v
        }
        None => {
            if i + 1 >= args.len() {
                bail!("--mpi needs a rank count, e.g. --mpi 2");
            }
            args.remove(i);
            args.remove(i)
        }
    };
    match value.parse::<usize>() {
        Ok(r) if r >= 1 => Ok(Some(r)),
        _ => bail!("--mpi {value}: expected a rank count ≥ 1"),
    }
}

/// Build `noprop` and run `noprop <sub> <args…>`, passing output through;
/// `train --mpi R …` builds it with MPI and runs it under `mpirun -np R`
/// (add `--distributed block|data`).
pub fn run(sub: &str, mut args: PassThrough) -> Result<()> {
    let mpi = if sub == "train" {
        take_mpi(&mut args.args)?
    } else {
        None
    };
    let (bin, mut cmd) = match mpi {
        Some(r) => {
            let bin = build_release_with("noprop", "noprop", &["mpi"])?;
            let cmd = mpirun(r, &bin);
            (bin, cmd)
        }
        None => {
            let bin = build_release("noprop", "noprop")?;
            let cmd = Command::new(&bin);
            (bin, cmd)
        }
    };
    let status = cmd
        .arg(sub)
        .args(&args.args)
        .status()
        .with_context(|| format!("could not start {}", bin.display()))?;
    if !status.success() {
        bail!("noprop {sub} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::take_mpi;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn mpi_ranks_are_taken_out_of_the_pass_through_arguments() {
        let mut a = args(&["--dataset", "mnist", "--mpi", "3", "--epochs", "2"]);
        assert_eq!(take_mpi(&mut a).unwrap(), Some(3));
        assert_eq!(a, args(&["--dataset", "mnist", "--epochs", "2"]));
        let mut a = args(&["--mpi=2"]);
        assert_eq!(take_mpi(&mut a).unwrap(), Some(2));
        assert!(a.is_empty());
        let mut a = args(&["--epochs", "2"]);
        assert_eq!(take_mpi(&mut a).unwrap(), None);
        for bad in [&["--mpi"][..], &["--mpi", "0"], &["--mpi", "two"]] {
            assert!(take_mpi(&mut args(bad)).is_err(), "{bad:?}");
        }
    }
}
