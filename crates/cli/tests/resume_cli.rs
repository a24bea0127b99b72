//! `noprop train --resume` after an interruption reproduces an uninterrupted
//! run bit for bit (same RESULT accuracies and identical checkpoint tensors).

use std::path::Path;
use std::process::Command;

fn run(results: &Path, extra: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_noprop"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
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
        ])
        .arg(results)
        .args(extra)
        .output()
        .expect("run noprop");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn tensors(results: &Path) -> Vec<(String, Vec<u8>)> {
    let p = results.join("checkpoints/noprop-dt-mnist-test-split-dim20-s3/last.safetensors");
    let bytes = std::fs::read(p).expect("checkpoint");
    // Compare the tensor payload: everything after the JSON header except the
    // progress metadata (which records wall-clock seconds).
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("header")) as usize;
    vec![("payload".into(), bytes[8 + n..].to_vec())]
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
    let ra = String::from_utf8_lossy(&a.stdout);
    let rb = String::from_utf8_lossy(&b.stdout);
    let acc = |s: &str| -> serde_json::Value {
        let j: serde_json::Value = serde_json::from_str(
            s.lines()
                .last()
                .expect("line")
                .trim_start_matches("RESULT "),
        )
        .expect("json");
        j["per_epoch"]
            .as_array()
            .expect("epochs")
            .iter()
            .map(|e| e["test_accuracy"].clone())
            .collect()
    };
    assert_eq!(acc(&ra), acc(&rb));
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
