//! Helpers shared by the CLI integration tests: run the `noprop` binary,
//! read its `RESULT` line, read a checkpoint's tensors.

// Each test binary uses a subset of these.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `noprop <args>` from the crate directory and asserts that it
/// succeeded; its stderr (the training log) is echoed for the test output.
pub fn noprop<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_noprop"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run noprop");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    let shown: Vec<_> = args.iter().map(|a| a.as_ref().to_string_lossy()).collect();
    assert!(out.status.success(), "noprop {shown:?} failed: {stderr}");
    out
}

/// The JSON of the last stdout line, `RESULT {json}`.
pub fn result(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().expect("some output");
    let json = last
        .strip_prefix("RESULT ")
        .expect("last line is RESULT {json}");
    serde_json::from_str(json).expect("valid JSON")
}

/// [`result`], checking that the JSON file it names holds the same result.
pub fn result_on_disk(out: &Output) -> serde_json::Value {
    let v = result(out);
    let path = v["result_path"].as_str().expect("result_path");
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("result file")).expect("json");
    assert_eq!(on_disk["test_accuracy"], v["test_accuracy"]);
    v
}

/// A safetensors checkpoint's tensor bytes (everything after the JSON
/// header, whose metadata records wall-clock seconds) and its header.
pub fn checkpoint(path: &Path) -> (Vec<u8>, serde_json::Value) {
    let bytes = std::fs::read(path).expect("checkpoint");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("header")) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors header");
    (bytes[8 + n..].to_vec(), header)
}
