//! `cargo xtask bench [gemm|dt-step|dt-epoch|all]`: run our benchmarks and
//! their peers in one sitting, store the raw numbers as JSON under
//! `docs/results/`, and render `docs/BENCHMARKS.md` from every JSON there.
//!
//! Each peer runs in the same invocation as ours, alternating rounds, so the
//! ratios compare numbers measured minutes apart on the same machine. Run it
//! with nothing else on the machine: two 2-thread processes at once slow each
//! other several-fold.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::run_bin::{build_release, workspace_root};

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Which benchmark: gemm, dt-step, dt-epoch, all, or render (only re-render the report).
    #[arg(default_value = "gemm")]
    pub what: String,
    /// Rounds of alternating ours/peer runs (the best median per side is kept).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Epochs of ours for dt-epoch (test accuracy is reported after each).
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Epochs of the PyTorch peer for dt-epoch (the throughput ratio uses epoch 1).
    #[arg(long, default_value_t = 1)]
    pub peer_epochs: usize,
    /// Python interpreter for the peers.
    #[arg(long, default_value = "python3")]
    pub python: String,
}

fn lines_json(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim_start_matches("RESULT ")).ok())
        .collect()
}

fn run_capture(cmd: &mut Command, what: &str) -> Result<Vec<Value>> {
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
fn python(py: &str, script: &Path) -> Command {
    let mut c = Command::new(py);
    c.arg(script)
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .env("OPENBLAS_NUM_THREADS", "2")
        .env("OMP_NUM_THREADS", "2");
    c
}

fn host() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    json!({"cpu": cpu, "cores": cores, "git_revision": rev, "date": date})
}

fn results_dir() -> PathBuf {
    workspace_root().join("docs").join("results")
}

fn write_json(name: &str, v: &Value) -> Result<()> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string_pretty(v)?)
        .with_context(|| format!("writing {}", p.display()))?;
    eprintln!("wrote {}", p.display());
    Ok(())
}

/// Keep the smallest `seconds` per key across rounds.
fn best_of(rows: Vec<Value>, key: &[&str]) -> Vec<Value> {
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

fn bench_gemm(a: &BenchArgs) -> Result<()> {
    let bin = build_release("noprop-benches", "gemm_report")?;
    let script = workspace_root().join("benches/peers/gemm_numpy.py");
    let mut rows = Vec::new();
    for round in 0..a.rounds {
        eprintln!("gemm round {}/{}", round + 1, a.rounds);
        rows.extend(run_capture(
            Command::new(&bin).env("RAYON_NUM_THREADS", "2"),
            "gemm_report",
        )?);
        rows.extend(run_capture(
            &mut python(&a.python, &script),
            "gemm_numpy.py",
        )?);
    }
    let rows = best_of(rows, &["shape", "impl"]);
    write_json(
        "gemm.json",
        &json!({"host": host(), "threads": 2, "rounds": a.rounds, "rows": rows}),
    )
}

fn bench_dt_step(a: &BenchArgs) -> Result<()> {
    let bin = build_release("noprop-benches", "dt_step")?;
    let script = workspace_root().join("benches/peers/noprop_dt_torch.py");
    let mut rows = Vec::new();
    for round in 0..a.rounds {
        eprintln!("dt-step round {}/{}", round + 1, a.rounds);
        rows.extend(run_capture(
            Command::new(&bin).env("RAYON_NUM_THREADS", "2"),
            "dt_step",
        )?);
        rows.extend(run_capture(
            python(&a.python, &script).args(["step", "--threads", "2"]),
            "noprop_dt_torch.py step",
        )?);
    }
    let rows = best_of(rows, &["input", "impl"]);
    write_json(
        "dt_step.json",
        &json!({"host": host(), "threads": 2, "rounds": a.rounds, "rows": rows}),
    )
}

fn bench_dt_epoch(a: &BenchArgs) -> Result<()> {
    let bin = build_release("noprop", "noprop")?;
    let tmp = std::env::temp_dir().join("noprop-bench-dt-epoch");
    let ours = run_capture(
        Command::new(&bin)
            .env("RAYON_NUM_THREADS", "2")
            .args([
                "train",
                "--method",
                "noprop-dt",
                "--dataset",
                "fashion-mnist",
                "--embedding",
                "one-hot",
                "--epochs",
                &a.epochs.to_string(),
                "--seed",
                "0",
                "--checkpoint-every",
                "0",
                "--results-dir",
            ])
            .arg(&tmp),
        "noprop train (fashion-mnist)",
    )?;
    let ours = ours
        .into_iter()
        .last()
        .context("no RESULT line from noprop train")?;
    let script = workspace_root().join("benches/peers/noprop_dt_torch.py");
    let peer = run_capture(
        python(&a.python, &script).args([
            "epoch",
            "--threads",
            "2",
            "--epochs",
            &a.peer_epochs.to_string(),
        ]),
        "noprop_dt_torch.py epoch",
    )?;
    write_json(
        "dt_epoch.json",
        &json!({"host": host(), "threads": 2, "epochs": a.epochs, "ours": ours, "pytorch": peer}),
    )
}

fn read(name: &str) -> Option<Value> {
    let p = results_dir().join(name);
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Render docs/BENCHMARKS.md from docs/results/*.json.
pub fn render() -> Result<()> {
    let mut md = String::from(
        "# Benchmarks\n\nWritten by `cargo xtask bench` from the JSON in `docs/results/` — do not edit by hand.\n\
         Every ratio compares two numbers measured in the same invocation on the same machine, 2 threads each.\n",
    );
    if let Some(g) = read("gemm.json") {
        md += &format!(
            "\n## GEMM (f32, batch-128 shapes of the paper's block)\n\nHost: {} ({} cores), revision {}, {}; best median of {} alternating rounds.\n\n\
             | shape M×K×N | what | ours GFLOP/s | matrixmultiply GFLOP/s | NumPy/OpenBLAS GFLOP/s | ours / OpenBLAS |\n|---|---|---:|---:|---:|---:|\n",
            g["host"]["cpu"].as_str().unwrap_or("?"),
            g["host"]["cores"],
            g["host"]["git_revision"].as_str().unwrap_or("?"),
            g["host"]["date"].as_str().unwrap_or("?"),
            g["rounds"]
        );
        let rows = g["rows"].as_array().cloned().unwrap_or_default();
        let mut shapes: Vec<(String, String)> = Vec::new();
        for r in &rows {
            let s = (
                r["shape"].as_str().unwrap_or("").to_string(),
                r["label"].as_str().unwrap_or("").to_string(),
            );
            if !shapes.contains(&s) {
                shapes.push(s);
            }
        }
        for (shape, label) in shapes {
            let get = |imp: &str| {
                rows.iter()
                    .find(|r| r["shape"] == shape.as_str() && r["impl"] == imp)
                    .map(|r| f(&r["gflops"]))
                    .unwrap_or(f64::NAN)
            };
            let (o, mm, nb) = (
                get("noprop (gemm crate)"),
                get("matrixmultiply"),
                get("numpy/OpenBLAS"),
            );
            md += &format!(
                "| {shape} | {label} | {o:.1} | {mm:.1} | {nb:.1} | {:.2} |\n",
                o / nb
            );
        }
        md += "\nThe `gemm` crate was chosen over `matrixmultiply` on these numbers.\n";
    }
    if let Some(g) = read("dt_step.json") {
        md += &format!(
            "\n## One NoProp-DT block training step (batch 128, one-hot, block update + classifier step)\n\nHost: {}, revision {}, {}.\n\n\
             | input | noprop-rs img/s | PyTorch img/s | ratio |\n|---|---:|---:|---:|\n",
            g["host"]["cpu"].as_str().unwrap_or("?"),
            g["host"]["git_revision"].as_str().unwrap_or("?"),
            g["host"]["date"].as_str().unwrap_or("?")
        );
        let rows = g["rows"].as_array().cloned().unwrap_or_default();
        for input in ["1x28x28", "3x32x32"] {
            let get = |imp: &str| {
                rows.iter()
                    .find(|r| r["input"] == input && r["impl"] == imp)
                    .map(|r| f(&r["images_per_second"]))
                    .unwrap_or(f64::NAN)
            };
            let (o, p) = (get("noprop-rs"), get("pytorch"));
            md += &format!("| {input} | {o:.1} | {p:.1} | {:.2} |\n", o / p);
        }
    }
    if let Some(g) = read("dt_epoch.json") {
        let ours = &g["ours"];
        md += &format!(
            "\n## NoProp-DT on Fashion-MNIST (60k images, T = 10, batch 128, one-hot, `--order batch`)\n\nHost: {}, revision {}, {}.\n\n\
             | epoch | noprop-rs s | noprop-rs img/s | noprop-rs test acc | PyTorch s | PyTorch img/s | PyTorch test acc | throughput ratio |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            g["host"]["cpu"].as_str().unwrap_or("?"),
            g["host"]["git_revision"].as_str().unwrap_or("?"),
            g["host"]["date"].as_str().unwrap_or("?")
        );
        let per = ours["per_epoch"].as_array().cloned().unwrap_or_default();
        let peer = g["pytorch"].as_array().cloned().unwrap_or_default();
        for (i, e) in per.iter().enumerate() {
            // Epochs the peer did not run show as NaN.
            let p = peer.get(i).cloned().unwrap_or(Value::Null);
            md += &format!(
                "| {} | {:.1} | {:.1} | {:.4} | {:.1} | {:.1} | {:.4} | {:.2} |\n",
                i + 1,
                f(&e["train_seconds"]),
                f(&e["images_per_second"]),
                f(&e["test_accuracy"]),
                f(&p["train_seconds"]),
                f(&p["images_per_second"]),
                f(&p["test_accuracy"]),
                f(&e["images_per_second"]) / f(&p["images_per_second"])
            );
        }
        md += &format!(
            "\nPeak heap (ours): {:.2} GB; peak RSS: {:.2} GB.\n",
            f(&ours["peak_memory_bytes"]) / 1e9,
            f(&ours["peak_rss_bytes"]) / 1e9
        );
    }
    let p = workspace_root().join("docs").join("BENCHMARKS.md");
    std::fs::write(&p, md).with_context(|| format!("writing {}", p.display()))?;
    eprintln!("wrote {}", p.display());
    Ok(())
}

/// `cargo xtask bench`.
pub fn run(a: BenchArgs) -> Result<()> {
    match a.what.as_str() {
        "gemm" => bench_gemm(&a)?,
        "dt-step" => bench_dt_step(&a)?,
        "dt-epoch" => bench_dt_epoch(&a)?,
        "all" => {
            bench_gemm(&a)?;
            bench_dt_step(&a)?;
            bench_dt_epoch(&a)?;
        }
        "render" => {}
        other => bail!("unknown benchmark `{other}` (gemm, dt-step, dt-epoch, all, render)"),
    }
    render()
}
