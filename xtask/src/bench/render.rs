//! `docs/BENCHMARKS.md` from the JSON files under `docs/results/`: one
//! section per file present, in a fixed order.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::capture::results_dir;
use crate::run_bin::workspace_root;

/// `dir/name` parsed as JSON; `None` when it is missing or not JSON (its
/// section is then left out).
fn read(dir: &Path, name: &str) -> Option<Value> {
    let p = dir.join(name);
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

/// A JSON number as `f64` (NaN when absent: printed as `NaN`, not as a
/// made-up zero).
fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// Render docs/BENCHMARKS.md from docs/results/*.json.
pub fn render() -> Result<()> {
    let md = markdown(&results_dir());
    let p = workspace_root().join("docs").join("BENCHMARKS.md");
    std::fs::write(&p, md).with_context(|| format!("writing {}", p.display()))?;
    eprintln!("wrote {}", p.display());
    Ok(())
}

/// The text of BENCHMARKS.md for the JSON files in `dir`.
pub fn markdown(dir: &Path) -> String {
    let mut md = String::from(
        "# Benchmarks\n\nWritten by `cargo xtask bench` from the JSON in `docs/results/` — do not edit by hand.\n\
         Every ratio compares two numbers measured in the same invocation on the same machine, 2 threads each.\n",
    );
    if let Some(g) = read(dir, "gemm.json") {
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
    if let Some(g) = read(dir, "dt_step.json") {
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
    if let Some(g) = read(dir, "dt_epoch.json") {
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
    if let Some(g) = read(dir, "ct_fm.json") {
        md += &render_ct_fm(&g);
    }
    if let Some(g) = read(dir, "baselines.json") {
        md += &render_baselines(&g);
    }
    if let Some(g) = read(dir, "pytorch.json") {
        md += &render_pytorch(&g);
    }
    if let Some(g) = read(dir, "fidelity.json") {
        md += &render_fidelity(&g);
    }
    md
}

/// CT/FM test accuracies beside the PyTorch transcription's.
fn render_fidelity(g: &Value) -> String {
    let mut md = format!(
        "\n## Fidelity: NoProp-CT and NoProp-FM beside the PyTorch transcription (mnist-test-split, seed 0)\n\n{}\n\n\
         `cargo xtask bench fidelity`: ours and `benches/peers/noprop_cont_torch.py` at equal epochs and inference \
         steps; after each epoch both evaluate at min(steps, 100) steps, at the end at `steps`. The two draw \
         different random numbers, so the columns agree only up to the spread between seeds. Prototype runs use \
         20 steps: its label path is a conv stack that runs at every step.\n\n\
         | method | embedding | epochs | steps | ours test acc | PyTorch test acc | ours per epoch (train loss / test acc) | PyTorch per epoch |\n\
         |---|---|---:|---:|---:|---:|---|---|\n",
        host_line(g)
    );
    let curve = |v: &Value| -> String {
        v.as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|e| format!("{:.4} / {:.3}", f(&e["train_loss"]), f(&e["test_accuracy"])))
            .collect::<Vec<_>>()
            .join("; ")
    };
    for c in g["cells"].as_array().cloned().unwrap_or_default() {
        md += &format!(
            "| {} | {} | {} | {} | {:.4} | {:.4} | {} | {} |\n",
            c["method"].as_str().unwrap_or("?"),
            c["embedding"].as_str().unwrap_or("?"),
            c["epochs"],
            c["steps"],
            f(&c["ours"]["test_accuracy"]),
            f(&c["pytorch"]["test_accuracy"]),
            curve(&c["ours"]["per_epoch"]),
            curve(&c["pytorch"]["per_epoch"]),
        );
    }
    md
}

/// The table against the PyTorch transcriptions: one row per `cargo xtask
/// bench pytorch --row ROW` run, each with its own host and date.
fn render_pytorch(g: &Value) -> String {
    let mut md = String::from(
        "\n## Against PyTorch (CPU, 2 threads each)\n\n\
         Each row is one `cargo xtask bench pytorch --row ROW`: ours and the PyTorch transcription in \
         `benches/peers/` alternate for the given rounds in one invocation, and the fastest round of each \
         side is kept. Training rows time the first epoch's training (evaluation excluded on both sides); \
         inference rows time classifying the test set at 1000 steps with the image path run once per image. \
         Ratio = PyTorch seconds / ours (above 1: ours is faster).\n\n\
         | row | what | ours s | PyTorch s | ratio | bar | rounds | host, revision, date |\n\
         |---|---|---:|---:|---:|---:|---:|---|\n",
    );
    for (name, what, bar) in super::pytorch::order() {
        let r = &g["rows"][name];
        if r.is_null() {
            md += &format!("| {name} | {what} | — | — | not measured | {bar:.2} | — | — |\n");
            continue;
        }
        md += &format!(
            "| {name} | {what} | {:.2} | {:.2} | {:.2} | {bar:.2} | {} | {}, {}, {} |\n",
            f(&r["ours_seconds"]),
            f(&r["pytorch_seconds"]),
            f(&r["ratio"]),
            r["rounds"],
            r["host"]["cpu"].as_str().unwrap_or("?"),
            r["host"]["git_revision"].as_str().unwrap_or("?"),
            r["host"]["date"].as_str().unwrap_or("?"),
        );
    }
    md + &render_floor(g)
}

/// The inference rows against the arithmetic floor (rows measured before
/// `bench pytorch` recorded a floor are left out).
fn render_floor(g: &Value) -> String {
    let mut rows = String::new();
    for (name, _, _) in super::pytorch::order() {
        let fl = &g["rows"][name]["floor"];
        if fl.is_null() {
            continue;
        }
        let peak = f(&fl["fma_peak"]["gflops"]);
        let pct = |gflops: f64| 100.0 * gflops / peak;
        rows += &format!(
            "| {name} | {:.1} | {:.1} ({}) | {:.2} | {:.2} s: {:.1} GFLOP/s, {:.0} % of peak | ≤ {:.2} s: {:.1} GFLOP/s, {:.0} % of peak |\n",
            f(&fl["gflop"]),
            peak,
            fl["fma_peak"]["isa"].as_str().unwrap_or("?"),
            f(&fl["floor_seconds"]),
            f(&g["rows"][name]["ours_seconds"]),
            f(&fl["ours_gflops"]),
            pct(f(&fl["ours_gflops"])),
            f(&fl["bar_seconds"]),
            f(&fl["bar_gflops"]),
            pct(f(&fl["bar_gflops"])),
        );
    }
    if rows.is_empty() {
        return String::new();
    }
    String::from(
        "\n### Inference against the arithmetic floor\n\n\
         GFLOP: images × 1000 steps × the multiply-adds of one step's per-image layers (label FC, `W1_z`, \
         fc2, fc3; one-hot, 10 classes) × 2. FMA peak: `fma_peak`, twelve independent FMA chains per \
         thread on 2 threads, best of 5, measured in the same invocation as the row. Floor: the GFLOP at \
         that peak, with nothing else done. Bar: PyTorch's seconds / the row's bar. The GFLOP are \
         dense: from revision 6eab7be on, our fused step kernel (`ops::PackedMlp`) leaves out the terms \
         whose input is zero in all six rows of a tile (exactly: they add `0·w`), so ours' GFLOP/s are \
         dense-equivalent, not FMA-unit rates, and can pass the floor. From revision 3e46c55 on, \
         inference's steps also fold the label layer's ReLU into `W1_z` row by row \
         (`PackedMlp::forward_folded`, docs/PERFORMANCE.md round 11): about 40,000 of the step's 102,144 \
         multiply-adds per image remain, plus 2,816 per unit folded, so the floor is the dense \
         algorithm's, not ours.\n\n\
         | row | GFLOP | FMA peak, 2 threads, GFLOP/s | floor s | ours | the bar needs |\n\
         |---|---:|---:|---:|---|---|\n",
    ) + &rows
}

/// `Host: <cpu>, revision <rev>, <date>.` of a results file.
fn host_line(g: &Value) -> String {
    format!(
        "Host: {}, revision {}, {}.",
        g["host"]["cpu"].as_str().unwrap_or("?"),
        g["host"]["git_revision"].as_str().unwrap_or("?"),
        g["host"]["date"].as_str().unwrap_or("?")
    )
}

/// The CT/FM section: epoch time, accuracy, cached and uncached inference.
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

/// The baselines section: backprop vs DT epoch, peak memory, adjoint time
/// against Euler steps, early training on real digits.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed BENCHMARKS.md is exactly what the committed JSON
    /// renders to (it is never edited by hand).
    #[test]
    fn committed_report_matches_committed_json() {
        let root = workspace_root();
        let committed =
            std::fs::read_to_string(root.join("docs/BENCHMARKS.md")).expect("docs/BENCHMARKS.md");
        let rendered = markdown(&root.join("docs/results"));
        assert!(
            rendered == committed,
            "docs/BENCHMARKS.md differs from `cargo xtask bench render`:\n{rendered}"
        );
    }

    #[test]
    fn pytorch_rows_render_with_their_bar_and_unmeasured_rows_say_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("pytorch.json"),
            r#"{"rows": {"ct-train": {"host": {"cpu": "Test CPU", "git_revision": "abc", "date": "today"},
                "rounds": 3, "ours_seconds": 4.0, "pytorch_seconds": 6.0, "ratio": 1.5}}}"#,
        )
        .expect("write");
        let md = markdown(dir.path());
        assert!(md.contains("## Against PyTorch"), "{md}");
        assert!(
            md.contains("| 4.00 | 6.00 | 1.50 | 1.25 | 3 | Test CPU, abc, today |"),
            "{md}"
        );
        assert!(md.contains("| backprop-train |"), "{md}");
        assert!(
            md.contains("| — | — | not measured | 1.50 | — | — |"),
            "{md}"
        );
    }

    #[test]
    fn missing_files_leave_their_sections_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let empty = markdown(dir.path());
        assert!(empty.starts_with("# Benchmarks"));
        assert!(!empty.contains("## "), "{empty}");
        std::fs::write(
            dir.path().join("dt_step.json"),
            r#"{"host": {"cpu": "Test CPU", "git_revision": "abc", "date": "today"},
                "rows": [
                  {"input": "1x28x28", "impl": "noprop-rs", "images_per_second": 300.0},
                  {"input": "1x28x28", "impl": "pytorch", "images_per_second": 200.0}
                ]}"#,
        )
        .expect("write");
        std::fs::write(dir.path().join("gemm.json"), "not json").expect("write");
        let md = markdown(dir.path());
        assert!(!md.contains("## GEMM"), "unreadable gemm.json is skipped");
        assert!(md.contains("Host: Test CPU, revision abc, today."), "{md}");
        assert!(md.contains("| 1x28x28 | 300.0 | 200.0 | 1.50 |"), "{md}");
        // The input without numbers shows NaN rather than a made-up value.
        assert!(md.contains("| 3x32x32 | NaN | NaN | NaN |"), "{md}");
    }
}
