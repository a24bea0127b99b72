//! The progress protocol between `cargo xtask reproduce` and its cells.
//!
//! `noprop train` started with `NOPROP_PROGRESS=lines` writes progress
//! lines to stderr:
//!
//! ```text
//! NOPROP_PROGRESS {"phase":"train","epoch":1,"epochs":2,"done":37,"total":79}
//! ```
//!
//! `phase` is `train` (`done`/`total`: mini-batches of the current epoch),
//! `eval` (batches of the per-epoch evaluation) or `final` (the final test
//! evaluation, `epoch` = `epochs`), at most about twice a second plus one at
//! each phase's start and end. [`parse_line`] reads them (and, from a binary
//! without them, the `epoch k/N:` log line that ends an epoch); anything
//! malformed is an ordinary log line.

use serde::{Deserialize, Serialize};

/// The environment variable that asks `noprop train` for progress lines.
pub const ENV: &str = "NOPROP_PROGRESS";
/// The value of [`ENV`] that selects stderr lines.
pub const ENV_LINES: &str = "lines";
/// The word that starts a progress line (followed by a space and JSON).
pub const PREFIX: &str = "NOPROP_PROGRESS";

/// What a cell's process is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Training mini-batches of an epoch.
    Train,
    /// The evaluation after an epoch.
    Eval,
    /// The final test evaluation.
    Final,
}

/// One progress line of `noprop train`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Phase.
    pub phase: Phase,
    /// Current epoch, 1-based (`epochs` in the final phase).
    pub epoch: u64,
    /// Epochs of the run.
    pub epochs: u64,
    /// Batches of the phase done.
    pub done: u64,
    /// Batches of the phase.
    pub total: u64,
}

impl Progress {
    /// Share of the phase done, in [0, 1] (an empty phase is done).
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.done.min(self.total) as f64 / self.total as f64
        }
    }

    /// `epoch 1/2 train 37/79`, `epoch 1/2 eval 3/20`, `final eval 3/10`.
    pub fn describe(&self) -> String {
        match self.phase {
            Phase::Train | Phase::Eval => format!(
                "epoch {}/{} {} {}/{}",
                self.epoch,
                self.epochs,
                if self.phase == Phase::Train {
                    "train"
                } else {
                    "eval"
                },
                self.done,
                self.total
            ),
            Phase::Final => format!("final eval {}/{}", self.done, self.total),
        }
    }
}

/// What a line of a cell's stderr says about its progress.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// A progress line.
    Progress(Progress),
    /// The log line ending epoch `k` (`… epoch k/N: loss …`).
    EpochEnded(u64),
}

/// A well-formed progress line; `None` for anything else (ordinary log
/// lines, and progress lines with bad JSON or inconsistent numbers).
pub fn parse_progress(line: &str) -> Option<Progress> {
    let rest = line.trim().strip_prefix(PREFIX)?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let p: Progress = serde_json::from_str(rest.trim()).ok()?;
    let consistent = p.epochs >= 1 && (1..=p.epochs).contains(&p.epoch) && p.done <= p.total;
    consistent.then_some(p)
}

/// `Some(k)` when a `noprop train` log line reports that epoch `k` ended
/// (`… epoch k/N: loss …`).
pub fn finished_epoch(line: &str) -> Option<u64> {
    let at = line.find("epoch ")?;
    let rest = &line[at + 6..];
    let (k, rest) = rest.split_once('/')?;
    let (n, _) = rest.split_once(':')?;
    n.trim().parse::<u64>().ok()?;
    k.trim().parse().ok()
}

/// The progress a stderr line carries, if any.
pub fn parse_line(line: &str) -> Option<Event> {
    match parse_progress(line) {
        Some(p) => Some(Event::Progress(p)),
        None => finished_epoch(line).map(Event::EpochEnded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(phase: &str, epoch: u64, epochs: u64, done: u64, total: u64) -> String {
        format!(
            r#"NOPROP_PROGRESS {{"phase":"{phase}","epoch":{epoch},"epochs":{epochs},"done":{done},"total":{total}}}"#
        )
    }

    #[test]
    fn progress_lines_parse() {
        let p = parse_progress(&line("train", 1, 2, 37, 79)).expect("train line");
        assert_eq!(
            p,
            Progress {
                phase: Phase::Train,
                epoch: 1,
                epochs: 2,
                done: 37,
                total: 79
            }
        );
        assert_eq!(p.describe(), "epoch 1/2 train 37/79");
        assert!((p.fraction() - 37.0 / 79.0).abs() < 1e-12);
        let f = parse_progress(&format!("  {}\r", line("final", 2, 2, 3, 10))).expect("final");
        assert_eq!(f.phase, Phase::Final);
        assert_eq!(f.describe(), "final eval 3/10");
        // Unknown extra fields are tolerated (a newer producer).
        let extra =
            r#"NOPROP_PROGRESS {"phase":"eval","epoch":1,"epochs":1,"done":0,"total":0,"x":1}"#;
        assert_eq!(parse_progress(extra).map(|p| p.fraction()), Some(1.0));
        assert_eq!(
            parse_line(&line("eval", 2, 3, 1, 4)),
            Some(Event::Progress(Progress {
                phase: Phase::Eval,
                epoch: 2,
                epochs: 3,
                done: 1,
                total: 4
            }))
        );
    }

    #[test]
    fn malformed_progress_lines_are_ignored() {
        for bad in [
            "NOPROP_PROGRESS".to_string(),
            "NOPROP_PROGRESS {".to_string(),
            "NOPROP_PROGRESS{\"phase\":\"train\",\"epoch\":1,\"epochs\":1,\"done\":0,\"total\":1}"
                .to_string(),
            r#"NOPROP_PROGRESS {"phase":"warmup","epoch":1,"epochs":1,"done":0,"total":1}"#
                .to_string(),
            r#"NOPROP_PROGRESS {"phase":"train","epoch":1,"epochs":1,"done":-1,"total":1}"#
                .to_string(),
            r#"NOPROP_PROGRESS {"phase":"train","epoch":1,"epochs":1,"total":1}"#.to_string(),
            line("train", 0, 2, 0, 1),
            line("train", 3, 2, 0, 1),
            line("train", 1, 2, 5, 4),
            line("train", 1, 0, 0, 1),
            format!("INFO {}", line("train", 1, 2, 3, 4)),
            "loaded mnist (8000 train / 2000 test)".to_string(),
        ] {
            assert_eq!(parse_progress(&bad), None, "{bad}");
        }
        assert_eq!(parse_line("loaded mnist (8000 train / 2000 test)"), None);
    }

    #[test]
    fn epoch_lines_are_recognised() {
        let l = "2026-11-29T22:00:00Z  INFO noprop::run: epoch 3/10: loss 0.1, train acc 0.9";
        assert_eq!(finished_epoch(l), Some(3));
        assert_eq!(parse_line(l), Some(Event::EpochEnded(3)));
        assert_eq!(
            finished_epoch("loaded mnist (8000 train / 2000 test)"),
            None
        );
        assert_eq!(finished_epoch("resuming at epoch 3/x: y"), None);
    }
}
