//! `noprop train --resume` after an interruption reproduces an uninterrupted
//! run bit for bit (same RESULT accuracies and identical checkpoint tensors).

use std::path::Path;
use std::process::Command;

mod common;

fn run(results: &Path, extra: &[&str]) -> std::process::Output {
    let dir = results.to_str().expect("UTF-8 temp path");
    let mut args = vec![
        "train",
        "--dataset",
        "mnist-test-split",
        "--embedding",
        "dim20",
        "--epochs",
        "2",
        "--steps",
        "2",
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
    common::noprop(&args)
}

fn tensors(results: &Path) -> Vec<(String, Vec<u8>)> {
    let p = results.join("checkpoints/noprop-dt-mnist-test-split-dim20-s3/last.safetensors");
    vec![("payload".into(), common::checkpoint(&p).0)]
}

#[test]
fn interrupted_and_resumed_run_matches_uninterrupted_run() {
    let full = tempfile::tempdir().expect("tempdir");
    let split = tempfile::tempdir().expect("tempdir");
    let a = run(full.path(), &[]);
    // Interrupt after 7 mini-batches (mid second epoch: 5 per epoch), then resume.
    run(split.path(), &["--stop-after", "7"]);
    let b = run(split.path(), &["--resume"]);
    assert_eq!(tensors(full.path()), tensors(split.path()));
    let acc = |out: &std::process::Output| -> serde_json::Value {
        common::result(out)["per_epoch"]
            .as_array()
            .expect("epochs")
            .iter()
            .map(|e| e["test_accuracy"].clone())
            .collect()
    };
    assert_eq!(acc(&a), acc(&b));
}

#[test]
fn missing_dataset_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_noprop"))
        .env("NOPROP_DATA", dir.path())
        .current_dir(dir.path())
        .args([
            "train",
            "--dataset",
            "cifar10",
            "--epochs",
            "1",
            "--results-dir",
        ])
        .arg(dir.path())
        .output()
        .expect("run noprop");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fetch-data cifar10"), "{err}");
}
