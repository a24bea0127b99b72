//! `cargo xtask check-refs`: every reference to the project's decisions
//! resolves inside the repository.
//!
//! Code and documents cite the project's decisions and paper notes as
//! `docs/DECISIONS.md § 6`, `docs/DECISIONS.md §§ 8–12`, `decision 17`,
//! `decisions 16 and 17` or `docs/DECISIONS.md, note D (i)`. This check reads
//! every text file under `crates/`, `xtask/`, `benches/`, `docs/` and
//! `README.md` and fails, printing `file:line`, when
//!
//! * a cited decision number has no `## N. …` heading in `docs/DECISIONS.md`,
//!   or a cited note letter no `## Note X. …` heading (`note G.1` also needs
//!   `### G.1 …`);
//! * a line names a design file outside the repository (the shared folder's
//!   paper or design notes, or the shared folder itself, data included: the
//!   repository ships the MNIST test files it needs). The exceptions are the
//!   `Sources:` paragraph at the top of `docs/DECISIONS.md`, which may name
//!   where the decisions came from, and the measurement records under
//!   `docs/results/` (JSON written by past runs, never edited).
//!
//! It runs as the first step of `cargo xtask ci`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::run_bin::workspace_root;

/// The decisions file, relative to the workspace root.
pub const DECISIONS: &str = "docs/DECISIONS.md";

/// The folders and files scanned, relative to the workspace root.
pub const SCANNED: &[&str] = &["crates", "xtask", "benches", "docs", "README.md"];

/// Folders never entered (build output, caches).
const SKIPPED_DIRS: &[&str] = &["target", ".git", "__pycache__", "node_modules"];

/// Measurement records: JSON written by past runs (their `data_source`
/// says where the data was found then); records are never edited.
const RECORDS: &str = "docs/results/";

/// This file: its tests hold deliberately unresolved examples.
const SELF: &str = "xtask/src/check_refs.rs";

/// Names of files outside the repository that must not be referenced.
const FORBIDDEN: &[&str] = &["PAPER.md", "DESIGN.md", "../shared"];

/// Options of `cargo xtask check-refs`.
#[derive(clap::Args, Debug, Default)]
pub struct CheckRefsArgs {
    /// Check this tree instead of the workspace this xtask was built in.
    #[arg(long)]
    pub root: Option<PathBuf>,
}

/// The headings of `docs/DECISIONS.md`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headings {
    /// `## N. …`
    pub decisions: BTreeSet<u32>,
    /// `## Note X. …`
    pub notes: BTreeSet<char>,
    /// `### X.N …`
    pub sub_notes: BTreeSet<(char, u32)>,
}

/// One reference found in a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cite {
    /// A decision number.
    Decision(u32),
    /// A note letter, with an optional sub-section (`G.1`).
    Note(char, Option<u32>),
    /// A forbidden name (a file outside the repository).
    Outside(&'static str),
}

/// A reference that does not resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Path relative to the root.
    pub path: String,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.message)
    }
}

/// Run the check on the workspace (or `--root`) and fail on any finding.
pub fn run(args: CheckRefsArgs) -> Result<()> {
    let root = args.root.unwrap_or_else(workspace_root);
    let findings = check(&root)?;
    if findings.is_empty() {
        eprintln!("==> check-refs: every decision and note reference resolves in {DECISIONS}");
        return Ok(());
    }
    for f in &findings {
        println!("{f}");
    }
    bail!(
        "check-refs: {} reference(s) do not resolve (cite docs/DECISIONS.md § N, whose \
         headings are `## N. …`; nothing may point outside the repository)",
        findings.len()
    )
}

/// Every unresolved reference under `root`, in path then line order.
pub fn check(root: &Path) -> Result<Vec<Finding>> {
    let decisions_path = root.join(DECISIONS);
    let text = std::fs::read_to_string(&decisions_path)
        .with_context(|| format!("cannot read {}", decisions_path.display()))?;
    let headings = parse_headings(&text);
    let mut files = Vec::new();
    for entry in SCANNED {
        collect_files(&root.join(entry), &mut files)?;
    }
    files.sort();
    let mut findings = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue; // not UTF-8 text (images, archives, checkpoints)
        };
        let rel = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .to_string_lossy()
            .replace('\\', "/");
        if rel == SELF || rel.starts_with(RECORDS) {
            continue;
        }
        findings.extend(check_text(&rel, &text, &headings));
    }
    Ok(findings)
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    if !path.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
        let entry = entry?;
        let p = entry.path();
        let name = entry.file_name();
        if entry.file_type()?.is_dir() {
            if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                collect_files(&p, out)?;
            }
        } else if entry.file_type()?.is_file() {
            out.push(p);
        }
    }
    Ok(())
}

/// Unresolved references in one file's text (`rel` is its path for messages).
pub fn check_text(rel: &str, text: &str, headings: &Headings) -> Vec<Finding> {
    let is_decisions = rel == DECISIONS;
    let mut in_sources = false;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if is_decisions {
            if line.starts_with("Sources:") {
                in_sources = true;
            } else if line.trim().is_empty() {
                in_sources = false;
            }
        }
        for cite in parse_line(line) {
            let message = match cite {
                Cite::Decision(n) if !headings.decisions.contains(&n) => {
                    format!("decision {n} has no `## {n}. …` heading in {DECISIONS}")
                }
                Cite::Note(c, None) if !headings.notes.contains(&c) => {
                    format!("note {c} has no `## Note {c}. …` heading in {DECISIONS}")
                }
                Cite::Note(c, Some(k)) if !headings.sub_notes.contains(&(c, k)) => {
                    format!("note {c}.{k} has no `### {c}.{k} …` heading in {DECISIONS}")
                }
                Cite::Outside(name) if !in_sources => format!(
                    "`{name}` is outside the repository: cite {DECISIONS} (§ N or a note) \
                     or the paper's own equation and section numbers"
                ),
                _ => continue,
            };
            out.push(Finding {
                path: rel.to_string(),
                line: i + 1,
                message,
            });
        }
    }
    out
}

/// The headings of the decisions file: `## N. …`, `## Note X. …`, `### X.N …`.
pub fn parse_headings(text: &str) -> Headings {
    let mut h = Headings::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("### ") {
            let mut ch = rest.chars();
            if let (Some(c), Some('.')) = (ch.next(), ch.next()) {
                if let Some((k, _)) = leading_number(ch.as_str()) {
                    if c.is_ascii_uppercase() {
                        h.sub_notes.insert((c, k));
                    }
                }
            }
        } else if let Some(rest) = line.strip_prefix("## ") {
            if let Some(note) = rest.strip_prefix("Note ") {
                let mut ch = note.chars();
                if let (Some(c), Some('.')) = (ch.next(), ch.next()) {
                    if c.is_ascii_uppercase() {
                        h.notes.insert(c);
                    }
                }
            } else if let Some((n, after)) = leading_number(rest) {
                if after.starts_with('.') {
                    h.decisions.insert(n);
                }
            }
        }
    }
    h
}

/// Every reference in one line, in order of appearance.
///
/// Decision numbers follow `decision` / `decisions` (any case) or
/// `DECISIONS.md` plus `§` / `§§`; a list may use commas, `and`, and ranges
/// with `–`, `-` or `to` (`decisions 8–12`, `§§ 16 and 17`, `decisions 1, 3-5`).
/// Notes are `note X` / `notes X and Y` with `X` one capital letter, optionally
/// `X.N`.
pub fn parse_line(line: &str) -> Vec<Cite> {
    let mut cites: Vec<(usize, Cite)> = Vec::new();
    for name in FORBIDDEN {
        for (pos, _) in line.match_indices(name) {
            cites.push((pos, Cite::Outside(name)));
        }
    }
    let lower = line.to_ascii_lowercase();
    // `decision N`, `decisions N–M`, …
    for (pos, _) in lower.match_indices("decision") {
        if pos > 0 && is_word_byte(lower.as_bytes()[pos - 1]) {
            continue;
        }
        let mut rest = &lower[pos + "decision".len()..];
        rest = rest.strip_prefix('s').unwrap_or(rest);
        if let Some(after_md) = rest.strip_prefix(".md") {
            // `DECISIONS.md § N`, `DECISIONS.md, § N`, `DECISIONS.md §§ N–M`
            let r = after_md.trim_start_matches([',', ' ', '`']);
            let r = r.trim_start_matches('§').trim_start();
            for n in number_list(r) {
                cites.push((pos, Cite::Decision(n)));
            }
            continue;
        }
        if !rest.starts_with(' ') {
            continue;
        }
        for n in number_list(rest.trim_start()) {
            cites.push((pos, Cite::Decision(n)));
        }
    }
    // `note X`, `notes X and Y`, `note G.1`
    for (pos, _) in line.match_indices("note") {
        if pos > 0 && is_word_byte(line.as_bytes()[pos - 1]) {
            continue;
        }
        let mut rest = &line[pos + "note".len()..];
        rest = rest.strip_prefix('s').unwrap_or(rest);
        for (c, sub) in letter_list(rest) {
            cites.push((pos, Cite::Note(c, sub)));
        }
    }
    cites.sort_by_key(|(pos, _)| *pos);
    cites.into_iter().map(|(_, c)| c).collect()
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `(n, rest)` when `s` starts with ASCII digits.
fn leading_number(s: &str) -> Option<(u32, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if end == 0 {
        return None;
    }
    let n = s[..end].parse().ok()?;
    Some((n, &s[end..]))
}

/// The numbers of a list such as `8–12`, `16 and 17`, `1, 3-5`, `2 to 4`.
fn number_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let Some((first, mut rest)) = leading_number(s) else {
        return out;
    };
    // A number glued to letters (`17th`, `3x3`) is not a decision.
    if rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return out;
    }
    out.push(first);
    let mut last = first;
    loop {
        let (is_range, after) = if let Some(r) = strip_any(rest, &["–", "-", " to "]) {
            (true, r)
        } else if let Some(r) = strip_any(rest, &[", and ", " and ", ", "]) {
            (false, r)
        } else {
            break;
        };
        let Some((n, r)) = leading_number(after.trim_start()) else {
            break;
        };
        if r.starts_with(|c: char| c.is_ascii_alphabetic()) {
            break;
        }
        if is_range && n >= last && n - last <= 100 {
            out.extend(last + 1..=n);
        } else {
            out.push(n);
        }
        last = n;
        rest = r;
    }
    out
}

fn strip_any<'a>(s: &'a str, prefixes: &[&str]) -> Option<&'a str> {
    prefixes.iter().find_map(|p| s.strip_prefix(p))
}

/// The note letters after `note` / `notes`: ` D`, ` D (i)`, ` G.1`,
/// ` D and E`, ` B, C`.
fn letter_list(s: &str) -> Vec<(char, Option<u32>)> {
    let mut out = Vec::new();
    let mut rest = s;
    let mut sep: &[&str] = &[" "];
    while let Some(r) = strip_any(rest, sep) {
        let mut ch = r.chars();
        let Some(c) = ch.next().filter(|c| c.is_ascii_uppercase()) else {
            break;
        };
        let mut after = ch.as_str();
        // A single capital letter, not the start of a word (`note That`).
        if after.starts_with(|c: char| c.is_alphanumeric()) {
            break;
        }
        let mut sub = None;
        if let Some(r2) = after.strip_prefix('.') {
            if let Some((k, r3)) = leading_number(r2) {
                sub = Some(k);
                after = r3;
            }
        }
        out.push((c, sub));
        rest = after;
        sep = &[", and ", " and ", ", "];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decisions(line: &str) -> Vec<u32> {
        parse_line(line)
            .into_iter()
            .filter_map(|c| match c {
                Cite::Decision(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    fn notes(line: &str) -> Vec<(char, Option<u32>)> {
        parse_line(line)
            .into_iter()
            .filter_map(|c| match c {
                Cite::Note(c, s) => Some((c, s)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn single_decisions() {
        assert_eq!(decisions("/// padding 0 (decision 7)."), [7]);
        assert_eq!(decisions("//! Decision 17 applies"), [17]);
        assert_eq!(decisions("see decision 6's measurement"), [6]);
        assert_eq!(decisions("(docs/DECISIONS.md § 13)"), [13]);
        assert_eq!(decisions("docs/DECISIONS.md §6 says"), [6]);
        assert_eq!(decisions("`docs/DECISIONS.md`, § 4"), [4]);
    }

    #[test]
    fn ranges_en_dash_and_hyphen() {
        assert_eq!(
            decisions("checkpoints (decisions 8–12)."),
            [8, 9, 10, 11, 12]
        );
        assert_eq!(decisions("decisions 1-7"), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(decisions("docs/DECISIONS.md §§ 1–3, note B"), [1, 2, 3]);
        assert_eq!(decisions("decisions 2 to 4"), [2, 3, 4]);
    }

    #[test]
    fn lists_with_and_and_commas() {
        assert_eq!(decisions("(decisions 16 and 17)"), [16, 17]);
        assert_eq!(decisions("docs/DECISIONS.md §§ 10 and 11: CT"), [10, 11]);
        assert_eq!(decisions("decisions 1, 3-5, and 9"), [1, 3, 4, 5, 9]);
        // Two citations on one line.
        assert_eq!(decisions("decision 4 and then decision 6"), [4, 6]);
    }

    #[test]
    fn non_citations_are_ignored() {
        assert!(decisions("a decision is a default").is_empty());
        assert!(decisions("indecision 3").is_empty());
        assert!(decisions("decision 3x3 convs").is_empty());
        assert!(decisions("see docs/DECISIONS.md for more").is_empty());
        // A range stops at a non-number; a trailing `and note` is not a number.
        assert_eq!(decisions("DECISIONS.md § 1 and note C (A)"), [1]);
        assert_eq!(decisions("decision 17-style caching"), [17]);
    }

    #[test]
    fn note_letters() {
        assert_eq!(notes("docs/DECISIONS.md, note D (i)"), [('D', None)]);
        assert_eq!(notes("(note G.1)"), [('G', Some(1))]);
        assert_eq!(notes("notes D and E"), [('D', None), ('E', None)]);
        assert_eq!(notes("notes B, C"), [('B', None), ('C', None)]);
        assert!(notes("note That this is prose").is_empty());
        assert!(notes("denote X").is_empty());
        assert!(notes("Note: lower").is_empty());
    }

    #[test]
    fn outside_references_except_the_data_path() {
        let paper = format!("see {} §3.4", FORBIDDEN[0]);
        assert_eq!(parse_line(&paper), [Cite::Outside(FORBIDDEN[0])]);
        let shared = format!("design notes in {}/x", FORBIDDEN[2]);
        assert_eq!(parse_line(&shared), [Cite::Outside(FORBIDDEN[2])]);
        // Data beside the clone is no exception: the repository ships its own.
        let data = format!("found in `{}/data/mnist-test`", FORBIDDEN[2]);
        assert_eq!(parse_line(&data), [Cite::Outside(FORBIDDEN[2])]);
    }

    const HEADINGS: &str = "# Project decisions\n\n\
        Sources: the paper, and PLACEHOLDER.\n\n\
        ## 1. DT noise schedule\n\n## 2. Noising\n\n## 17. Image-path caching\n\n\
        ## Note D. Samplers\n\n### D.1 Something\n\n## Not a heading\n";

    #[test]
    fn headings_are_parsed() {
        let h = parse_headings(HEADINGS);
        assert_eq!(h.decisions.iter().copied().collect::<Vec<_>>(), [1, 2, 17]);
        assert_eq!(h.notes.iter().copied().collect::<Vec<_>>(), ['D']);
        assert_eq!(h.sub_notes.iter().copied().collect::<Vec<_>>(), [('D', 1)]);
    }

    #[test]
    fn unresolved_references_are_reported_with_line_numbers() {
        let h = parse_headings(HEADINGS);
        let text = format!(
            "ok (decision 17)\nbad (decisions 1–3)\nbad note E\nok note D.1, bad note D.2\n{}\n",
            FORBIDDEN[1]
        );
        let found = check_text("crates/x/src/lib.rs", &text, &h);
        let lines: Vec<_> = found.iter().map(|f| f.line).collect();
        assert_eq!(lines, [2, 3, 4, 5], "{found:#?}");
        assert!(found[0].message.contains("decision 3 "), "{}", found[0]);
        assert!(found[0].to_string().starts_with("crates/x/src/lib.rs:2: "));
    }

    #[test]
    fn sources_paragraph_of_the_decisions_file_is_allowed() {
        let text = HEADINGS.replace("PLACEHOLDER", FORBIDDEN[0]);
        let h = parse_headings(&text);
        assert!(check_text(DECISIONS, &text, &h).is_empty());
        // Elsewhere the same line is flagged.
        assert_eq!(check_text("docs/OTHER.md", &text, &h).len(), 1);
    }

    #[test]
    fn the_repository_passes() {
        let root = workspace_root();
        let findings: Vec<_> = check(&root)
            .unwrap()
            .iter()
            .map(|f| f.to_string())
            .collect();
        assert!(findings.is_empty(), "{}", findings.join("\n"));
    }
}
