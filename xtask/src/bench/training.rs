//! The training benchmarks: whole `noprop train` / `noprop eval` runs on
//! Fashion-MNIST (and the real-digit split) next to the PyTorch peer and
//! the baselines.

use std::process::Command;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::capture::{
    eval_fashion, host, python, run_capture, train_fashion, train_on, write_json,
};
use super::BenchArgs;
use crate::run_bin::{build_release, workspace_root};

/// `bench dt-epoch`: NoProp-DT on the full Fashion-MNIST training set for
/// `--epochs`, then the PyTorch peer for `--peer-epochs`; writes
/// `dt_epoch.json`.
pub(super) fn dt_epoch(a: &BenchArgs) -> Result<()> {
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

/// NoProp-CT and NoProp-FM (one-hot) on Fashion-MNIST: one epoch's wall
/// time and test accuracy (1000-step inference), then inference time for
/// the 10,000 test images at 1000 steps with the image path cached, and
/// without it (timed at 10 steps and scaled ×100: the per-step cost does
/// not depend on the step count; 1000 uncached steps take over an hour).
pub(super) fn ct_fm(_a: &BenchArgs) -> Result<()> {
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
                &if cache == "on" {
                    vec!["--steps", steps]
                } else {
                    vec!["--steps", steps, "--no-image-cache"]
                },
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
pub(super) fn baselines(a: &BenchArgs) -> Result<()> {
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
        early.push(train_on(
            &bin,
            &tmp,
            "mnist-test-split",
            &[
                "--method",
                method,
                "--embedding",
                "one-hot",
                "--epochs",
                &a.epochs.max(2).to_string(),
                "--name",
                &format!("early-{method}"),
            ],
            method,
        )?);
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
