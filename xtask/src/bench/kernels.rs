//! The kernel-level benchmarks: GEMM at the block's shapes against
//! `matrixmultiply` and NumPy/OpenBLAS, and one NoProp-DT block training
//! step against PyTorch, in alternating rounds.

use std::process::Command;

use anyhow::Result;
use serde_json::json;

use super::capture::{best_of, host, python, run_capture, write_json};
use super::BenchArgs;
use crate::run_bin::{build_release, workspace_root};

/// `bench gemm`: `gemm_report` and `gemm_numpy.py`, `--rounds` times each;
/// writes `gemm.json`.
pub(super) fn gemm(a: &BenchArgs) -> Result<()> {
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

/// `bench dt-step`: the `dt_step` binary and `noprop_dt_torch.py step`,
/// `--rounds` times each; writes `dt_step.json`.
pub(super) fn dt_step(a: &BenchArgs) -> Result<()> {
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
