//! Checking a dataset on disk: where its files are, whether they match the
//! manifest, whether they parse, and how many images of each class each
//! split holds — the library side of `noprop data check`.
//!
//! [`check`] reuses the loader's pieces ([`locate`], [`search_locations`],
//! the manifest verification and the parsers) but never stops at the first
//! problem and never returns an error: everything it finds is recorded in a
//! [`DataCheck`], whose [`Display`](fmt::Display) is a human-readable
//! summary and whose [`DataCheck::is_ok`] says whether a verifying
//! [`load`](crate::load) would succeed.
//!
//! Unlike a load, a check always verifies (whatever
//! [`LoadOptions::verify`] says) and always hashes the files: it neither
//! reads nor writes the verification stamp cache.
//!
//! ```
//! use noprop_datasets::{check, DatasetName, LoadOptions};
//!
//! // The MNIST test set ships with the repository (datasets/mnist-test).
//! let report = check(DatasetName::MnistTestSplit, &LoadOptions::default());
//! assert!(report.is_ok(), "{report}");
//! assert_eq!(report.splits[0].images + report.splits[1].images, 10_000);
//! println!("{report}");
//! ```

use crate::dataset::ImageShape;
use crate::error::Error;
use crate::io::read_payload;
use crate::load::{
    assemble, locate, manifest_entry, par_map, scan_dir, search_locations, DatasetName, LoadOptions,
};
use crate::manifest::DatasetEntry;
use crate::verify::{verify_file, FileId, Verification};
use crate::Cifar100Labels;
use std::fmt;
use std::path::{Path, PathBuf};

/// What [`check`] found out about one file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileStatus {
    /// A pinned checksum matched: [`Verification::Sha256`] (of the
    /// decompressed payload) or [`Verification::ArchiveChecksum`] (the file
    /// is the downloaded archive itself and its MD5 / SHA-256 matched).
    Verified(Verification),
    /// No checksum is pinned for this file; its decompressed size matched the
    /// manifest (extracted CIFAR members).
    SizeOnly,
    /// The manifest has no entry for this file: nothing to check against.
    NotPinned,
    /// The file's checksum differs from the one pinned in the manifest.
    ChecksumMismatch {
        /// `"sha256"` or `"md5"`.
        algorithm: &'static str,
        /// Whether the checksum covers the decompressed payload.
        decompressed: bool,
        /// Hex digest pinned in the manifest.
        expected: String,
        /// Hex digest of the file.
        actual: String,
    },
    /// The file's size differs from the one pinned in the manifest.
    SizeMismatch {
        /// Whether the size is that of the decompressed payload.
        decompressed: bool,
        /// Size pinned in the manifest, in bytes.
        expected: u64,
        /// Size found, in bytes.
        actual: u64,
    },
    /// The file was not found (neither `<file>` nor `<file>.gz`).
    Missing,
    /// The file exists but could not be read or decompressed.
    Unreadable {
        /// What went wrong (the loader's error message, naming the file).
        message: String,
    },
}

impl FileStatus {
    /// Whether the file is usable: verified, size-checked or not pinned.
    pub fn is_ok(&self) -> bool {
        matches!(
            self,
            FileStatus::Verified(_) | FileStatus::SizeOnly | FileStatus::NotPinned
        )
    }

    /// Maps a verification outcome of the loader onto a status.
    fn from_verification(result: crate::Result<Verification>) -> FileStatus {
        match result {
            Ok(Verification::Unpinned) => FileStatus::NotPinned,
            Ok(Verification::SizeOnly) => FileStatus::SizeOnly,
            Ok(v) => FileStatus::Verified(v),
            Err(Error::ChecksumMismatch {
                algorithm,
                decompressed,
                expected,
                actual,
                ..
            }) => FileStatus::ChecksumMismatch {
                algorithm,
                decompressed,
                expected,
                actual,
            },
            Err(Error::SizeMismatch {
                decompressed,
                expected,
                actual,
                ..
            }) => FileStatus::SizeMismatch {
                decompressed,
                expected,
                actual,
            },
            Err(e) => FileStatus::Unreadable {
                message: e.to_string(),
            },
        }
    }
}

impl fmt::Display for FileStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let of_payload = |decompressed: bool| {
            if decompressed {
                " of the decompressed payload"
            } else {
                ""
            }
        };
        match self {
            FileStatus::Verified(Verification::Sha256) => {
                f.write_str("verified (SHA-256 of the payload matches the manifest)")
            }
            FileStatus::Verified(Verification::ArchiveChecksum) => {
                f.write_str("verified (archive checksum matches the manifest)")
            }
            FileStatus::Verified(other) => write!(f, "verified ({other:?})"),
            FileStatus::SizeOnly => {
                f.write_str("size matches the manifest (no checksum pinned for this file)")
            }
            FileStatus::NotPinned => f.write_str("not pinned in the manifest (not verified)"),
            FileStatus::ChecksumMismatch {
                algorithm,
                decompressed,
                expected,
                actual,
            } => write!(
                f,
                "CHECKSUM MISMATCH: {algorithm}{}: expected {expected}, found {actual}",
                of_payload(*decompressed)
            ),
            FileStatus::SizeMismatch {
                decompressed,
                expected,
                actual,
            } => write!(
                f,
                "SIZE MISMATCH{}: expected {} bytes, found {}",
                if *decompressed {
                    " (decompressed payload)"
                } else {
                    ""
                },
                thousands(*expected),
                thousands(*actual)
            ),
            FileStatus::Missing => f.write_str("MISSING"),
            FileStatus::Unreadable { message } => write!(f, "UNREADABLE: {message}"),
        }
    }
}

/// One file a dataset needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileCheck {
    /// The file's name as listed by [`DatasetName::files`] (without `.gz`).
    pub name: &'static str,
    /// Where it was found (raw or `.gz`); `None` when missing.
    pub path: Option<PathBuf>,
    /// Its size on disk in bytes, when it could be read.
    pub size: Option<u64>,
    /// What was found out about it.
    pub status: FileStatus,
}

/// Image counts of one split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitCheck {
    /// `"train"` or `"test"`.
    pub name: &'static str,
    /// Number of images.
    pub images: usize,
    /// Number of images of each class (one entry per class).
    pub per_class: Vec<usize>,
}

/// Everything [`check`] found out about one dataset. Nothing in it stops at
/// the first problem: every file is listed with its own status and every
/// parse problem is kept.
#[derive(Debug)]
pub struct DataCheck {
    /// The dataset checked.
    pub dataset: DatasetName,
    /// The directory its files were found in: the first holding all of them
    /// (the one [`load`](crate::load) would read), else the first holding
    /// some of them; `None` when no file was found anywhere.
    pub dir: Option<PathBuf>,
    /// Every directory searched with what was missing there, when the
    /// dataset is not complete in any of them (empty when it was found).
    pub searched: Vec<(PathBuf, String)>,
    /// One entry per file the dataset needs ([`DatasetName::files`] order).
    pub files: Vec<FileCheck>,
    /// Image shape read from the files; `None` when no split could be parsed.
    pub shape: Option<ImageShape>,
    /// Number of classes of the label set checked (CIFAR-100: 100 fine or 20
    /// coarse, per [`LoadOptions::cifar100_labels`]).
    pub num_classes: usize,
    /// Image counts of each split that could be parsed (`train` before
    /// `test`).
    pub splits: Vec<SplitCheck>,
    /// Problems beyond the per-file statuses: bad magic numbers, truncated
    /// or oversized files, image / label count disagreements, labels out of
    /// range, an image shape other than the dataset's, a manifest that
    /// cannot be read. Each names its file.
    pub problems: Vec<Error>,
}

impl DataCheck {
    /// Whether every file was found and is usable (see
    /// [`FileStatus::is_ok`]), both splits parsed, the images have the
    /// dataset's shape and nothing else is wrong: a verifying
    /// [`load`](crate::load) with the same options would succeed.
    pub fn is_ok(&self) -> bool {
        self.files.iter().all(|f| f.status.is_ok())
            && self.problems.is_empty()
            && self.splits.len() == 2
    }

    /// Whether none of the dataset's files was found.
    pub fn is_missing(&self) -> bool {
        self.files.iter().all(|f| f.status == FileStatus::Missing)
    }

    /// Total number of images over both splits.
    pub fn total_images(&self) -> usize {
        self.splits.iter().map(|s| s.images).sum()
    }

    /// Number of things wrong: files not usable plus other problems.
    pub fn problem_count(&self) -> usize {
        self.files.iter().filter(|f| !f.status.is_ok()).count() + self.problems.len()
    }
}

impl fmt::Display for DataCheck {
    /// A multi-line summary: a verdict line, the directory, one line per
    /// file, the image shape, per-split and per-class counts, the problems
    /// and, when files are missing, every place searched and the command to
    /// download the dataset.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_ok() {
            "ok".to_string()
        } else if self.is_missing() {
            "MISSING".to_string()
        } else {
            let n = self.problem_count();
            format!("{n} PROBLEM{}", if n == 1 { "" } else { "S" })
        };
        writeln!(f, "{}: {verdict}", self.dataset)?;
        if let Some(dir) = &self.dir {
            writeln!(f, "  directory: {}", dir.display())?;
        }
        if !self.is_missing() {
            writeln!(f, "  files:")?;
            for file in &self.files {
                let shown = match &file.path {
                    Some(p) if p.parent() == self.dir.as_deref() => p
                        .file_name()
                        .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into()),
                    Some(p) => p.display().to_string(),
                    None => format!("{}[.gz]", file.name),
                };
                match file.size {
                    Some(size) => writeln!(
                        f,
                        "    {shown} ({} bytes): {}",
                        thousands(size),
                        file.status
                    )?,
                    None => writeln!(f, "    {shown}: {}", file.status)?,
                }
            }
        }
        if let Some(shape) = self.shape {
            writeln!(
                f,
                "  images: {}x{}x{}, {} classes",
                shape.channels, shape.height, shape.width, self.num_classes
            )?;
        }
        for split in &self.splits {
            writeln!(
                f,
                "  {}: {} images; per class:",
                split.name,
                thousands(split.images as u64)
            )?;
            for row in split.per_class.chunks(10).enumerate() {
                let (r, counts) = row;
                let cells: Vec<String> = counts
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| format!("{}: {}", r * 10 + i, thousands(n as u64)))
                    .collect();
                writeln!(f, "    {}", cells.join(", "))?;
            }
        }
        if !self.problems.is_empty() {
            writeln!(f, "  problems:")?;
            for p in &self.problems {
                writeln!(f, "    - {p}")?;
            }
        }
        if self.files.iter().any(|x| x.status == FileStatus::Missing) {
            writeln!(f, "  looked in:")?;
            for (dir, why) in &self.searched {
                writeln!(f, "    {} ({why})", dir.display())?;
            }
            writeln!(
                f,
                "  download it with `{}` (or pass --data-dir / set ${})",
                self.dataset.fetch_command(),
                crate::DATA_ENV
            )?;
        }
        Ok(())
    }
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Reads and verifies one file; never fails. Returns its size on disk, its
/// status and its decompressed payload when it could be read (also when it
/// does not verify, so it can still be parsed and counted).
fn check_file(
    path: &Path,
    entry: Option<&DatasetEntry>,
) -> (Option<u64>, FileStatus, Option<Vec<u8>>) {
    let unreadable = |e: Error| FileStatus::Unreadable {
        message: e.to_string(),
    };
    let id = match FileId::of(path) {
        Ok(id) => id,
        Err(e) => return (None, unreadable(e), None),
    };
    let (payload, disk) = match read_payload(path) {
        Ok(read) => read,
        Err(e) => return (Some(id.size), unreadable(e), None),
    };
    let verified = verify_file(path, id, &payload, disk.as_deref(), entry, None);
    (
        Some(id.size),
        FileStatus::from_verification(verified),
        Some(payload),
    )
}

/// Index in [`DatasetName::files`] of the image file of split `split`
/// (0 = train, 1 = test) for the IDX datasets; `None` for CIFAR, whose shape
/// is fixed by the format.
fn idx_images_file(name: DatasetName, split: usize) -> Option<usize> {
    match name {
        DatasetName::Mnist | DatasetName::FashionMnist => Some(2 * split),
        DatasetName::MnistTestSplit => (split == 0).then_some(0),
        DatasetName::Cifar10 | DatasetName::Cifar100 | DatasetName::TinyImagenet => None,
    }
}

/// Checks one dataset: finds its files where [`load`](crate::load) would
/// (see [`search_locations`]; when no directory holds them all, the first
/// holding some of them is checked), verifies each against the manifest
/// (the built-in one unless `opts.manifest` is set), parses every file that
/// could be read, and counts images per split and per class (the 8,000 /
/// 2,000 split for [`DatasetName::MnistTestSplit`]). Never panics on bad files and never
/// stops at the first problem; see [`DataCheck`].
pub fn check(name: DatasetName, opts: &LoadOptions) -> DataCheck {
    let n = name.files().len();
    let mut problems = Vec::new();
    let (dir, found, searched) = match locate(name, opts) {
        Ok(located) => (
            Some(located.dir),
            located.files.into_iter().map(Some).collect(),
            Vec::new(),
        ),
        Err(Error::NotFound { searched, .. }) => {
            let partial = search_locations(name, opts).into_iter().find_map(|d| {
                scan_dir(name, &d)
                    .filter(|files| files.iter().any(Option::is_some))
                    .map(|files| (d, files))
            });
            match partial {
                Some((d, files)) => (Some(d), files, searched),
                None => (None, vec![None; n], searched),
            }
        }
        Err(other) => {
            problems.push(other);
            (None, vec![None; n], Vec::new())
        }
    };
    let entry = manifest_entry(name, opts, true).unwrap_or_else(|e| {
        problems.push(e);
        None
    });
    let results = par_map(&found, |p| p.as_deref().map(|path| check_file(path, entry)));
    let mut files = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    for ((file, path), result) in name.files().iter().zip(&found).zip(results) {
        let (size, status, payload) = result.unwrap_or((None, FileStatus::Missing, None));
        files.push(FileCheck {
            name: file,
            path: path.clone(),
            size,
            status,
        });
        payloads.push(payload);
    }
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|f| f.path.clone().unwrap_or_else(|| PathBuf::from(f.name)))
        .collect();
    let (train, test) = if name == DatasetName::TinyImagenet {
        // A JPEG tree: its own reader lists, decodes (or reads the cache
        // of) every image, and names the first bad file.
        match dir.as_deref().filter(|_| found.iter().all(Option::is_some)) {
            Some(d) => match crate::tiny_imagenet::read_tiny_imagenet(d, false) {
                Ok(t) => (Some(t.train), Some(t.test)),
                Err(e) => {
                    problems.push(e);
                    (None, None)
                }
            },
            None => (None, None),
        }
    } else {
        assemble(name, &payloads, &paths, opts.cifar100_labels, &mut problems)
    };
    drop(payloads);
    let expected = name.shape();
    let mut shape = None;
    let mut splits = Vec::new();
    for (i, (split, data)) in [("train", train), ("test", test)].into_iter().enumerate() {
        let Some(data) = data else { continue };
        let got = data.shape();
        shape.get_or_insert(got);
        if got != expected {
            if let Some(file) = idx_images_file(name, i) {
                problems.push(Error::BadHeader {
                    file: paths[file].clone(),
                    offset: 8,
                    message: format!(
                        "images are {}x{}, expected {}x{} for {name}",
                        got.height, got.width, expected.height, expected.width
                    ),
                });
            }
        }
        splits.push(SplitCheck {
            name: split,
            images: data.len(),
            per_class: data.class_counts(),
        });
    }
    let num_classes = match (name, opts.cifar100_labels) {
        (DatasetName::Cifar100, Cifar100Labels::Coarse) => crate::cifar::CIFAR100_COARSE_CLASSES,
        _ => name.num_classes(),
    };
    DataCheck {
        dataset: name,
        dir,
        searched,
        files,
        shape,
        num_classes,
        splits,
        problems,
    }
}

/// [`check`] on every dataset in [`DatasetName::ALL`] order; datasets not
/// found anywhere are reported as missing (see [`DataCheck::is_missing`]).
pub fn check_all(opts: &LoadOptions) -> Vec<DataCheck> {
    DatasetName::ALL
        .iter()
        .map(|&name| check(name, opts))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(7_840_016), "7,840,016");
    }

    #[test]
    fn statuses_map_loader_errors() {
        let mismatch = FileStatus::from_verification(Err(Error::ChecksumMismatch {
            file: "f".into(),
            algorithm: "sha256",
            decompressed: true,
            expected: "aa".into(),
            actual: "bb".into(),
        }));
        assert!(!mismatch.is_ok());
        assert_eq!(
            mismatch.to_string(),
            "CHECKSUM MISMATCH: sha256 of the decompressed payload: expected aa, found bb"
        );
        assert_eq!(
            FileStatus::from_verification(Ok(Verification::Unpinned)),
            FileStatus::NotPinned
        );
        assert!(FileStatus::from_verification(Ok(Verification::SizeOnly)).is_ok());
        let gz = FileStatus::from_verification(Err(Error::TooLarge {
            file: "x.gz".into(),
            limit: 1,
        }));
        assert!(matches!(gz, FileStatus::Unreadable { ref message } if message.contains("x.gz")));
    }
}
