//! Running the cells: each one a `noprop train` subprocess with
//! `NOPROP_PROGRESS=lines`, its stderr piped into `logs/<cell>.log` and
//! its progress lines into the live display ([`super::live`]).
//!
//! A finished cell (its `<cell>.json` exists for the same flags) is
//! skipped; an interrupted one starts over, or continues from its
//! checkpoint with `--resume`; a crashed one gets `<cell>.failed.json`
//! (exit status, last log lines, last progress line) and the run goes on.
//!
//! The log keeps every stderr line except the well-formed progress lines
//! (several a second; the last one is in the failure record): a malformed
//! progress line is logged like any other line.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::child::run_child;
use super::live::{self, Display, RunProgress};
use super::plan::{Cell, RunPlan};
use super::progress::Event;
use super::{cost, report, write_atomic};

/// How often the status line is refreshed while a cell is silent.
const TICK: Duration = Duration::from_secs(1);

/// Runs every unfinished cell of `plan` in order, writing into `out`; each
/// cell under `mpirun -np R` with `mpi = Some(R)`.
pub fn run_cells(
    plan: &RunPlan,
    out: &Path,
    bin: &Path,
    resume: bool,
    mpi: Option<usize>,
) -> Result<()> {
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut progress = RunProgress::new(
        plan.cells
            .iter()
            .map(|c| (c.id.clone(), cost::estimate(c, plan.inference_runs)))
            .collect(),
    );
    let done: Vec<bool> = plan.cells.iter().map(|c| already_done(c, out)).collect();
    for (i, _) in done.iter().enumerate().filter(|(_, d)| **d) {
        progress.skip(i);
    }
    let mut display = Display::new(std::io::stderr().is_terminal());
    if progress.cells_left() > 0 {
        display.line(&format!(
            "{} cells: {} to run ({} already finished), reference estimate {} (the speed \
             of the committed QUICK run, 2 CPU threads); the ETA adapts as they run",
            plan.cells.len(),
            progress.cells_left(),
            plan.cells.len() - progress.cells_left(),
            live::fmt_secs(progress.estimated_left())
        ));
    }
    let clock = Instant::now();
    let now = || clock.elapsed().as_secs_f64();
    let (mut ran, mut failed) = (0, 0);
    for (i, cell) in plan.cells.iter().enumerate() {
        if done[i] {
            continue;
        }
        if let Some(note) = prepare(cell, out, resume)? {
            display.line(&note);
        }
        progress.start(i, now());
        display.line(&progress.started_line(now()));
        display.status(&progress.status(now()));
        let t0 = Instant::now();
        let outcome = run_cell(cell, out, &logs, bin, resume, mpi, |ev| {
            if let Some(ev) = ev {
                progress.observe(ev, now());
            }
            display.status(&progress.status(now()));
        })?;
        let secs = t0.elapsed().as_secs_f64();
        match outcome {
            CellRun::Finished => {
                ran += 1;
                progress.finish(true, now());
                display.line(&progress.ended_line(i, "finished", secs, now()));
            }
            CellRun::Failed(why) => {
                failed += 1;
                progress.finish(false, now());
                display.line(&progress.ended_line(i, "FAILED", secs, now()));
                display.line(&format!("  {why}"));
            }
        }
    }
    display.finish();
    eprintln!(
        "{} cells: {ran} run, {} already finished, {failed} failed, in {:.0}s",
        plan.cells.len(),
        done.iter().filter(|d| **d).count(),
        now()
    );
    Ok(())
}

/// How a cell's run ended.
enum CellRun {
    /// It wrote its result.
    Finished,
    /// It crashed or wrote no result: why, in one line.
    Failed(String),
}

/// The flags a cell's files were made with, stored beside them so a re-run
/// with different flags does not mistake old results for new ones.
fn args_path(out: &Path, id: &str) -> PathBuf {
    out.join(format!("{id}.args.json"))
}

/// Whether `cell`'s files in `out` were made with its flags.
fn same_args(cell: &Cell, out: &Path) -> bool {
    std::fs::read_to_string(args_path(out, &cell.id))
        .ok()
        .and_then(|s| serde_json::from_str::<Vec<String>>(&s).ok())
        .is_some_and(|a| a == cell.args)
}

/// Whether `cell` already finished in `out` with the same flags.
fn already_done(cell: &Cell, out: &Path) -> bool {
    same_args(cell, out) && report::result_path(out, &cell.id).exists()
}

/// Clears what a previous attempt left (stale files from other flags, a
/// failure record, and without `resume` the checkpoint) and records the
/// flags; returns a note to print when an interrupted cell starts over.
fn prepare(cell: &Cell, out: &Path, resume: bool) -> Result<Option<String>> {
    let same = same_args(cell, out);
    let ckpt_dir = out.join("checkpoints").join(&cell.id);
    let _ = std::fs::remove_file(report::failure_path(out, &cell.id));
    let _ = std::fs::remove_file(report::result_path(out, &cell.id));
    let mut note = None;
    if (!same || !resume) && ckpt_dir.exists() {
        if same {
            note = Some(format!(
                "cell {}: starting over (pass --resume to continue from {})",
                cell.id,
                ckpt_dir.display()
            ));
        }
        std::fs::remove_dir_all(&ckpt_dir)
            .with_context(|| format!("removing {}", ckpt_dir.display()))?;
    }
    write_atomic(
        &args_path(out, &cell.id),
        serde_json::to_string(&cell.args)?.as_bytes(),
    )?;
    Ok(note)
}

/// Trains one cell; `on` sees its progress (`None`: a tick without news).
fn run_cell(
    cell: &Cell,
    out: &Path,
    logs: &Path,
    bin: &Path,
    resume: bool,
    mpi: Option<usize>,
    on: impl FnMut(Option<&Event>),
) -> Result<CellRun> {
    let result = report::result_path(out, &cell.id);
    let log_path = logs.join(format!("{}.log", cell.id));
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = match mpi {
        Some(r) => crate::run_bin::mpirun(r, bin),
        None => Command::new(bin),
    };
    cmd.arg("train").args(&cell.args);
    if mpi.is_some() {
        // NoProp-DT splits its blocks; the other methods their mini-batches.
        let dt = cell
            .args
            .windows(2)
            .any(|w| w[0] == "--method" && w[1] == "noprop-dt");
        cmd.args(["--distributed", if dt { "block" } else { "data" }]);
    }
    cmd.arg("--results-dir")
        .arg(out)
        .arg("--name")
        .arg(&cell.id);
    if resume {
        cmd.arg("--resume");
    }
    let _ = writeln!(log, "$ {} train {}", bin.display(), cell.args.join(" "));
    let child = run_child(&mut cmd, &mut log, TICK, on)
        .with_context(|| format!("could not run {}", bin.display()))?;
    let _ = write!(log, "{}", child.stdout);
    let why = if !child.status.success() {
        child.status.to_string()
    } else if !result.exists() {
        format!("exited successfully but wrote no {}", result.display())
    } else {
        return Ok(CellRun::Finished);
    };
    let record = serde_json::json!({
        "status": why,
        "log": log_path.display().to_string(),
        "tail": child.tail,
        "last_progress": child.last_progress,
    });
    write_atomic(
        &report::failure_path(out, &cell.id),
        serde_json::to_string_pretty(&record)?.as_bytes(),
    )?;
    let last = child
        .tail
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .cloned()
        .unwrap_or_default();
    Ok(CellRun::Failed(format!(
        "{why}: {last} (log: {})",
        log_path.display()
    )))
}

#[cfg(all(test, unix))]
mod tests {
    use super::super::plan::{self, Mode, PlanRequest};
    use super::*;
    use serde_json::Value;

    /// A stand-in for `noprop train`: progress lines, then a result, except
    /// for backprop cells, which crash after their first epoch's batches.
    const FAKE_NOPROP: &str = r#"#!/bin/sh
[ "$1" = train ] || exit 64
while [ $# -gt 0 ]; do
  case "$1" in
    --results-dir) dir=$2; shift ;;
    --name) name=$2; shift ;;
  esac
  shift
done
[ "$NOPROP_PROGRESS" = lines ] || { echo "NOPROP_PROGRESS is not set" >&2; exit 65; }
echo "loading $name" >&2
echo 'NOPROP_PROGRESS {"phase":"train","epoch":1,"epochs":1,"done":0,"total":2}' >&2
echo 'NOPROP_PROGRESS {"phase":"train","epoch":1,"epochs":1,"done":2,"total":2}' >&2
case "$name" in *backprop*) echo "thread 'main' panicked: boom" >&2; exit 101 ;; esac
echo "INFO epoch 1/1: loss 0.5" >&2
echo 'NOPROP_PROGRESS {"phase":"final","epoch":1,"epochs":1,"done":1,"total":1}' >&2
echo '{"test_accuracy": 0.5}' > "$dir/$name.json"
echo 'RESULT {"test_accuracy": 0.5}'
"#;

    #[test]
    fn cells_run_fail_and_are_skipped_when_finished() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("noprop");
        std::fs::write(&bin, FAKE_NOPROP).expect("write fake");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let out = dir.path().join("run");
        std::fs::create_dir_all(&out).expect("mkdir");
        let req = PlanRequest {
            mode: Mode::Micro,
            tables: vec!["table1".into()],
            datasets: vec![("mnist-test-split".into(), Ok(()))],
            methods: vec!["backprop".into(), "noprop-dt".into()],
            embeddings: vec!["one-hot".into()],
            seeds: 1,
            inference_runs: 1,
            device: "cpu".into(),
        };
        let (cells, _) = plan::plan(&req);
        let plan = RunPlan {
            mode: Mode::Micro,
            command: "test".into(),
            tables: req.tables.clone(),
            seeds: 1,
            inference_runs: 1,
            device: "cpu".into(),
            datasets: Vec::new(),
            cells,
            skipped: Vec::new(),
            host: serde_json::json!({}),
            git_revision: "test".into(),
            created_unix: 0,
        };
        let (bp, dt) = (
            "mnist-test-split-backprop-one-hot-s0",
            "mnist-test-split-noprop-dt-one-hot-s0",
        );
        run_cells(&plan, &out, &bin, false, None).expect("run cells");

        let dt_log =
            std::fs::read_to_string(out.join("logs").join(format!("{dt}.log"))).expect("DT log");
        assert!(dt_log.starts_with(&format!("$ {} train --method noprop-dt", bin.display())));
        assert!(dt_log.contains(&format!("loading {dt}\n")), "{dt_log}");
        assert!(dt_log.contains("INFO epoch 1/1: loss 0.5\n"), "{dt_log}");
        assert!(
            dt_log.ends_with("RESULT {\"test_accuracy\": 0.5}\n"),
            "{dt_log}"
        );
        assert!(!dt_log.contains("NOPROP_PROGRESS"), "{dt_log}");
        assert!(report::result_path(&out, dt).exists());
        assert!(!report::failure_path(&out, dt).exists());

        let failed: Value = serde_json::from_str(
            &std::fs::read_to_string(report::failure_path(&out, bp)).expect("failure record"),
        )
        .expect("failure json");
        assert!(
            failed["status"].as_str().is_some_and(|s| s.contains("101")),
            "{failed}"
        );
        let tail: Vec<&str> = failed["tail"]
            .as_array()
            .expect("tail")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(
            tail,
            [
                format!("loading {bp}").as_str(),
                "thread 'main' panicked: boom"
            ]
        );
        assert_eq!(failed["last_progress"]["phase"], "train");
        assert_eq!(failed["last_progress"]["done"], 2);
        assert!(!report::result_path(&out, bp).exists());

        // A re-run leaves the finished cell alone and retries the failed one.
        std::fs::write(report::result_path(&out, dt), "{\"kept\": true}").expect("mark");
        run_cells(&plan, &out, &bin, false, None).expect("re-run");
        assert_eq!(
            std::fs::read_to_string(report::result_path(&out, dt)).expect("DT result"),
            "{\"kept\": true}"
        );
        let again =
            std::fs::read_to_string(out.join("logs").join(format!("{dt}.log"))).expect("DT log");
        assert_eq!(again, dt_log, "a skipped cell is not run again");
        let bp_log = std::fs::read_to_string(out.join("logs").join(format!("{bp}.log")))
            .expect("backprop log");
        assert_eq!(bp_log.matches("panicked").count(), 2, "{bp_log}");
        assert!(report::failure_path(&out, bp).exists());
    }
}
