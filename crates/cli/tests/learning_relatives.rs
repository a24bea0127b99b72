//! The back-propagation-free relatives through the `noprop` binary, on real
//! digits: `mnist-test-split` (the first 4,000 of its 8,000 training digits
//! with `--limit-train`; 500 of its 2,000 held-out digits), seed 0, batch
//! 64, 3 epochs (189 steps), each method's defaults otherwise:
//!
//! * every method learns: test accuracy well above chance (0.10) — ≥ 0.80
//!   for back-prop (measured 0.906) and DFA (0.888), ≥ 0.75 for gradient
//!   boosting (0.830, 3 of its 10 stages), ≥ 0.70 for CCL (0.802), ≥ 0.65
//!   for DRTP (0.832; it first saturates its tanh units, then learns
//!   quickly) and ≥ 0.55 for Forward-Forward (0.684; its goodness first has
//!   to grow to θ);
//! * `--resume` after an interruption reproduces an uninterrupted run bit
//!   for bit (checkpoint tensors with the optimiser state, every accuracy)
//!   for CCL (two networks), Forward-Forward and gradient boosting (stages
//!   switch at epoch boundaries), and `noprop eval` reads the checkpoints.
//!
//! Without the MNIST files the tests fail with the loader's message.

use std::path::Path;
use std::process::Output;

mod common;
use common::{noprop, result, result_on_disk};

fn train(method: &str, results: &Path, limit: &str, every: &str, extra: &[&str]) -> Output {
    let dir = results.to_str().expect("utf-8 path");
    let mut args = vec![
        "train",
        "--method",
        method,
        "--dataset",
        "mnist-test-split",
        "--epochs",
        "3",
        "--seed",
        "0",
        "--batch-size",
        "64",
        "--limit-train",
        limit,
        "--limit-test",
        "500",
        "--train-eval-limit",
        "100",
        "--checkpoint-every",
        every,
        "--results-dir",
        dir,
    ];
    args.extend_from_slice(extra);
    noprop(&args)
}

#[test]
fn relatives_learn_real_digits() {
    let mut failures = Vec::new();
    for (method, bar) in [
        ("backprop-mlp", 0.80),
        ("dfa", 0.80),
        ("drtp", 0.65),
        ("ccl", 0.70),
        ("grad-boost", 0.75),
        ("forward-forward", 0.55),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let v = result_on_disk(&train(method, dir.path(), "4000", "0", &[]));
        assert_eq!(v["method"], method);
        assert_eq!(v["per_epoch"].as_array().map(Vec::len), Some(3));
        assert!(!v["config"].is_null() && !v["peak_memory_bytes"].is_null());
        let acc = v["test_accuracy"].as_f64().expect("test_accuracy");
        eprintln!(
            "{method}: test accuracy {acc:.4} after 3 epochs ({:.1} s training)",
            v["train_seconds"].as_f64().unwrap_or(0.0)
        );
        if acc < bar {
            failures.push(format!("{method}: {acc:.4} < {bar}"));
        }
    }
    assert!(failures.is_empty(), "below the bars: {failures:?}");
}

fn resume_is_bit_identical(method: &str, extra: &[&str], state: &[&str]) {
    let full = tempfile::tempdir().expect("tempdir");
    let split = tempfile::tempdir().expect("tempdir");
    // 640 images: 10 batches of 64 per epoch; interrupted in epoch 2.
    let small = |dir: &Path, more: &[&str]| {
        let mut a = extra.to_vec();
        a.extend_from_slice(more);
        train(method, dir, "640", "3", &a)
    };
    let a = small(full.path(), &[]);
    small(split.path(), &["--stop-after", "17"]);
    let b = small(split.path(), &["--resume"]);
    let rel = format!("checkpoints/{method}-mnist-test-split-one-hot-s0/last.safetensors");
    let (pa, ha) = common::checkpoint(&full.path().join(&rel));
    let (pb, _) = common::checkpoint(&split.path().join(&rel));
    for k in state {
        assert!(
            ha.as_object().expect("header").contains_key(*k),
            "{method}: checkpoint lacks `{k}`"
        );
    }
    assert!(pa == pb, "{method}: checkpoints differ");
    let (ra, rb) = (result(&a), result(&b));
    let per_epoch = |r: &serde_json::Value| -> Vec<serde_json::Value> {
        r["per_epoch"]
            .as_array()
            .expect("per_epoch")
            .iter()
            .map(|e| e["test_accuracy"].clone())
            .collect()
    };
    assert_eq!(per_epoch(&ra), per_epoch(&rb), "{method}");
    assert_eq!(ra["test_accuracy"], rb["test_accuracy"], "{method}");
    let ckpt = full.path().join(&rel);
    let ev = || {
        result(&noprop(&[
            "eval",
            "--checkpoint",
            ckpt.to_str().expect("utf-8 path"),
            "--dataset",
            "mnist-test-split",
            "--limit-test",
            "300",
        ]))
    };
    let (e1, e2) = (ev(), ev());
    assert_eq!(e1["method"], method);
    assert_eq!(e1["test_accuracy"], e2["test_accuracy"]);
}

#[test]
fn relatives_resume_bit_identically() {
    resume_is_bit_identical(
        "ccl",
        &[],
        &[
            "forward.fc6.weight",
            "feedback.fc1.weight",
            "opt.step",
            "step",
        ],
    );
    resume_is_bit_identical(
        "grad-boost",
        &["--boost-stages", "3", "--hidden", "8"],
        &["stage3.fc2.bias", "stages_trained", "step"],
    );
    resume_is_bit_identical(
        "forward-forward",
        &["--hidden", "64,64"],
        &["forward.fc2.weight", "opt.step"],
    );
}
