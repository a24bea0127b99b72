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

use crate::run_bin::{build_release, cpu_model, git_revision, workspace_root};

/// Options of `cargo xtask bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Which benchmark: gemm, dt-step, dt-epoch, ct-fm, baselines, all, or render (only re-render the report).
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

/// `noprop train` on Fashion-MNIST with the release binary; returns its RESULT.
fn train_fashion(bin: &Path, dir: &Path, extra: &[&str], what: &str) -> Result<Value> {
    let out = run_capture(
        Command::new(bin)
            .env("RAYON_NUM_THREADS", "2")
            .args([
                "train",
                "--dataset",
                "fashion-mnist",
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
fn eval_fashion(bin: &Path, checkpoint: &str, extra: &[&str], what: &str) -> Result<Value> {
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

/// NoProp-CT and NoProp-FM (one-hot) on Fashion-MNIST: one epoch's wall
/// time and test accuracy (1000-step inference), then inference time for
/// the 10,000 test images at 1000 steps with the image path cached, and
/// without it (timed at 10 steps and scaled ×100: the per-step cost does
/// not depend on the step count; 1000 uncached steps take over an hour).
fn bench_ct_fm(_a: &BenchArgs) -> Result<()> {
    let bin = build_release("noprop", "noprop")?;
    let tmp = std::env::temp_dir().join("noprop-bench-ct-fm");
    let mut rows = Vec::new();
    for method in ["noprop-ct", "noprop-fm"] {
        eprintln!("ct-fm: {method}, one epoch");
        let train = train_fashion(
            &bin,
            &tmp,
            &[
                "--method",
                method,
                "--embedding",
                "one-hot",
                "--epochs",
                "1",
                "--steps",
                "1000",
                "--train-eval-limit",
                "1000",
            ],
            method,
        )?;
        let ckpt = train["checkpoint"]
            .as_str()
            .context("RESULT has no checkpoint")?
            .to_string();
        let timing = |steps: &str, cache: &str| -> Result<Value> {
            eprintln!("ct-fm: {method} inference, {steps} steps, image cache {cache}");
            eval_fashion(
                &bin,
                &ckpt,
                &["--steps", steps, "--image-cache", cache],
                "noprop eval",
            )
        };
        let cached_1000 = timing("1000", "on")?;
        let cached_10 = timing("10", "on")?;
        let uncached_10 = timing("10", "off")?;
        rows.push(json!({
            "method": method,
            "train": train,
            "cached_1000": cached_1000,
            "cached_10": cached_10,
            "uncached_10": uncached_10,
        }));
    }
    write_json(
        "ct_fm.json",
        &json!({"host": host(), "threads": 2, "rows": rows}),
    )
}

/// The baselines next to NoProp: (a) one epoch of backprop and of
/// NoProp-DT on the first 20,000 Fashion-MNIST training images, in the
/// same invocation (full test set); (b) peak training memory of all five
/// methods at batch 128 on Fashion-MNIST shapes (10 mini-batches each: the
/// peak is reached in the first); (c) adjoint seconds per epoch at 10, 100
/// and 1000 Euler steps on 1,280 images; (d) early training on the real
/// digits (mnist-test-split), backprop vs NoProp-DT, accuracy against
/// epochs and time.
fn bench_baselines(a: &BenchArgs) -> Result<()> {
    let bin = build_release("noprop", "noprop")?;
    let tmp = std::env::temp_dir().join("noprop-bench-baselines");
    let mut epoch = Vec::new();
    for method in ["backprop", "noprop-dt"] {
        eprintln!("baselines: {method}, one epoch of 20,000 Fashion-MNIST images");
        epoch.push(train_fashion(
            &bin,
            &tmp,
            &[
                "--method",
                method,
                "--embedding",
                "one-hot",
                "--epochs",
                "1",
                "--limit-train",
                "20000",
                "--train-eval-limit",
                "1000",
                "--name",
                &format!("epoch-{method}"),
            ],
            method,
        )?);
    }
    let mut memory = Vec::new();
    for (method, steps) in [
        ("backprop", "10"),
        ("noprop-dt", "10"),
        ("adjoint", "1000"),
        ("noprop-ct", "1000"),
        ("noprop-fm", "1000"),
    ] {
        eprintln!("baselines: {method} peak memory");
        let name = format!("memory-{method}");
        let mut flags = vec![
            "--method",
            method,
            "--embedding",
            "one-hot",
            "--epochs",
            "1",
            "--steps",
            steps,
            "--limit-train",
            "1280",
            "--limit-test",
            "500",
            "--train-eval-limit",
            "100",
            "--name",
            &name,
        ];
        if !matches!(method, "backprop" | "noprop-dt") {
            flags.extend(["--eval-steps", "10"]);
        }
        let mut r = train_fashion(&bin, &tmp, &flags, method)?;
        r["bench_steps"] = json!(steps);
        memory.push(r);
    }
    let mut adjoint_steps = Vec::new();
    for steps in ["10", "100", "1000"] {
        eprintln!("baselines: adjoint, {steps} steps");
        adjoint_steps.push(train_fashion(
            &bin,
            &tmp,
            &[
                "--method",
                "adjoint",
                "--epochs",
                "1",
                "--steps",
                steps,
                "--eval-steps",
                "10",
                "--limit-train",
                "1280",
                "--limit-test",
                "500",
                "--train-eval-limit",
                "100",
                "--name",
                &format!("adjoint-{steps}"),
            ],
            "adjoint",
        )?);
    }
    let mut early = Vec::new();
    for method in ["backprop", "noprop-dt"] {
        eprintln!("baselines: {method}, early training on mnist-test-split");
        let out = run_capture(
            Command::new(&bin)
                .env("RAYON_NUM_THREADS", "2")
                .args([
                    "train",
                    "--method",
                    method,
                    "--dataset",
                    "mnist-test-split",
                    "--embedding",
                    "one-hot",
                    "--epochs",
                    &a.epochs.max(2).to_string(),
                    "--seed",
                    "0",
                    "--checkpoint-every",
                    "0",
                    "--name",
                    &format!("early-{method}"),
                    "--results-dir",
                ])
                .arg(&tmp),
            method,
        )?;
        early.push(out.into_iter().last().context("no RESULT line")?);
    }
    write_json(
        "baselines.json",
        &json!({
            "host": host(),
            "threads": 2,
            "epoch": epoch,
            "memory": memory,
            "adjoint_steps": adjoint_steps,
            "early": early,
        }),
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
            // Epochs the peer did not run (`--peer-epochs`) show a dash.
            let peer_cols = match peer.get(i) {
                Some(p) => format!(
                    "{:.1} | {:.1} | {:.4} | {:.2}",
                    f(&p["train_seconds"]),
                    f(&p["images_per_second"]),
                    f(&p["test_accuracy"]),
                    f(&e["images_per_second"]) / f(&p["images_per_second"])
                ),
                None => "— | — | — | —".into(),
            };
            md += &format!(
                "| {} | {:.1} | {:.1} | {:.4} | {peer_cols} |\n",
                i + 1,
                f(&e["train_seconds"]),
                f(&e["images_per_second"]),
                f(&e["test_accuracy"]),
            );
        }
        md += &format!(
            "\nPeak heap (ours): {:.2} GB; peak RSS: {:.2} GB.\n",
            f(&ours["peak_memory_bytes"]) / 1e9,
            f(&ours["peak_rss_bytes"]) / 1e9
        );
    }
    if let Some(g) = read("ct_fm.json") {
        md += &render_ct_fm(&g);
    }
    if let Some(g) = read("baselines.json") {
        md += &render_baselines(&g);
    }
    let p = workspace_root().join("docs").join("BENCHMARKS.md");
    std::fs::write(&p, md).with_context(|| format!("writing {}", p.display()))?;
    eprintln!("wrote {}", p.display());
    Ok(())
}

fn host_line(g: &Value) -> String {
    format!(
        "Host: {}, revision {}, {}.",
        g["host"]["cpu"].as_str().unwrap_or("?"),
        g["host"]["git_revision"].as_str().unwrap_or("?"),
        g["host"]["date"].as_str().unwrap_or("?")
    )
}

fn render_ct_fm(g: &Value) -> String {
    let mut md = format!(
        "\n## NoProp-CT and NoProp-FM on Fashion-MNIST (60k images, batch 128, one-hot)\n\n{}\n\n\
         | method | epoch 1 train s | img/s | test acc (1000 steps) | inference, 10k images × 1000 steps, cached s | uncached s (10 steps × 100) | cached / uncached |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
        host_line(g)
    );
    for r in g["rows"].as_array().cloned().unwrap_or_default() {
        let t = &r["train"];
        let cached = f(&r["cached_1000"]["inference_seconds"]);
        let uncached = 100.0 * f(&r["uncached_10"]["inference_seconds"]);
        md += &format!(
            "| {} | {:.1} | {:.0} | {:.4} | {:.1} | {:.0} | 1/{:.0} |\n",
            r["method"].as_str().unwrap_or("?"),
            f(&t["train_seconds"]),
            f(&t["images_per_second"]),
            f(&t["test_accuracy"]),
            cached,
            uncached,
            uncached / cached
        );
    }
    md += "\nInference times are the `inference_seconds` of `noprop eval` (data loading excluded). The uncached \
           column re-runs the image path at every step (decision 17 off); it is timed at 10 steps \
           and scaled by 100, since each step costs the same. At 10 steps, cached vs uncached: ";
    let parts: Vec<String> = g["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| {
            format!(
                "{} {:.1} s vs {:.1} s",
                r["method"].as_str().unwrap_or("?"),
                f(&r["cached_10"]["inference_seconds"]),
                f(&r["uncached_10"]["inference_seconds"])
            )
        })
        .collect();
    md += &parts.join("; ");
    md += ".\n";
    md
}

fn render_baselines(g: &Value) -> String {
    let mut md = format!(
        "\n## Baselines: back-propagation and the adjoint method\n\n{}\n\n\
         ### One epoch on the first 20,000 Fashion-MNIST images (batch 128, one-hot, same invocation; test on all 10,000)\n\n\
         | method | train s | img/s | test acc |\n|---|---:|---:|---:|\n",
        host_line(g)
    );
    for r in g["epoch"].as_array().cloned().unwrap_or_default() {
        md += &format!(
            "| {} | {:.1} | {:.0} | {:.4} |\n",
            r["method"].as_str().unwrap_or("?"),
            f(&r["train_seconds"]),
            f(&r["images_per_second"]),
            f(&r["test_accuracy"])
        );
    }
    md += "\n### Peak training memory, batch 128, Fashion-MNIST shapes (one-hot)\n\n\
           Peak heap (counting allocator high-water mark) and peak RSS of the training process on \
           10 mini-batches (the training-window peak excludes evaluation); the paper's Table 3 \
           (GPU, MNIST) beside it for scale.\n\n\
           | method | steps | training heap peak GB | whole-run heap peak GB | RSS peak GB | paper (GPU, MNIST) GB |\n|---|---:|---:|---:|---:|---:|\n";
    for m in g["memory"].as_array().cloned().unwrap_or_default() {
        let method = m["method"].as_str().unwrap_or("?");
        let paper = match method {
            "backprop" => "0.87",
            "noprop-dt" => "0.49",
            "adjoint" => "2.32",
            "noprop-ct" => "1.05",
            "noprop-fm" => "1.06",
            _ => "—",
        };
        let steps = m["bench_steps"].as_str().unwrap_or("—");
        md += &format!(
            "| {method} | {steps} | {:.3} | {:.3} | {:.3} | {paper} |\n",
            f(&m["peak_train_memory_bytes"]) / 1e9,
            f(&m["peak_memory_bytes"]) / 1e9,
            f(&m["peak_rss_bytes"]) / 1e9
        );
    }
    md += "\n### Adjoint: training time against the number of Euler steps (1,280 images, one epoch)\n\n\
           | Euler steps | train s | img/s | training heap peak GB |\n|---:|---:|---:|---:|\n";
    for (r, steps) in g["adjoint_steps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .zip([10, 100, 1000])
    {
        md += &format!(
            "| {steps} | {:.1} | {:.1} | {:.3} |\n",
            f(&r["train_seconds"]),
            f(&r["images_per_second"]),
            f(&r["peak_train_memory_bytes"]) / 1e9
        );
    }
    md += "\n### Early training on real digits (mnist-test-split: 8,000 / 2,000), backprop vs NoProp-DT\n\n\
           Not in the paper: end-to-end training through ten softmax bottlenecks starts slowly.\n\n\
           | method | epoch | cumulative train s | test acc |\n|---|---:|---:|---:|\n";
    for r in g["early"].as_array().cloned().unwrap_or_default() {
        for e in r["per_epoch"].as_array().cloned().unwrap_or_default() {
            md += &format!(
                "| {} | {} | {:.1} | {:.4} |\n",
                r["method"].as_str().unwrap_or("?"),
                e["epoch"],
                f(&e["cumulative_train_seconds"]),
                f(&e["test_accuracy"])
            );
        }
    }
    md
}

/// `cargo xtask bench`.
pub fn run(a: BenchArgs) -> Result<()> {
    match a.what.as_str() {
        "gemm" => bench_gemm(&a)?,
        "dt-step" => bench_dt_step(&a)?,
        "dt-epoch" => bench_dt_epoch(&a)?,
        "ct-fm" => bench_ct_fm(&a)?,
        "baselines" => bench_baselines(&a)?,
        "all" => {
            bench_gemm(&a)?;
            bench_dt_step(&a)?;
            bench_dt_epoch(&a)?;
            bench_ct_fm(&a)?;
            bench_baselines(&a)?;
        }
        "render" => {}
        other => bail!(
            "unknown benchmark `{other}` (gemm, dt-step, dt-epoch, ct-fm, baselines, all, render)"
        ),
    }
    render()
}
