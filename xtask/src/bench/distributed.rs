//! `bench distributed`: NoProp-DT block-parallel with R = 1 (one process,
//! 2 threads) and R = 2 (`mpirun -np 2`, 1 thread each) on the real-digit
//! split, data-parallel R = 1 and R = 2 on a slice of it, and the learned
//! embedding's staleness cost (block-parallel against the sequential
//! schedule, dim20). Writes `docs/results/distributed.json` and the measured
//! section of `docs/DISTRIBUTED.md` (between its `bench distributed`
//! markers), with the projection of the step time to T = 10 nodes.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::capture::{host, results_dir, run_capture, write_json};
use super::BenchArgs;
use crate::run_bin::{build_release_with, workspace_root};

/// One `noprop train` on mnist-test-split, seed 0; `ranks == 0`: no mpirun.
fn train(bin: &Path, dir: &Path, ranks: usize, threads: usize, args: &[&str]) -> Result<Value> {
    train_seed(bin, dir, ranks, threads, 0, args)
}

/// One `noprop train` on mnist-test-split with `--seed seed`.
fn train_seed(
    bin: &Path,
    dir: &Path,
    ranks: usize,
    threads: usize,
    seed: u64,
    args: &[&str],
) -> Result<Value> {
    let mut cmd = if ranks == 0 {
        Command::new(bin)
    } else {
        let mut c = Command::new("mpirun");
        c.args(["--allow-run-as-root", "--oversubscribe", "-np"])
            .arg(ranks.to_string())
            .arg(bin);
        c
    };
    cmd.env("RAYON_NUM_THREADS", threads.to_string())
        .args([
            "train",
            "--dataset",
            "mnist-test-split",
            "--checkpoint-every",
            "0",
        ])
        .arg("--seed")
        .arg(seed.to_string())
        .args(args)
        .arg("--results-dir")
        .arg(dir);
    let what = format!(
        "noprop train --seed {seed} {} (ranks {ranks})",
        args.join(" ")
    );
    eprintln!("bench distributed: {what}");
    run_capture(&mut cmd, &what)?
        .into_iter()
        .last()
        .with_context(|| format!("no RESULT line from {what}"))
}

/// Seconds per mini-batch of a result's last epoch.
fn step_seconds(r: &Value) -> f64 {
    let epoch = r["per_epoch"]
        .as_array()
        .and_then(|e| e.last())
        .map_or(f64::NAN, |e| {
            e["train_seconds"].as_f64().unwrap_or(f64::NAN)
        });
    let images = r["train_images"].as_f64().unwrap_or(f64::NAN);
    let batch = r["batch_size"].as_f64().unwrap_or(f64::NAN);
    epoch / (images / batch).ceil()
}

/// `cargo xtask bench distributed`.
pub(super) fn distributed(a: &BenchArgs) -> Result<()> {
    if Command::new("mpirun").arg("--version").output().is_err() {
        bail!("bench distributed needs mpirun (apt-get install openmpi-bin libopenmpi-dev libclang-dev)");
    }
    let bin = build_release_with("noprop", "noprop", &["mpi"])?;
    let tmp = std::env::temp_dir().join("noprop-bench-distributed");
    let epochs = a.epochs.to_string();
    let common = ["--train-eval-limit", "1000"];
    let block = ["--distributed", "block"];
    let run = |ranks, threads, args: &[&[&str]]| train(&bin, &tmp, ranks, threads, &args.concat());
    // The learning bar and R = 2's epoch time: the whole split, `--epochs`.
    let block2 = run(
        2,
        1,
        &[
            &common,
            &block,
            &["--epochs", &epochs, "--name", "block-r2"],
        ],
    )?;
    // R = 1 (2 threads): its first epoch is R = 2's, bit for bit.
    let block1 = run(
        0,
        2,
        &[&common, &block, &["--epochs", "1", "--name", "block-r1"]],
    )?;
    let slice = ["--limit-train", "2048", "--epochs", "1"];
    // One thread, one rank: the block work and the repeated work apart.
    let block1t = run(0, 1, &[&common, &block, &slice, &["--name", "block-r1-1t"]])?;
    let plain = run(0, 2, &[&common, &slice, &["--name", "plain-2048"]])?;
    let data2 = run(
        2,
        1,
        &[
            &common,
            &slice,
            &["--distributed", "data", "--name", "data-r2"],
        ],
    )?;
    let dim20 = ["--embedding", "dim20"];
    let seq = run(0, 2, &[&common, &slice, &dim20, &["--name", "dim20-seq"]])?;
    let stale = run(
        2,
        1,
        &[&common, &slice, &dim20, &block, &["--name", "dim20-block"]],
    )?;
    let v = json!({
        "host": host(),
        "epochs": a.epochs,
        "block_r2": block2,
        "block_r1": block1,
        "block_r1_1thread_2048": block1t,
        "plain_2048": plain,
        "data_r2_2048": data2,
        "dim20_sequential_2048": seq,
        "dim20_block_r2_2048": stale,
    });
    write_json("distributed.json", &v)?;
    render(&v)
}

/// The measured section of docs/DISTRIBUTED.md from `distributed.json`.
fn render(v: &Value) -> Result<()> {
    let acc = |r: &Value| r["test_accuracy"].as_f64().unwrap_or(f64::NAN);
    let epoch_s = |r: &Value| {
        r["per_epoch"]
            .as_array()
            .and_then(|e| e.first())
            .and_then(|e| e["train_seconds"].as_f64())
            .unwrap_or(f64::NAN)
    };
    let bytes = |r: &Value| {
        r["distributed"]["step_bytes_sent_per_minibatch_per_rank"]
            .as_u64()
            .unwrap_or(0)
    };
    let (b1, b2, b1t) = (&v["block_r1"], &v["block_r2"], &v["block_r1_1thread_2048"]);
    let (s1, s2, s1t) = (step_seconds(b1), step_seconds(b2), step_seconds(b1t));
    let t = b1["config"]["steps"].as_f64().unwrap_or(10.0);
    // One thread per rank: s(R) = (T/R)·b + S, b the work of one block, S
    // what every rank repeats (the T shared steps, batch preparation).
    let per_block = (2.0 * (s1t - s2) / t).max(0.0);
    let serial = (2.0 * s2 - s1t).max(0.0);
    let block_b = bytes(b2) as f64 / (t / 2.0);
    let mut md = String::new();
    md.push_str(&format!(
        "Measured by `cargo xtask bench distributed --epochs {}` on {} ({} cores), revision {}, {}.\n\n",
        v["epochs"],
        v["host"]["cpu"].as_str().unwrap_or("?"),
        v["host"]["cores"],
        v["host"]["git_revision"].as_str().unwrap_or("?"),
        v["host"]["date"].as_str().unwrap_or("?"),
    ));
    md.push_str("| run | ranks × threads | train images | epoch 1 time (s) | s / mini-batch | bytes sent per mini-batch per rank | test accuracy |\n|---|---|---|---|---|---|---|\n");
    for (name, key, rt) in [
        ("block-parallel, one-hot", "block_r2", "2 × 1"),
        ("block-parallel, one-hot", "block_r1", "1 × 2"),
        ("block-parallel, one-hot", "block_r1_1thread_2048", "1 × 1"),
        ("single process, one-hot", "plain_2048", "1 × 2"),
        ("data-parallel, one-hot", "data_r2_2048", "2 × 1"),
        (
            "sequential schedule, dim20",
            "dim20_sequential_2048",
            "1 × 2",
        ),
        ("block-parallel, dim20", "dim20_block_r2_2048", "2 × 1"),
    ] {
        let r = &v[key];
        md.push_str(&format!(
            "| {name} | {rt} | {} | {:.1} | {:.3} | {} | {:.4} |\n",
            r["train_images"],
            epoch_s(r),
            step_seconds(r),
            if r["distributed"].is_null() {
                "—".to_string()
            } else {
                bytes(r).to_string()
            },
            acc(r)
        ));
    }
    let first = |r: &Value| {
        r["per_epoch"]
            .as_array()
            .and_then(|e| e.first())
            .and_then(|e| e["test_accuracy"].as_f64())
            .unwrap_or(f64::NAN)
    };
    md.push_str(&format!(
        "\nBlock-parallel, one-hot, whole split: test accuracy {:.4} after {} epoch(s) with R = 2. After epoch 1, R = 2 had {:.4} and R = 1 {:.4} (the schedule is bit-identical for every R).\n",
        acc(b2),
        v["epochs"],
        first(b2),
        first(b1)
    ));
    md.push_str(&format!(
        "Data-parallel R = 2 on 2,048 digits: test accuracy {:.4} against {:.4} for the single process (difference {:+.4}).\n",
        acc(&v["data_r2_2048"]),
        acc(&v["plain_2048"]),
        acc(&v["data_r2_2048"]) - acc(&v["plain_2048"])
    ));
    md.push_str(&format!(
        "Learned embedding (dim20, 2,048 digits, 1 epoch): block-parallel {:.4} against the sequential schedule's {:.4} (staleness cost {:+.4}).\n",
        acc(&v["dim20_block_r2_2048"]),
        acc(&v["dim20_sequential_2048"]),
        acc(&v["dim20_block_r2_2048"]) - acc(&v["dim20_sequential_2048"])
    ));
    // Projection to T = 10 blocks on 10 nodes (one block each).
    md.push_str(&format!(
        "\n**Projection.** With one thread per rank a mini-batch costs s(R) ≈ (T/R)·b + S; from the 1 × 1 and 2 × 1 rows, b = {:.3} s per block and S = {:.3} s that every rank repeats (the T shared steps and the batch preparation). ",
        per_block, serial
    ));
    md.push_str(&format!(
        "With the one-hot embedding each rank sends {block_b:.0} bytes per owned block per mini-batch, so on 10 nodes (one block each) the all-gather delivers 10 × {block_b:.0} bytes to every rank; with a latency of ⌈log₂ 10⌉ = 4 hops:\n\n"
    ));
    md.push_str("| link | latency per hop (assumed) | exchange per mini-batch | projected s / mini-batch, 10 nodes × 1 thread | single node, R = 1 × 2 threads (measured) |\n|---|---|---|---|---|\n");
    for (link, gbps, lat) in [("10 Gb/s", 10.0, 50e-6), ("100 Gb/s", 100.0, 5e-6)] {
        let x = 4.0 * lat + 10.0 * block_b * 8.0 / (gbps * 1e9);
        md.push_str(&format!(
            "| {link} | {:.0} µs | {:.1} µs | {:.3} | {:.3} |\n",
            lat * 1e6,
            x * 1e6,
            per_block + serial + x,
            s1
        ));
    }
    md.push('\n');
    write_section("bench distributed", &md)
}

/// Replace the text between `<!-- {marker}: begin -->` and `<!-- {marker}:
/// end -->` in docs/DISTRIBUTED.md by `md`.
fn write_section(marker: &str, md: &str) -> Result<()> {
    let path = workspace_root().join("docs/DISTRIBUTED.md");
    let doc =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let (start, end) = (
        format!("<!-- {marker}: begin -->"),
        format!("<!-- {marker}: end -->"),
    );
    let (Some(i), Some(j)) = (doc.find(&start), doc.find(&end)) else {
        bail!("{} has no `{start}` … `{end}` markers", path.display());
    };
    let out = format!("{}{start}\n{md}{}", &doc[..i], &doc[j..]);
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// The stated tolerance of data-parallel training (docs/DISTRIBUTED.md):
/// on the whole real-digit split, the test accuracy of R = 2 lies within
/// this of the single process's, for every seed measured.
pub const DATA_PARALLEL_TOLERANCE: f64 = 0.02;

/// The 1-minute load average (`/proc/loadavg`), NaN where unknown.
fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The four runs of `distributed-accuracy`: key, label, ranks (0: no
/// mpirun), threads per rank, and the extra arguments.
const ACCURACY_RUNS: [(&str, &str, usize, usize, &[&str]); 4] = [
    ("plain", "single process, one-hot", 0, 2, &[]),
    (
        "data_r2",
        "data-parallel, one-hot",
        2,
        1,
        &["--distributed", "data"],
    ),
    (
        "dim20_sequential",
        "sequential schedule, dim20",
        0,
        2,
        &["--embedding", "dim20"],
    ),
    (
        "dim20_block_r2",
        "block-parallel, dim20",
        2,
        1,
        &["--embedding", "dim20", "--distributed", "block"],
    ),
];

/// `cargo xtask bench distributed-accuracy --epochs E --seeds N`: on the
/// whole real-digit split (8,000 training, 2,000 test digits), for seeds
/// 0..N, the single process against data-parallel R = 2 (one-hot) and the
/// sequential schedule against block-parallel R = 2 (dim20, the learned
/// embedding's staleness). Writes `docs/results/distributed_accuracy.json`
/// and docs/DISTRIBUTED.md's `bench distributed-accuracy` section after
/// every seed, so an interrupted sitting keeps the seeds it finished.
pub(super) fn accuracy(a: &BenchArgs) -> Result<()> {
    if Command::new("mpirun").arg("--version").output().is_err() {
        bail!("bench distributed-accuracy needs mpirun (apt-get install openmpi-bin libopenmpi-dev libclang-dev)");
    }
    let built = build_release_with("noprop", "noprop", &["mpi"])?;
    let tmp = std::env::temp_dir().join("noprop-bench-distributed-accuracy");
    std::fs::create_dir_all(&tmp)?;
    // A private copy: a rebuild during the sitting must not change the binary.
    let bin = tmp.join("noprop");
    std::fs::copy(&built, &bin).with_context(|| format!("copying {}", built.display()))?;
    // The runs record the revision the binary was built from, not the
    // checkout's HEAD when each of them starts.
    let built_at = host()["git_revision"].clone();
    std::env::set_var("NOPROP_GIT_REV", built_at.as_str().unwrap_or("unknown"));
    let epochs = a.epochs.to_string();
    let mut seeds = Vec::new();
    let mut host = host();
    if a.keep_seeds {
        let kept: Option<Value> =
            std::fs::read_to_string(results_dir().join("distributed_accuracy.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
        if let Some(v) = kept {
            if v["epochs"].as_u64() != Some(a.epochs as u64) {
                bail!(
                    "--keep-seeds: the kept seeds trained {} epoch(s), not {}",
                    v["epochs"],
                    a.epochs
                );
            }
            seeds = v["seeds"].as_array().cloned().unwrap_or_default();
            // The sitting's description stays that of its first seeds;
            // each run's result records its own revision and date.
            host = v["host"].clone();
        }
    }
    for seed in seeds.len() as u64..a.seeds {
        let mut runs = serde_json::Map::new();
        runs.insert("seed".into(), json!(seed));
        for (key, _, ranks, threads, extra) in ACCURACY_RUNS {
            let name = format!("acc-{key}-s{seed}");
            let args = [
                &[
                    "--train-eval-limit",
                    "1000",
                    "--epochs",
                    &epochs,
                    "--name",
                    &name,
                ][..],
                extra,
            ]
            .concat();
            let before = load_average();
            let mut r = train_seed(&bin, &tmp, ranks, threads, seed, &args)?;
            r["bench_load_average"] = json!([before, load_average()]);
            runs.insert(key.into(), r);
        }
        seeds.push(Value::Object(runs));
        let v = json!({"host": host, "epochs": a.epochs, "seeds": seeds});
        write_json("distributed_accuracy.json", &v)?;
        render_accuracy(&v)?;
    }
    Ok(())
}

/// Re-render both measured sections of docs/DISTRIBUTED.md from their JSON
/// under docs/results/ (those present).
pub(super) fn render_all(dir: &Path) -> Result<()> {
    let read = |name: &str| -> Option<Value> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(name)).ok()?).ok()
    };
    if let Some(v) = read("distributed.json") {
        render(&v)?;
    }
    if let Some(v) = read("distributed_accuracy.json") {
        render_accuracy(&v)?;
    }
    Ok(())
}

/// The `bench distributed-accuracy` section of docs/DISTRIBUTED.md.
fn render_accuracy(v: &Value) -> Result<()> {
    write_section("bench distributed-accuracy", &accuracy_markdown(v))
}

/// The text of the `bench distributed-accuracy` section.
fn accuracy_markdown(v: &Value) -> String {
    let acc = |r: &Value| r["test_accuracy"].as_f64().unwrap_or(f64::NAN);
    let seeds = v["seeds"].as_array().cloned().unwrap_or_default();
    let mut md = format!(
        "Measured by `cargo xtask bench distributed-accuracy --epochs {} --seeds {}` on {} ({} cores), revision {}, {}: \
         mnist-test-split, the whole split ({} training digits, {} test digits), batch {}, T = {}, {} epoch(s) per run.\n\n",
        v["epochs"],
        seeds.len(),
        v["host"]["cpu"].as_str().unwrap_or("?"),
        v["host"]["cores"],
        v["host"]["git_revision"].as_str().unwrap_or("?"),
        v["host"]["date"].as_str().unwrap_or("?"),
        seeds.first().map_or(Value::Null, |s| s["plain"]["train_images"].clone()),
        seeds.first().map_or(Value::Null, |s| s["plain"]["test_images"].clone()),
        seeds.first().map_or(Value::Null, |s| s["plain"]["batch_size"].clone()),
        seeds.first().map_or(Value::Null, |s| s["plain"]["config"]["steps"].clone()),
        v["epochs"],
    );
    md.push_str("| seed | run | ranks × threads | test accuracy | train seconds (all epochs) | load average, start → end |\n|---|---|---|---|---|---|\n");
    let mut data_diffs = Vec::new();
    let mut stale_diffs = Vec::new();
    let mut max_load = 0f64;
    for s in &seeds {
        for (key, label, ranks, threads, _) in ACCURACY_RUNS {
            let r = &s[key];
            let train_s: f64 = r["per_epoch"]
                .as_array()
                .map(|e| e.iter().filter_map(|e| e["train_seconds"].as_f64()).sum())
                .unwrap_or(f64::NAN);
            let load = |i: usize| r["bench_load_average"][i].as_f64().unwrap_or(f64::NAN);
            max_load = max_load.max(load(0)).max(load(1));
            md.push_str(&format!(
                "| {} | {label} | {} × {threads} | {:.4} | {:.1} | {:.1} → {:.1} |\n",
                s["seed"],
                ranks.max(1),
                acc(r),
                train_s,
                load(0),
                load(1)
            ));
        }
        data_diffs.push(acc(&s["data_r2"]) - acc(&s["plain"]));
        stale_diffs.push(acc(&s["dim20_block_r2"]) - acc(&s["dim20_sequential"]));
    }
    let revisions: Vec<String> = seeds
        .iter()
        .map(|s| {
            format!(
                "seed {}: {}",
                s["seed"],
                s["plain"]["git_revision"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let first_rev = seeds
        .first()
        .map(|s| s["plain"]["git_revision"].clone())
        .unwrap_or(Value::Null);
    if seeds
        .iter()
        .any(|s| s["plain"]["git_revision"] != first_rev)
    {
        md.push_str(&format!(
            "\nThe seeds were trained in separate sittings (`--keep-seeds`); the binary's revision per seed: {}.\n",
            revisions.join("; ")
        ));
    }
    let list = |d: &[f64]| {
        d.iter()
            .map(|x| format!("{x:+.4}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mean = |d: &[f64]| d.iter().sum::<f64>() / d.len().max(1) as f64;
    let worst = data_diffs.iter().fold(0f64, |m, d| m.max(d.abs()));
    md.push_str(&format!(
        "\nData-parallel R = 2 minus single process, test accuracy, per seed: {} (mean {:+.4}). \
         Stated tolerance {DATA_PARALLEL_TOLERANCE}: {}.\n",
        list(&data_diffs),
        mean(&data_diffs),
        if worst <= DATA_PARALLEL_TOLERANCE {
            format!("holds (largest |difference| {worst:.4})")
        } else {
            format!("**exceeded** (largest |difference| {worst:.4})")
        }
    ));
    md.push_str(&format!(
        "Learned embedding (dim20): block-parallel R = 2 minus the sequential schedule, per seed: {} (mean {:+.4}; negative = the staleness costs accuracy).\n",
        list(&stale_diffs),
        mean(&stale_diffs)
    ));
    // The yardstick: how far the single process moves from seed to seed.
    let spread = |key: &str| {
        let a: Vec<f64> = seeds.iter().map(|s| acc(&s[key])).collect();
        let (lo, hi) = a
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
                (l.min(*x), h.max(*x))
            });
        (a, hi - lo)
    };
    if seeds.len() > 1 {
        let (plain, p) = spread("plain");
        let (seq, q) = spread("dim20_sequential");
        md.push_str(&format!(
            "For scale, the seed alone moves the single process's test accuracy by {p:.4} (one-hot: {}) and the sequential dim20 run's by {q:.4} ({}); \
             one test digit is 1/{} = {:.4}.\n",
            plain.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", "),
            seq.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", "),
            seeds[0]["plain"]["test_images"],
            1.0 / seeds[0]["plain"]["test_images"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    md.push_str(&format!(
        "\nThe accuracies do not depend on the load (the runs are bit-for-bit reproducible whatever the thread count). \
         The times do: the load average reached {max_load:.1} on {} cores during the sitting, so they are times under load, not the schedules' speed.\n\n",
        v["host"]["cores"]
    ));
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(acc: f64) -> Value {
        json!({"test_accuracy": acc, "train_images": 8000, "test_images": 2000, "batch_size": 128,
               "config": {"steps": 10}, "per_epoch": [{"train_seconds": 100.0}],
               "bench_load_average": [1.0, 2.0], "git_revision": "abc"})
    }

    fn sitting(data: &[f64]) -> Value {
        let seeds: Vec<Value> = data
            .iter()
            .enumerate()
            .map(|(i, d)| {
                json!({"seed": i, "plain": run(0.9), "data_r2": run(0.9 + d),
                       "dim20_sequential": run(0.93), "dim20_block_r2": run(0.92)})
            })
            .collect();
        json!({"host": {"cpu": "x", "cores": 2, "git_revision": "abc", "date": "d"},
               "epochs": 1, "seeds": seeds})
    }

    #[test]
    fn the_tolerance_is_checked_against_every_seed() {
        let ok = accuracy_markdown(&sitting(&[0.002, -0.004]));
        assert!(ok.contains("holds (largest |difference| 0.0040)"), "{ok}");
        assert!(ok.contains("per seed: -0.0100, -0.0100"), "{ok}");
        assert!(
            ok.contains("moves the single process's test accuracy by 0.0000"),
            "{ok}"
        );
        let d = DATA_PARALLEL_TOLERANCE + 0.001;
        let bad = accuracy_markdown(&sitting(&[0.0, -d]));
        assert!(bad.contains("**exceeded**"), "{bad}");
        assert!(!bad.contains("separate sittings"), "{bad}");
    }
}
