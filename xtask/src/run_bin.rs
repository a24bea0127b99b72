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

/// The CPU as reports name it: the model name from `/proc/cpuinfo`
/// (`unknown CPU` elsewhere), then its family and model numbers and the
/// widest vector ISA the kernels dispatch on, e.g. `AMD EPYC (family 25,
/// model 1, AVX2)`. Virtual machines often hide the marketing name (both
/// a Zen 3 and a Zen 4 EPYC read `AMD EPYC`), and the GEMM microkernels
/// and the Box–Muller lanes take AVX-512 or AVX2 paths by runtime
/// detection, so a report without the ISA cannot say which machine it
/// measured.
pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(key))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
    };
    let name = field("model name").unwrap_or_else(|| "unknown CPU".into());
    let mut detail = Vec::new();
    if let Some(f) = field("cpu family") {
        detail.push(format!("family {f}"));
    }
    if let Some(m) = field("model") {
        detail.push(format!("model {m}"));
    }
    detail.extend(vector_isa());
    if detail.is_empty() {
        name
    } else {
        format!("{name} ({})", detail.join(", "))
    }
}

/// The widest x86-64 vector ISA of this CPU that the kernels use.
fn vector_isa() -> Option<String> {
    #[cfg(target_arch = "x86_64")]
    {
        let isa = if std::is_x86_feature_detected!("avx512f") {
            "AVX-512"
        } else if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            "AVX2"
        } else {
            "SSE2"
        };
        Some(isa.to_string())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
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
    use super::{cpu_model, take_mpi};

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

    /// Reports name the vector ISA the kernels run (a Zen 3 and a Zen 4
    /// EPYC can both read `AMD EPYC` in a virtual machine).
    #[test]
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    fn cpu_model_names_family_model_and_isa() {
        let cpu = cpu_model();
        let detail = cpu
            .rsplit_once(" (")
            .and_then(|(_, d)| d.strip_suffix(')'))
            .unwrap_or_else(|| panic!("no detail in parentheses: {cpu}"));
        assert!(detail.starts_with("family "), "{cpu}");
        assert!(detail.contains(", model "), "{cpu}");
        let isa = detail.rsplit(", ").next().unwrap_or_default();
        assert!(["AVX-512", "AVX2", "SSE2"].contains(&isa), "{cpu}");
    }
}
