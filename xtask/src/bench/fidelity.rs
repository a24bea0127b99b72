//! `cargo xtask bench fidelity`: NoProp-CT and NoProp-FM with the one-hot,
//! dim20 and prototype embeddings on `mnist-test-split`, ours beside the
//! PyTorch transcription (`benches/peers/noprop_cont_torch.py`) at equal
//! epochs and inference steps; writes `docs/results/fidelity.json`.
//!
//! Both sides evaluate after each epoch at `min(steps, 100)` steps and at the
//! end at `steps`; the two use different random streams (our keyed Philox
//! streams, torch's generator), so equal numbers are not expected, only
//! numbers within the spread of seeds.

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::capture::{host, python, run_capture, train_on, write_json};
use super::BenchArgs;
use crate::run_bin::{build_release, workspace_root};

/// Inference steps per embedding: the paper's 1000 for one-hot and dim20;
/// 20 for prototype, whose label path is a conv stack that runs at every
/// step (1000 steps on 2,000 images would take hours on two cores).
fn steps_for(embedding: &str) -> usize {
    if embedding == "prototype" {
        20
    } else {
        1000
    }
}

/// Run the six cells (`--epochs` epochs each, seed 0).
pub(super) fn fidelity(a: &BenchArgs) -> Result<()> {
    let bin = build_release("noprop", "noprop")?;
    let tmp = std::env::temp_dir().join("noprop-bench-fidelity");
    let script = workspace_root().join("benches/peers/noprop_cont_torch.py");
    let epochs = a.epochs.to_string();
    let mut cells = Vec::new();
    for method in ["ct", "fm"] {
        for embedding in ["one-hot", "dim20", "prototype"] {
            let steps = steps_for(embedding).to_string();
            eprintln!("fidelity: noprop-{method} {embedding}, ours");
            let ours = train_on(
                &bin,
                &tmp,
                "mnist-test-split",
                &[
                    "--method",
                    &format!("noprop-{method}"),
                    "--embedding",
                    embedding,
                    "--epochs",
                    &epochs,
                    "--steps",
                    &steps,
                    "--train-eval-limit",
                    "500",
                    "--name",
                    &format!("fidelity-{method}-{embedding}"),
                ],
                "noprop train",
            )?;
            eprintln!("fidelity: noprop-{method} {embedding}, PyTorch");
            let peer = run_capture(
                python(&a.python, &script).args([
                    "train",
                    "--method",
                    method,
                    "--dataset",
                    "mnist-test-split",
                    "--embedding",
                    embedding,
                    "--epochs",
                    &epochs,
                    "--steps",
                    &steps,
                    "--threads",
                    "2",
                ]),
                "noprop_cont_torch.py train",
            )?;
            let per_epoch: Vec<Value> = peer
                .iter()
                .filter(|v| v["bench"] == "cont_train")
                .map(|v| json!({"epoch": v["epoch"], "train_loss": v["train_loss"], "test_accuracy": v["test_accuracy"]}))
                .collect();
            let last = peer
                .iter()
                .find(|v| v["bench"] == "cont_train_final")
                .context("the PyTorch peer printed no final record")?;
            let ours_epochs: Vec<Value> = ours["per_epoch"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|v| json!({"epoch": v["epoch"], "train_loss": v["train_loss"], "test_accuracy": v["test_accuracy"]}))
                .collect();
            eprintln!(
                "fidelity: noprop-{method} {embedding}: ours {}, PyTorch {}",
                ours["test_accuracy"], last["test_accuracy"]
            );
            cells.push(json!({
                "method": format!("noprop-{method}"),
                "embedding": embedding,
                "epochs": a.epochs,
                "steps": steps_for(embedding),
                "eval_steps": steps_for(embedding).min(100),
                "ours": {"test_accuracy": ours["test_accuracy"], "per_epoch": ours_epochs},
                "pytorch": {"test_accuracy": last["test_accuracy"], "per_epoch": per_epoch},
            }));
        }
    }
    write_json(
        "fidelity.json",
        &json!({"host": host(), "threads": 2, "dataset": "mnist-test-split", "seed": 0, "cells": cells}),
    )
}
