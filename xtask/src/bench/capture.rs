//! Running a measuring subprocess and keeping the JSON it prints, the host
//! description stored with every result, and the JSON files under
//! `docs/results/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::run_bin::{cpu_model, git_revision, workspace_root};

/// The JSON values of `out`'s lines (a `RESULT ` prefix is dropped; other
/// lines are skipped).
pub(super) fn lines_json(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim_start_matches("RESULT ")).ok())
        .collect()
}

/// Runs `cmd` to completion and returns the JSON lines of its stdout; fails
/// with its stderr when it exits unsuccessfully.
pub(super) fn run_capture(cmd: &mut Command, what: &str) -> Result<Vec<Value>> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(lines_json(&out.stdout))
}

/// A peer command with the machine's OpenBLAS workarounds removed (they slow
/// a current NumPy) and 2 BLAS threads.
pub(super) fn python(py: &str, script: &Path) -> Command {
    let mut c = Command::new(py);
    c.arg(script)
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .env("OPENBLAS_NUM_THREADS", "2")
        .env("OMP_NUM_THREADS", "2");
    c
}

/// CPU, core count, git revision and UTC date of this measurement.
pub(super) fn host() -> Value {
    let cpu = cpu_model();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rev = git_revision();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    json!({"cpu": cpu, "cores": cores, "git_revision": rev, "date": date})
}

/// `docs/results/`, where every benchmark's JSON goes.
pub(super) fn results_dir() -> PathBuf {
    workspace_root().join("docs").join("results")
}

/// Writes `v` (pretty-printed) to `docs/results/<name>`.
pub(super) fn write_json(name: &str, v: &Value) -> Result<()> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(v)?)
        .with_context(|| format!("writing {}", p.display()))?;
    eprintln!("wrote {}", p.display());
    Ok(())
}

/// Keep the smallest `seconds` per key across rounds.
pub(super) fn best_of(rows: Vec<Value>, key: &[&str]) -> Vec<Value> {
    let mut best: BTreeMap<String, Value> = BTreeMap::new();
    for r in rows {
        let k = key
            .iter()
            .map(|f| r[*f].to_string())
            .collect::<Vec<_>>()
            .join("|");
        let s = r["seconds"].as_f64().unwrap_or(f64::INFINITY);
        let keep = best
            .get(&k)
            .is_none_or(|b| s < b["seconds"].as_f64().unwrap_or(f64::INFINITY));
        if keep {
            best.insert(k, r);
        }
    }
    best.into_values().collect()
}

/// `noprop train` on Fashion-MNIST with the release binary; returns its RESULT.
pub(super) fn train_fashion(bin: &Path, dir: &Path, extra: &[&str], what: &str) -> Result<Value> {
    train_on(bin, dir, "fashion-mnist", extra, what)
}

/// `noprop train --dataset <dataset> --seed 0 --checkpoint-every 0 <extra>`
/// on 2 threads with the release binary, results under `dir`; returns its RESULT.
pub(super) fn train_on(
    bin: &Path,
    dir: &Path,
    dataset: &str,
    extra: &[&str],
    what: &str,
) -> Result<Value> {
    let out = run_capture(
        Command::new(bin)
            .env("RAYON_NUM_THREADS", "2")
            .args([
                "train",
                "--dataset",
                dataset,
                "--seed",
                "0",
                "--checkpoint-every",
                "0",
            ])
            .args(extra)
            .arg("--results-dir")
            .arg(dir),
        what,
    )?;
    out.into_iter()
        .last()
        .with_context(|| format!("no RESULT line from {what}"))
}

/// `noprop eval` of `checkpoint` on the Fashion-MNIST test set; returns its RESULT.
pub(super) fn eval_fashion(
    bin: &Path,
    checkpoint: &str,
    extra: &[&str],
    what: &str,
) -> Result<Value> {
    let out = run_capture(
        Command::new(bin)
            .env("RAYON_NUM_THREADS", "2")
            .args([
                "eval",
                "--dataset",
                "fashion-mnist",
                "--checkpoint",
                checkpoint,
            ])
            .args(extra),
        what,
    )?;
    out.into_iter()
        .last()
        .with_context(|| format!("no RESULT line from {what}"))
}
