//! `cargo xtask check-host-reads`: code above the tensor crate calls tensor
//! ops only, so every method runs where its tensors live (CPU or GPU).
//!
//! The check scans the library sources of the crates between the tensor
//! crate and the trainer (`crates/{schedules,nn,models,baselines}/src`) for
//! host-slice accessors of `Tensor` — `as_slice`, `as_mut_slice`,
//! `with_dtype!`, `to_vec_f32`/`to_vec_f64`, `try_to_vec_*`, `into_vec`,
//! `view::<` and `view_mut` — outside comments and `#[cfg(test)]` modules.
//! Each hit must match an entry of [`ALLOWED`]: a file, a piece of the
//! offending line, and why that host read is not a per-sample data path
//! (host-side control such as the learnable schedule's parameters, `B`
//! per-row scalars for a logged loss, initialisation, checkpoint I/O).
//! Anything else fails with the file and line.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::run_bin::workspace_root;

/// The library source folders scanned.
const SCANNED: &[&str] = &[
    "crates/schedules/src",
    "crates/nn/src",
    "crates/models/src",
    "crates/baselines/src",
];

/// The accessors that read or write a tensor's host memory.
const PATTERNS: &[&str] = &[
    "as_slice",
    "as_mut_slice",
    "with_dtype!",
    "to_vec_f32",
    "to_vec_f64",
    "try_to_vec_",
    "into_vec",
    "view::<",
    "view_mut",
];

/// One allowed host read: the file, a piece of the line that holds it, and
/// why it may stay.
#[derive(Clone, Copy, Debug)]
pub struct Allowed {
    /// Path from the repository root.
    pub file: &'static str,
    /// A piece of the offending line (trimmed) that identifies it.
    pub line: &'static str,
    /// Why this read is host-side control, not a per-sample data path.
    pub reason: &'static str,
}

/// The host reads that may stay, each with its reason.
pub const ALLOWED: &[Allowed] = &[
    Allowed {
        file: "crates/baselines/src/relatives/forward_forward.rs",
        line: "let mut v = x.try_to_vec_f64()?;",
        reason: "Forward-Forward's label embedding; the relatives (issue 16) run on the CPU only and refuse --device cuda (Method::to_device's default)",
    },
    Allowed {
        file: "crates/baselines/src/relatives/mlp.rs",
        line: "Ok(ops::row_dots(x, x)?.try_to_vec_f64()?)",
        reason: "B per-row goodness scalars for Forward-Forward's loss and its per-label prediction scores; CPU-only methods, refuse --device cuda",
    },
    Allowed {
        file: "crates/baselines/src/relatives/mlp.rs",
        line: "let v: Vec<f64> = x.try_to_vec_f64()?.into_iter().map(f).collect();",
        reason: "the relatives' element-wise activations (tanh, ELU); CPU-only methods, refuse --device cuda",
    },
    Allowed {
        file: "crates/baselines/src/relatives/mlp.rs",
        line: "let (av, bv) = (a.try_to_vec_f64()?, b.try_to_vec_f64()?);",
        reason: "the relatives' element-wise activation derivatives; CPU-only methods, refuse --device cuda",
    },
    Allowed {
        file: "crates/baselines/src/relatives/mlp.rs",
        line: "let mut v = a.try_to_vec_f64()?;",
        reason: "the relatives' row concatenation (FF positive/negative passes); CPU-only methods, refuse --device cuda",
    },
    Allowed {
        file: "crates/baselines/src/relatives/mlp.rs",
        line: "v.extend(b.try_to_vec_f64()?);",
        reason: "the relatives' row concatenation (FF positive/negative passes); CPU-only methods, refuse --device cuda",
    },
    Allowed {
        file: "crates/baselines/src/relatives/mlp.rs",
        line: "let v = x.try_to_vec_f64()?[lo * d..hi * d].to_vec();",
        reason: "the relatives' row slicing; CPU-only methods, refuse --device cuda",
    },
    Allowed {
        file: "crates/schedules/src/learnable.rs",
        line: "ops::rand_uniform(&[3 * width], DType::F64, &mut rng)?.to_vec_f64()",
        reason: "initialisation of the schedule's 3·width host parameters",
    },
    Allowed {
        file: "crates/schedules/src/learnable.rs",
        line: "self.params.to_vec_f64()",
        reason: "the learnable schedule (3·width+3 f64 parameters) is evaluated on the host",
    },
    Allowed {
        file: "crates/schedules/src/learnable.rs",
        line: "self.grad.to_vec_f64()",
        reason: "the learnable schedule's gradient accumulator lives on the host",
    },
    Allowed {
        file: "crates/schedules/src/ode.rs",
        line: "ops::row_dots(a, b)?.try_to_vec_f64()",
        reason: "B per-row scalars for the host-side schedule gradient and the logged loss",
    },
    Allowed {
        file: "crates/nn/src/io.rs",
        line: ".as_slice::<f32>()",
        reason: "checkpoint writing (tensors are copied to the host first)",
    },
    Allowed {
        file: "crates/nn/src/io.rs",
        line: ".as_slice::<f64>()",
        reason: "checkpoint writing (tensors are copied to the host first)",
    },
    Allowed {
        file: "crates/models/src/embedding.rs",
        line: "w.as_mut_slice::<f32>()",
        reason: "building W_Embed at construction, on the host before to_device",
    },
    Allowed {
        file: "crates/models/src/embedding.rs",
        line: "gram.as_slice::<f64>()",
        reason: "choosing the prototype images at construction (host, before to_device)",
    },
    Allowed {
        file: "crates/models/src/embedding.rs",
        line: "row.to_vec_f32()",
        reason: "copying the chosen prototype image at construction",
    },
    Allowed {
        file: "crates/models/src/dt.rs",
        line: "ops::row_dots(&u, &u)?.try_to_vec_f64()",
        reason: "B squared norms for the logged KL value (its gradient is a tensor op)",
    },
    Allowed {
        file: "crates/models/src/ct/train.rs",
        line: ".to_vec_f64();",
        reason: "the B times t ~ U(0, 1) are host scalars: the host-side schedule is evaluated \
                 at them; they reach the device as per-row coefficients",
    },
    Allowed {
        file: "crates/baselines/src/adjoint.rs",
        line: ".try_to_vec_f64()?",
        reason: "B row maxima → ‖z‖_∞, the scalar deciding whether the fixed-point iteration \
                 goes on",
    },
    Allowed {
        file: "crates/baselines/src/backprop.rs",
        line: "self.w.try_to_vec_f64()",
        reason: "the T gates w_t are scalars setting the coefficients of Eq. 18",
    },
    Allowed {
        file: "crates/baselines/src/backprop.rs",
        line: "self.w.to_vec_f64()[t - 1].tanh()",
        reason: "α_t for reporting",
    },
];

/// Options of `cargo xtask check-host-reads`.
#[derive(clap::Args, Debug, Default)]
pub struct CheckHostReadsArgs {
    /// Check this tree instead of the workspace this xtask was built in.
    #[arg(long)]
    pub root: Option<PathBuf>,
}

/// A host read that no [`ALLOWED`] entry covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Path from the repository root.
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The accessor found.
    pub pattern: &'static str,
    /// The line, trimmed.
    pub text: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: host read `{}` above the tensor crate: {}",
            self.file, self.line, self.pattern, self.text
        )
    }
}

/// Run the check on the workspace (or `--root`).
pub fn run(args: CheckHostReadsArgs) -> Result<()> {
    let root = args.root.unwrap_or_else(workspace_root);
    let findings = check(&root)?;
    if findings.is_empty() {
        eprintln!(
            "==> check-host-reads: no host-slice reads outside the allow-list in {}; allowed:",
            SCANNED.join(", ")
        );
        for a in ALLOWED {
            eprintln!("    {}: {}", a.file, a.reason);
        }
        return Ok(());
    }
    for f in &findings {
        println!("{f}");
    }
    bail!(
        "check-host-reads: {} host read(s) above the tensor crate: use tensor ops \
         (noprop_tensor::ops), or add an entry with its reason to ALLOWED in \
         xtask/src/check_host_reads.rs if the read is host-side control",
        findings.len()
    )
}

/// Every disallowed host read under `root`, in path then line order.
pub fn check(root: &Path) -> Result<Vec<Finding>> {
    let mut files = Vec::new();
    for dir in SCANNED {
        collect_rs(&root.join(dir), &mut files)?;
    }
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let rel = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .to_string_lossy()
            .replace('\\', "/");
        out.extend(check_text(&rel, &text, ALLOWED));
    }
    Ok(out)
}

fn collect_rs(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if !path.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(path).with_context(|| format!("reading {}", path.display()))? {
        let entry = entry?;
        let p = entry.path();
        if entry.file_type()?.is_dir() {
            // `tests/` folders inside `src` are test code too.
            if entry.file_name() != "tests" {
                collect_rs(&p, out)?;
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// The disallowed host reads of one file (`rel` is its path from the root).
/// Comment lines and `#[cfg(test)]` items (a module or function, up to its
/// closing brace) are skipped.
pub fn check_text(rel: &str, text: &str, allowed: &[Allowed]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut pending_cfg_test = false;
    // Brace depth at which a skipped `#[cfg(test)]` item closes.
    let mut skip_until: Option<i64> = None;
    let mut depth: i64 = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let code = line.split("//").next().unwrap_or("");
        let opens = code.matches('{').count() as i64;
        let closes = code.matches('}').count() as i64;
        if let Some(d) = skip_until {
            depth += opens - closes;
            if depth <= d {
                skip_until = None;
            }
            continue;
        }
        if line.starts_with("#[cfg(test)]") {
            pending_cfg_test = true;
            continue;
        }
        if pending_cfg_test && !line.starts_with("#[") && !line.is_empty() {
            pending_cfg_test = false;
            if opens > closes {
                skip_until = Some(depth);
                depth += opens - closes;
                continue;
            }
            // A one-line item (`mod tests;`, a `use`): nothing to scan there.
            continue;
        }
        depth += opens - closes;
        if line.starts_with("//") {
            continue;
        }
        for &pattern in PATTERNS {
            if !code.contains(pattern) {
                continue;
            }
            let ok = allowed
                .iter()
                .any(|a| a.file == rel && line.contains(a.line));
            if !ok {
                out.push(Finding {
                    file: rel.to_string(),
                    line: i + 1,
                    pattern,
                    text: line.to_string(),
                });
            }
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "\
//! A doc line mentioning `as_slice` is fine.
use noprop_tensor::Tensor;

/// Doc: `to_vec_f64` in a doc comment is fine.
pub fn bad(x: &Tensor) -> f64 {
    x.to_vec_f64().iter().sum()
}

pub fn ok(x: &Tensor) -> Vec<f64> {
    x.to_vec_f64() // allowed below
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_host_slices() {
        let v = t.as_slice::<f32>().unwrap();
        assert!(v.len() > 0);
    }
}

pub fn after_tests(x: &mut Tensor) {
    noprop_tensor::with_dtype!(x.dtype(), T, { x.as_mut_slice::<T>().unwrap()[0] = T::zero(); });
}
";

    const ALLOW: &[Allowed] = &[Allowed {
        file: "crates/models/src/x.rs",
        line: "x.to_vec_f64() // allowed",
        reason: "test",
    }];

    #[test]
    fn catches_a_violation_and_skips_comments_allowed_lines_and_tests() {
        let found = check_text("crates/models/src/x.rs", SRC, ALLOW);
        let lines: Vec<(usize, &str)> = found.iter().map(|f| (f.line, f.pattern)).collect();
        assert_eq!(
            lines,
            vec![(6, "to_vec_f64"), (23, "as_mut_slice")],
            "{found:?}"
        );
        assert!(found[0].to_string().contains("crates/models/src/x.rs:6"));
    }

    #[test]
    fn an_allow_entry_covers_only_its_own_file() {
        let found = check_text("crates/models/src/y.rs", SRC, ALLOW);
        assert!(found.iter().any(|f| f.line == 10), "{found:?}");
    }

    #[test]
    fn the_repository_passes() {
        let findings: Vec<String> = check(&workspace_root())
            .unwrap()
            .iter()
            .map(|f| f.to_string())
            .collect();
        assert!(findings.is_empty(), "{}", findings.join("\n"));
    }

    #[test]
    fn every_allow_entry_is_used() {
        let root = workspace_root();
        for a in ALLOWED {
            let text = std::fs::read_to_string(root.join(a.file)).unwrap();
            assert!(
                text.lines().any(|l| l.contains(a.line)),
                "stale allow-list entry {}: `{}` ({})",
                a.file,
                a.line,
                a.reason
            );
        }
    }
}
