//! Running one child process the way a cell runs: `NOPROP_PROGRESS=lines`
//! in its environment, stdout collected, stderr read line by line into a
//! log (progress lines left out) and an observer (progress lines and epoch
//! ends), with a tick while it is silent.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use anyhow::{Context, Result};

use super::progress::{self, Event, Progress};

/// Stderr lines kept for a failed cell's record.
pub const TAIL_LINES: usize = 30;

/// What a child process left once it ended.
#[derive(Debug)]
pub struct ChildRun {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Its last [`TAIL_LINES`] logged stderr lines.
    pub tail: Vec<String>,
    /// Its last well-formed progress line.
    pub last_progress: Option<Progress>,
}

/// Runs `cmd` with [`progress::ENV`]` = lines`, stdin closed and stdout and
/// stderr piped, until it exits. Every stderr line but the well-formed
/// progress lines goes to `log`; `on` sees each progress line and epoch
/// end, and `None` after each `tick` without a line. Fails only when the
/// process cannot be started or waited for.
pub fn run_child(
    cmd: &mut Command,
    log: &mut dyn Write,
    tick: Duration,
    mut on: impl FnMut(Option<&Event>),
) -> Result<ChildRun> {
    cmd.env(progress::ENV, progress::ENV_LINES)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("could not start the process")?;
    // stdout carries only the RESULT line; drain it on a thread so the
    // child never blocks on a full pipe.
    let stdout = child.stdout.take();
    let drain = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut o) = stdout {
            let _ = std::io::Read::read_to_string(&mut o, &mut s);
        }
        s
    });
    // stderr is read on a thread too, so the display can tick while the
    // child is silent; bytes that are not UTF-8 are replaced, not fatal.
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let Some(err) = stderr else { return };
        let mut err = BufReader::new(err);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match err.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf);
                    let line = line.trim_end_matches(['\n', '\r']).to_string();
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut tail: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let mut last_progress = None;
    loop {
        let line = match rx.recv_timeout(tick) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                on(None);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let event = progress::parse_line(&line);
        if let Some(Event::Progress(p)) = event {
            last_progress = Some(p);
        } else {
            let _ = writeln!(log, "{line}");
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        if let Some(ev) = &event {
            on(Some(ev));
        }
    }
    let _ = reader.join();
    let status = child.wait().context("waiting for the process")?;
    let stdout = drain.join().unwrap_or_default();
    Ok(ChildRun {
        status,
        stdout,
        tail: tail.into(),
        last_progress,
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn progress_line(phase: &str, done: u64, total: u64) -> String {
        format!(
            r#"NOPROP_PROGRESS {{"phase":"{phase}","epoch":1,"epochs":1,"done":{done},"total":{total}}}"#
        )
    }

    /// A fake child through the same spawn/pipe path as a cell: progress
    /// lines reach `on` and stay out of the log, everything else is logged
    /// (malformed progress, bad UTF-8, a last line without a newline).
    #[test]
    fn child_stderr_is_logged_and_progress_parsed() {
        let script = format!(
            "[ \"$NOPROP_PROGRESS\" = lines ] || {{ echo 'no env' >&2; exit 3; }}\n\
             echo 'loading data' >&2\n\
             echo '{}' >&2\n\
             echo 'NOPROP_PROGRESS {{\"phase\":\"train\", broken' >&2\n\
             sleep 0.3\n\
             echo '{}' >&2\n\
             echo 'INFO noprop: epoch 1/1: loss 0.5' >&2\n\
             printf 'bad \\377 byte\\n' >&2\n\
             echo '{}' >&2\n\
             echo 'RESULT {{\"x\": 1}}'\n\
             printf 'no newline' >&2\n",
            progress_line("train", 0, 4),
            progress_line("train", 4, 4),
            progress_line("final", 3, 10),
        );
        let mut log = Vec::new();
        let mut events = Vec::new();
        let mut ticks = 0;
        let child = run_child(
            Command::new("sh").arg("-c").arg(&script),
            &mut log,
            Duration::from_millis(50),
            |ev| match ev {
                Some(e) => events.push(*e),
                None => ticks += 1,
            },
        )
        .expect("run sh");
        assert!(child.status.success(), "{child:?}");
        let log = String::from_utf8(log).expect("utf-8 log");
        assert_eq!(
            log,
            "loading data\n\
             NOPROP_PROGRESS {\"phase\":\"train\", broken\n\
             INFO noprop: epoch 1/1: loss 0.5\n\
             bad \u{fffd} byte\n\
             no newline\n"
        );
        assert_eq!(child.tail.len(), 5);
        assert_eq!(child.stdout, "RESULT {\"x\": 1}\n");
        let progress: Vec<String> = events
            .iter()
            .map(|e| match e {
                Event::Progress(p) => p.describe(),
                Event::EpochEnded(k) => format!("ended {k}"),
            })
            .collect();
        assert_eq!(
            progress,
            [
                "epoch 1/1 train 0/4",
                "epoch 1/1 train 4/4",
                "ended 1",
                "final eval 3/10"
            ]
        );
        assert_eq!(
            child.last_progress.map(|p| p.describe()).as_deref(),
            Some("final eval 3/10")
        );
        assert!(ticks >= 2, "the 0.3 s pause should tick, got {ticks}");
    }

    #[test]
    fn a_child_that_cannot_start_is_an_error() {
        let mut log = Vec::new();
        let err = run_child(
            &mut Command::new("/nonexistent/noprop"),
            &mut log,
            Duration::from_secs(1),
            |_| {},
        )
        .expect_err("no such binary");
        assert!(err.to_string().contains("could not start"), "{err:#}");
    }
}
