//! Live progress of a reproduction: which cell runs, how far it is, and how
//! long the whole run has left.
//!
//! [`RunProgress`] turns the cells' progress lines ([`super::progress`])
//! into an estimate of the time left: every cell's estimated cost
//! ([`super::cost`]), scaled by how fast the work done so far went compared
//! with its estimate, minus the running cell's share already done.
//! [`Display`] shows the status line: redrawn in place on a terminal,
//! printed at most every [`PLAIN_EVERY`] otherwise.
//!
//! Everything here but [`Display`] is pure (time is passed in as seconds
//! since the run started), so it is tested without processes or clocks.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::cost::CellCost;
use super::progress::{Event, Progress};

/// Without a terminal, the status line is printed at most this often.
pub const PLAIN_EVERY: Duration = Duration::from_secs(30);
/// Seconds of estimated work assumed to have run exactly at the estimate:
/// keeps the speed ratio from swinging on the first seconds of a run.
pub const PRIOR_SECONDS: f64 = 60.0;

/// `45s`, `12m05s`, `3h07m`, `2d04h` (`?` for a negative or unknown time).
pub fn fmt_secs(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".into();
    }
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Estimated work done (seconds of the estimate) at a run-clock time.
#[derive(Clone, Copy, Debug)]
struct Mark {
    pos: f64,
    at: f64,
}

/// The cell being run.
#[derive(Clone, Debug)]
struct Running {
    index: usize,
    started: f64,
    /// Estimated work done before this process started (a resumed cell's
    /// first progress line is past the start-up; a fresh cell's is not).
    offset: f64,
    last: Option<Mark>,
    latest: Option<Progress>,
    epoch_ended: Option<u64>,
}

/// The state of a reproduction's cells for the status line and the ETA.
#[derive(Clone, Debug)]
pub struct RunProgress {
    ids: Vec<String>,
    costs: Vec<CellCost>,
    over: Vec<bool>,
    /// Wall seconds of the work finished in this invocation.
    actual: f64,
    /// Estimated seconds of that work.
    credited: f64,
    running: Option<Running>,
}

impl RunProgress {
    /// Every cell of the plan (id and estimate), none started.
    pub fn new(cells: Vec<(String, CellCost)>) -> Self {
        let (ids, costs): (Vec<_>, Vec<_>) = cells.into_iter().unzip();
        let over = vec![false; ids.len()];
        Self {
            ids,
            costs,
            over,
            actual: 0.0,
            credited: 0.0,
            running: None,
        }
    }

    /// Cell `i` needs no run (finished earlier): no time left for it.
    pub fn skip(&mut self, i: usize) {
        self.over[i] = true;
    }

    /// Cell `i` starts at `now`.
    pub fn start(&mut self, i: usize, now: f64) {
        self.running = Some(Running {
            index: i,
            started: now,
            offset: 0.0,
            last: None,
            latest: None,
            epoch_ended: None,
        });
    }

    /// The running cell reported `ev` at `now`.
    pub fn observe(&mut self, ev: &Event, now: f64) {
        let Some(r) = &mut self.running else { return };
        let cost = &self.costs[r.index];
        let pos = match ev {
            Event::Progress(p) => {
                if r.last.is_none() {
                    r.offset = (cost.position(p) - cost.startup).max(0.0);
                }
                r.latest = Some(*p);
                cost.position(p)
            }
            Event::EpochEnded(k) => {
                r.epoch_ended = Some(*k);
                cost.after_epoch(*k)
            }
        };
        let pos = r.last.map_or(pos, |m| m.pos.max(pos));
        r.last = Some(Mark { pos, at: now });
    }

    /// The running cell ended at `now`; `finished` when it wrote its
    /// result (a failed cell counts only up to its last report).
    pub fn finish(&mut self, finished: bool, now: f64) {
        let Some(r) = self.running.take() else { return };
        let total = self.costs[r.index].total();
        if finished {
            self.actual += now - r.started;
            self.credited += (total - r.offset).max(0.0);
        } else if let Some(m) = r.last {
            self.actual += m.at - r.started;
            self.credited += (m.pos - r.offset).max(0.0);
        }
        self.over[r.index] = true;
    }

    /// Observed over estimated seconds of the work done so far (finished
    /// cells and the running one up to its last report), shrunk towards 1
    /// by [`PRIOR_SECONDS`].
    pub fn speed_ratio(&self) -> f64 {
        let (mut actual, mut credited) = (self.actual, self.credited);
        if let Some(Running {
            started,
            offset,
            last: Some(m),
            ..
        }) = &self.running
        {
            actual += m.at - started;
            credited += (m.pos - offset).max(0.0);
        }
        (actual + PRIOR_SECONDS) / (credited + PRIOR_SECONDS)
    }

    /// Estimated seconds left for the whole run at `now`.
    pub fn remaining(&self, now: f64) -> f64 {
        let ratio = self.speed_ratio();
        let running = self.running.as_ref().map(|r| r.index);
        let pending: f64 = (0..self.ids.len())
            .filter(|&i| !self.over[i] && Some(i) != running)
            .map(|i| self.costs[i].total())
            .sum();
        let current = self.running.as_ref().map_or(0.0, |r| {
            let (pos, at) = r.last.map_or((r.offset, r.started), |m| (m.pos, m.at));
            ((self.costs[r.index].total() - pos) * ratio - (now - at)).max(0.0)
        });
        pending * ratio + current
    }

    /// Estimated seconds of the cells still to run (the running one whole).
    pub fn estimated_left(&self) -> f64 {
        (0..self.ids.len())
            .filter(|&i| !self.over[i])
            .map(|i| self.costs[i].total())
            .sum()
    }

    /// Cells not yet run, skipped ones excluded.
    pub fn cells_left(&self) -> usize {
        self.over.iter().filter(|o| !**o).count()
    }

    /// `cell 3/13 <id>`.
    fn cell_label(&self, i: usize) -> String {
        format!("cell {}/{} {}", i + 1, self.ids.len(), self.ids[i])
    }

    /// The status line of the running cell (empty when none runs):
    /// `cell 3/13 | run ETA 18m40s | epoch 1/2 train 37/79 | 1m12s | <id>`
    /// (the id last: a narrow terminal cuts the end of the line).
    pub fn status(&self, now: f64) -> String {
        let Some(r) = &self.running else {
            return String::new();
        };
        let doing = match (&r.latest, r.epoch_ended) {
            (Some(p), _) => p.describe(),
            (None, Some(k)) => format!("epoch {k}/{} done", self.costs[r.index].epochs),
            (None, None) => "starting".into(),
        };
        format!(
            "cell {}/{} | run ETA {} | {doing} | {} | {}",
            r.index + 1,
            self.ids.len(),
            fmt_secs(self.remaining(now)),
            fmt_secs(now - r.started),
            self.ids[r.index]
        )
    }

    /// The line printed when the running cell starts.
    pub fn started_line(&self, now: f64) -> String {
        let Some(r) = &self.running else {
            return String::new();
        };
        format!(
            "{} started (reference estimate {}; run ETA {})",
            self.cell_label(r.index),
            fmt_secs(self.costs[r.index].total()),
            fmt_secs(self.remaining(now))
        )
    }

    /// The line printed when cell `i` has ended after `secs` seconds with
    /// `what` (`finished`, `FAILED: …`); call after [`Self::finish`].
    pub fn ended_line(&self, i: usize, what: &str, secs: f64, now: f64) -> String {
        format!(
            "{} {what} in {} (reference estimate {}); run ETA {}, running at {:.2}x the \
             reference estimates",
            self.cell_label(i),
            fmt_secs(secs),
            fmt_secs(self.costs[i].total()),
            fmt_secs(self.remaining(now)),
            self.speed_ratio()
        )
    }
}

/// Where the status goes: one line redrawn in place on a terminal; plain
/// lines, at most every [`PLAIN_EVERY`], otherwise.
pub struct Display {
    bar: Option<ProgressBar>,
    last_plain: Option<Instant>,
}

impl Display {
    /// A display for a terminal (`true`) or a log/pipe (`false`).
    pub fn new(terminal: bool) -> Self {
        let bar = terminal.then(|| {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {wide_msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(250));
            bar
        });
        Self {
            bar,
            last_plain: None,
        }
    }

    /// Shows the status line (in place, or as a plain line when due).
    pub fn status(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(text.to_string()),
            None => {
                if text.is_empty() || self.last_plain.is_some_and(|t| t.elapsed() < PLAIN_EVERY) {
                    return;
                }
                eprintln!("{text}");
                self.last_plain = Some(Instant::now());
            }
        }
    }

    /// Prints a line that stays (above the status line on a terminal).
    pub fn line(&mut self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => {
                eprintln!("{text}");
                self.last_plain = Some(Instant::now());
            }
        }
    }

    /// Removes the status line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::progress::Phase;
    use super::*;

    #[test]
    fn durations_format() {
        assert_eq!(fmt_secs(44.6), "45s");
        assert_eq!(fmt_secs(725.0), "12m05s");
        assert_eq!(fmt_secs(3.0 * 3600.0 + 7.0 * 60.0), "3h07m");
        assert_eq!(fmt_secs(2.0 * 86_400.0 + 4.0 * 3600.0), "2d04h");
        assert_eq!(fmt_secs(-1.0), "?");
        assert_eq!(fmt_secs(f64::NAN), "?");
    }

    /// A cell estimated at 100 s: 10 s start-up, 60 s training, 20 s
    /// evaluation (one epoch), 10 s final evaluation.
    fn cost() -> CellCost {
        CellCost {
            startup: 10.0,
            train_epoch: 60.0,
            eval_epoch: 20.0,
            final_eval: 10.0,
            epochs: 1,
        }
    }

    fn p(phase: Phase, done: u64, total: u64) -> Event {
        Event::Progress(Progress {
            phase,
            epoch: 1,
            epochs: 1,
            done,
            total,
        })
    }

    fn run3() -> RunProgress {
        RunProgress::new(
            ["a", "b", "c"]
                .iter()
                .map(|s| (s.to_string(), cost()))
                .collect(),
        )
    }

    #[test]
    fn eta_before_any_work_is_the_plan_estimate() {
        let mut r = run3();
        assert_eq!(r.remaining(0.0), 300.0);
        r.skip(1);
        assert_eq!(r.remaining(0.0), 200.0);
        assert_eq!(r.cells_left(), 2);
        r.start(0, 0.0);
        assert_eq!(
            r.started_line(0.0),
            "cell 1/3 a started (reference estimate 1m40s; run ETA 3m20s)"
        );
        // No report yet: the running cell's estimate counts down with time.
        assert_eq!(r.remaining(4.0), 196.0);
        assert!(r
            .status(4.0)
            .starts_with("cell 1/3 | run ETA 3m16s | starting | 4s | a"));
    }

    #[test]
    fn eta_scales_by_the_observed_speed_and_the_running_cell_share() {
        let mut r = run3();
        r.start(0, 0.0);
        // Twice as fast as estimated: start-up in 5 s, half the training
        // (40 s of estimate) 30 s later.
        r.observe(&p(Phase::Train, 0, 10), 5.0);
        r.observe(&p(Phase::Train, 5, 10), 35.0);
        // 35 s observed for 40 s estimated, shrunk by the 60 s prior.
        let ratio = (35.0 + 60.0) / (40.0 + 60.0);
        assert!((r.speed_ratio() - ratio).abs() < 1e-12);
        let left = (60.0 + 200.0) * ratio;
        assert!((r.remaining(35.0) - left).abs() < 1e-9);
        // Between reports the running cell counts down.
        assert!((r.remaining(36.0) - (left - 1.0)).abs() < 1e-9);
        assert!(r
            .status(35.0)
            .ends_with(" | epoch 1/1 train 5/10 | 35s | a"));
        // The cell finishes in 50 s: 100 s estimated.
        r.finish(true, 50.0);
        let ratio = (50.0 + 60.0) / (100.0 + 60.0);
        assert!((r.speed_ratio() - ratio).abs() < 1e-12);
        assert!((r.remaining(50.0) - 200.0 * ratio).abs() < 1e-9);
        let ended = r.ended_line(0, "finished", 50.0, 50.0);
        assert!(
            ended.starts_with(
                "cell 1/3 a finished in 50s (reference estimate 1m40s); run ETA 2m18s, \
                 running at 0.69x"
            ),
            "{ended}"
        );
        // The last cell, first heard of in its final evaluation (resumed
        // there): its 10 s to get there are matched with the 10 s of
        // estimate since its start-up; 5 s of it are left, and cell b.
        r.start(2, 50.0);
        r.observe(&p(Phase::Final, 5, 10), 60.0);
        assert!(r.status(60.0).contains("final eval 5/10"));
        let ratio = (50.0 + 10.0 + 60.0) / (100.0 + 10.0 + 60.0);
        assert!((r.remaining(60.0) - (100.0 + 5.0) * ratio).abs() < 1e-9);
    }

    #[test]
    fn a_resumed_cell_is_credited_only_with_this_run_s_work() {
        let mut r = run3();
        r.skip(0);
        r.skip(1);
        r.start(2, 0.0);
        // Resumed half-way through the evaluation (80 s of the estimate),
        // which took 2 s to reach here.
        r.observe(&p(Phase::Eval, 10, 20), 2.0);
        // Credited: 80 − 70 (offset: the work before this start) = 10 s.
        let ratio = (2.0 + 60.0) / (10.0 + 60.0);
        assert!((r.speed_ratio() - ratio).abs() < 1e-12);
        assert!((r.remaining(2.0) - 20.0 * ratio).abs() < 1e-9);
        r.finish(true, 12.0);
        // 12 s for the 30 s of estimate left when it resumed.
        assert!((r.speed_ratio() - (12.0 + 60.0) / (30.0 + 60.0)).abs() < 1e-12);
        assert_eq!(r.remaining(12.0), 0.0);
    }

    #[test]
    fn a_failed_cell_counts_up_to_its_last_report() {
        let mut r = run3();
        r.start(0, 0.0);
        r.observe(&p(Phase::Train, 0, 10), 10.0);
        r.observe(&p(Phase::Eval, 0, 10), 70.0);
        // It crashes much later without reporting: that time is not work.
        r.finish(false, 500.0);
        assert!((r.speed_ratio() - 1.0).abs() < 1e-12, "70 s for 70 s");
        assert_eq!(r.remaining(500.0), 200.0);
        // A cell that fails before any report changes nothing.
        r.start(1, 500.0);
        r.finish(false, 501.0);
        assert!((r.speed_ratio() - 1.0).abs() < 1e-12);
        assert_eq!(r.remaining(501.0), 100.0);
    }

    #[test]
    fn epoch_end_lines_drive_a_binary_without_progress_lines() {
        let mut r = RunProgress::new(vec![(
            "x".into(),
            CellCost {
                epochs: 2,
                ..cost()
            },
        )]);
        r.start(0, 0.0);
        r.observe(&Event::EpochEnded(1), 90.0);
        assert_eq!(
            r.status(90.0),
            "cell 1/1 | run ETA 1m30s | epoch 1/2 done | 1m30s | x"
        );
        // 90 s of estimate (start-up + one epoch) done in 90 s.
        assert!((r.speed_ratio() - 1.0).abs() < 1e-12);
        assert!((r.remaining(90.0) - 90.0).abs() < 1e-9);
        // Positions never go backwards within a cell: a report behind the
        // last one only says the cell is still at 90 s of estimate at 91 s.
        r.observe(&p(Phase::Train, 0, 10), 91.0);
        let ratio = (91.0 + 60.0) / (90.0 + 60.0);
        assert!((r.remaining(91.0) - 90.0 * ratio).abs() < 1e-9);
    }
}
