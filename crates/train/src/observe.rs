//! What the trainer reports while it runs, and two observers of it: live
//! terminal bars and machine-readable progress lines.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::Result;
use crate::method::Phase;
use crate::progress::EpochMetrics;

/// One thing that happened during a run. Epochs are 1-based.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// Training (or its resumption) starts at `epoch` of `epochs`.
    Started {
        /// First epoch this invocation trains.
        epoch: usize,
        /// Epochs in the run.
        epochs: usize,
    },
    /// A training epoch starts; it has `batches` mini-batch steps (all passes).
    EpochStarted {
        /// The epoch.
        epoch: usize,
        /// Epochs in the run.
        epochs: usize,
        /// Mini-batch steps in the epoch.
        batches: usize,
        /// Steps already done (when resuming mid-epoch).
        done: usize,
    },
    /// A mini-batch step finished.
    Batch {
        /// The epoch.
        epoch: usize,
        /// Epochs in the run.
        epochs: usize,
        /// Steps done in this epoch.
        done: usize,
        /// Steps in this epoch.
        batches: usize,
        /// Mean of the loss values the step produced.
        loss: f64,
    },
    /// An evaluation (per-epoch or final) starts.
    EvalStarted {
        /// Per-epoch or final.
        phase: Phase,
        /// The epoch it belongs to (the last one for the final evaluation).
        epoch: usize,
        /// Epochs in the run.
        epochs: usize,
        /// Evaluation batches.
        batches: usize,
    },
    /// An evaluation batch finished.
    EvalBatch {
        /// Per-epoch or final.
        phase: Phase,
        /// The epoch it belongs to.
        epoch: usize,
        /// Epochs in the run.
        epochs: usize,
        /// Batches done.
        done: usize,
        /// Evaluation batches.
        batches: usize,
    },
    /// An epoch finished and was evaluated (and checkpointed).
    EpochFinished {
        /// Its metrics.
        metrics: &'a EpochMetrics,
    },
    /// The run finished.
    Finished {
        /// Final test accuracy (mean over the inference runs).
        test_accuracy: f64,
    },
}

/// Receives every [`Event`] of a run. Returning an error stops the run
/// (after the last checkpoint) with that error.
pub trait Observer {
    /// Called synchronously by the trainer; keep it cheap.
    fn on_event(&mut self, event: &Event<'_>) -> Result<()>;
}

/// Indicatif bars on stderr (epochs, and the running epoch's mini-batches or
/// evaluation batches), drawn only when stderr is a terminal.
pub struct TerminalBars {
    epochs: Option<ProgressBar>,
    current: Option<ProgressBar>,
    visible: bool,
}

impl Default for TerminalBars {
    fn default() -> Self {
        Self::new()
    }
}

impl TerminalBars {
    /// Bars that draw when stderr is a terminal (and stay hidden otherwise).
    pub fn new() -> Self {
        TerminalBars {
            epochs: None,
            current: None,
            visible: std::io::stderr().is_terminal(),
        }
    }

    fn bar(&self, len: u64, template: &str) -> ProgressBar {
        let pb = ProgressBar::new(len);
        if !self.visible {
            pb.set_draw_target(ProgressDrawTarget::hidden());
        }
        pb.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        pb
    }

    fn finish_current(&mut self) {
        if let Some(pb) = self.current.take() {
            pb.finish_and_clear();
        }
    }
}

impl Observer for TerminalBars {
    fn on_event(&mut self, event: &Event<'_>) -> Result<()> {
        match *event {
            Event::Started { epoch, epochs } => {
                let pb = self.bar(
                    epochs as u64,
                    "epochs {pos}/{len} [{elapsed_precise}] {wide_bar} {msg}",
                );
                pb.set_position(epoch.saturating_sub(1) as u64);
                self.epochs = Some(pb);
            }
            Event::EpochStarted {
                epoch,
                batches,
                done,
                ..
            } => {
                self.finish_current();
                let pb = self.bar(
                    batches as u64,
                    "epoch {msg} {pos}/{len} [{elapsed_precise}<{eta_precise}] {wide_bar} {per_sec}",
                );
                pb.set_message(format!("{epoch}"));
                pb.set_position(done as u64);
                self.current = Some(pb);
            }
            Event::Batch { .. } | Event::EvalBatch { .. } => {
                if let Some(pb) = &self.current {
                    pb.inc(1);
                }
            }
            Event::EvalStarted { phase, batches, .. } => {
                self.finish_current();
                let what = match phase {
                    Phase::Epoch => "evaluating",
                    Phase::Final => "final test",
                };
                let pb = self.bar(
                    batches as u64,
                    &format!(
                        "{what} {{pos}}/{{len}} [{{elapsed_precise}}<{{eta_precise}}] {{wide_bar}}"
                    ),
                );
                self.current = Some(pb);
            }
            Event::EpochFinished { .. } => {
                self.finish_current();
                if let Some(pb) = &self.epochs {
                    pb.inc(1);
                }
            }
            Event::Finished { .. } => {
                self.finish_current();
                if let Some(pb) = self.epochs.take() {
                    pb.finish_and_clear();
                }
            }
        }
        Ok(())
    }
}

impl Drop for TerminalBars {
    fn drop(&mut self) {
        self.finish_current();
        if let Some(pb) = self.epochs.take() {
            pb.finish_and_clear();
        }
    }
}

/// The environment variable that turns on [`ProgressLines`] in `noprop
/// train` (value `lines`); `cargo xtask reproduce` sets it for its cells.
pub const PROGRESS_ENV: &str = "NOPROP_PROGRESS";

/// The prefix of every progress line.
pub const PROGRESS_PREFIX: &str = "NOPROP_PROGRESS ";

/// Machine-readable progress on stderr for a parent process, one line per
/// update:
///
/// ```text
/// NOPROP_PROGRESS {"phase":"train","epoch":1,"epochs":2,"done":37,"total":79}
/// ```
///
/// `phase` is `train` (done/total: mini-batch steps of the running epoch),
/// `eval` (the per-epoch evaluation's batches) or `final` (the final test
/// evaluation; `epoch` = `epochs`). A line is written at each phase's start
/// and end and at most every `interval` in between.
pub struct ProgressLines<W: Write = std::io::Stderr> {
    out: W,
    interval: Duration,
    last: Option<Instant>,
}

impl ProgressLines<std::io::Stderr> {
    /// Lines on stderr at most twice a second.
    pub fn stderr() -> Self {
        ProgressLines::new(std::io::stderr(), Duration::from_millis(500))
    }

    /// [`ProgressLines::stderr`] if `NOPROP_PROGRESS=lines` is set.
    pub fn from_env() -> Option<Self> {
        (std::env::var(PROGRESS_ENV).as_deref() == Ok("lines")).then(Self::stderr)
    }
}

impl<W: Write> ProgressLines<W> {
    /// Lines on `out`, at most one per `interval` within a phase.
    pub fn new(out: W, interval: Duration) -> Self {
        ProgressLines {
            out,
            interval,
            last: None,
        }
    }

    /// The writer (for tests).
    pub fn into_inner(self) -> W {
        self.out
    }

    fn emit(
        &mut self,
        phase: &str,
        epoch: usize,
        epochs: usize,
        done: usize,
        total: usize,
        force: bool,
    ) {
        let now = Instant::now();
        if !force && self.last.is_some_and(|t| now - t < self.interval) {
            return;
        }
        self.last = Some(now);
        // Progress is best effort: a closed pipe must not stop training.
        let _ = writeln!(
            self.out,
            "{PROGRESS_PREFIX}{{\"phase\":\"{phase}\",\"epoch\":{epoch},\"epochs\":{epochs},\"done\":{done},\"total\":{total}}}"
        );
        let _ = self.out.flush();
    }
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Epoch => "eval",
        Phase::Final => "final",
    }
}

impl<W: Write> Observer for ProgressLines<W> {
    fn on_event(&mut self, event: &Event<'_>) -> Result<()> {
        match *event {
            Event::EpochStarted {
                epoch,
                epochs,
                batches,
                done,
            } => self.emit("train", epoch, epochs, done, batches, true),
            Event::Batch {
                epoch,
                epochs,
                done,
                batches,
                ..
            } => self.emit("train", epoch, epochs, done, batches, done == batches),
            Event::EvalStarted {
                phase,
                epoch,
                epochs,
                batches,
            } => self.emit(phase_name(phase), epoch, epochs, 0, batches, true),
            Event::EvalBatch {
                phase,
                epoch,
                epochs,
                done,
                batches,
            } => self.emit(
                phase_name(phase),
                epoch,
                epochs,
                done,
                batches,
                done == batches,
            ),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_follow_the_protocol_and_throttle() {
        let mut p = ProgressLines::new(Vec::new(), Duration::from_secs(3600));
        let ev = |done| Event::Batch {
            epoch: 1,
            epochs: 2,
            done,
            batches: 3,
            loss: 0.5,
        };
        p.on_event(&Event::EpochStarted {
            epoch: 1,
            epochs: 2,
            batches: 3,
            done: 0,
        })
        .unwrap();
        p.on_event(&ev(1)).unwrap(); // throttled
        p.on_event(&ev(2)).unwrap(); // throttled
        p.on_event(&ev(3)).unwrap(); // phase end: always
        p.on_event(&Event::EvalStarted {
            phase: Phase::Final,
            epoch: 2,
            epochs: 2,
            batches: 4,
        })
        .unwrap();
        let text = String::from_utf8(p.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                r#"NOPROP_PROGRESS {"phase":"train","epoch":1,"epochs":2,"done":0,"total":3}"#,
                r#"NOPROP_PROGRESS {"phase":"train","epoch":1,"epochs":2,"done":3,"total":3}"#,
                r#"NOPROP_PROGRESS {"phase":"final","epoch":2,"epochs":2,"done":0,"total":4}"#,
            ]
        );
        for l in lines {
            let v: serde_json::Value =
                serde_json::from_str(l.strip_prefix(PROGRESS_PREFIX).unwrap()).unwrap();
            assert!(v["total"].as_u64().unwrap() > 0);
        }
    }
}
