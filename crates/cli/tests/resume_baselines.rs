//! The baselines through the `noprop` binary: `--resume` after an
//! interruption reproduces an uninterrupted run bit for bit (checkpoint
//! tensors, optimiser state included, and every accuracy), for the
//! back-propagation baseline and the adjoint neural ODE; `noprop eval` reads
//! their checkpoints and gives the same result twice.

use std::path::Path;
use std::process::Output;

mod common;
use common::{noprop, result};

fn run(method: &str, embedding: &str, steps: &str, results: &Path, extra: &[&str]) -> Output {
    let dir = results.to_str().expect("utf-8 path");
    let mut args = vec![
        "train",
        "--method",
        method,
        "--dataset",
        "mnist-test-split",
        "--embedding",
        embedding,
        "--epochs",
        "2",
        "--steps",
        steps,
        "--limit-train",
        "640",
        "--train-eval-limit",
        "100",
        "--checkpoint-every",
        "3",
        "--seed",
        "3",
        "--results-dir",
        dir,
    ];
    args.extend_from_slice(extra);
    noprop(&args)
}

/// The checkpoint's tensor payload (everything after the safetensors header,
/// whose metadata records wall-clock seconds) and its tensor names.
fn payload(ckpt: &Path) -> (Vec<u8>, Vec<String>) {
    let (bytes, header) = common::checkpoint(ckpt);
    let names = header
        .as_object()
        .expect("header object")
        .keys()
        .cloned()
        .collect();
    (bytes, names)
}

fn resume_is_bit_identical(method: &str, embedding: &str, steps: &str, state: &[&str]) {
    let full = tempfile::tempdir().expect("tempdir");
    let split = tempfile::tempdir().expect("tempdir");
    let a = run(method, embedding, steps, full.path(), &[]);
    // 5 mini-batches per epoch: interrupt mid second epoch, then resume.
    run(
        method,
        embedding,
        steps,
        split.path(),
        &["--stop-after", "7"],
    );
    let b = run(method, embedding, steps, split.path(), &["--resume"]);
    let rel = format!("checkpoints/{method}-mnist-test-split-{embedding}-s3/last.safetensors");
    let (pa, names) = payload(&full.path().join(&rel));
    let (pb, _) = payload(&split.path().join(&rel));
    for k in state {
        assert!(
            names.iter().any(|n| n == k),
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
    assert_eq!(ra["method"], method);
    for key in [
        "dataset",
        "embedding",
        "epochs",
        "seed",
        "test_accuracy",
        "train_accuracy",
        "wall_seconds",
        "images_per_second",
        "peak_memory_bytes",
        "peak_rss_bytes",
        "result_path",
        "config",
    ] {
        assert!(!ra[key].is_null(), "{method}: RESULT is missing `{key}`");
    }
    assert!(ra["peak_memory_bytes"].as_u64().expect("bytes") > 0);
    for e in ra["per_epoch"].as_array().expect("per_epoch") {
        assert!(e["cumulative_train_seconds"].as_f64().expect("seconds") > 0.0);
    }

    // `noprop eval` of the checkpoint: deterministic, same method.
    let ckpt = full.path().join(&rel);
    let ckpt = ckpt.to_str().expect("utf-8 path");
    let ev = || {
        result(&noprop(&[
            "eval",
            "--checkpoint",
            ckpt,
            "--dataset",
            "mnist-test-split",
        ]))
    };
    let (e1, e2) = (ev(), ev());
    assert_eq!(e1["method"], method);
    assert_eq!(e1["test_accuracy"], e2["test_accuracy"]);
    assert_eq!(e1["epochs"], 2);
}

#[test]
fn backprop_resume_is_bit_identical() {
    resume_is_bit_identical(
        "backprop",
        "dim20",
        "2",
        &["alpha.w", "embed.weight", "opt.alpha.w.exp_avg", "step"],
    );
}

#[test]
fn adjoint_resume_is_bit_identical() {
    resume_is_bit_identical(
        "adjoint",
        "one-hot",
        "4",
        &[
            "net.img.conv1.weight",
            "classifier.weight",
            "opt.step",
            "step",
        ],
    );
}
