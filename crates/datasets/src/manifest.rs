//! The dataset manifest: download URLs, sizes and checksums of every file.
//!
//! The manifest lives in the repository at `datasets/manifest.json` and is
//! compiled into this crate ([`Manifest::builtin`]). Each dataset lists its
//! *archives* (what is downloaded: a `.gz` holding one file, or a `.tar.gz`
//! holding several) and, per archive, its *members* (the decompressed files the
//! parsers read). Archive checksums cover the bytes as downloaded; member
//! SHA-256 values cover the decompressed payload, so a re-compressed copy of a
//! file still verifies. A `null` checksum means "not pinned" (see
//! [`MemberEntry::sha256`]).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// The text of `datasets/manifest.json`, embedded at compile time.
pub const BUILTIN_MANIFEST_JSON: &str = include_str!("../../../datasets/manifest.json");

/// A parsed manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Schema version (currently 1).
    pub schema: u32,
    /// Free-form notes on provenance.
    #[serde(default)]
    pub notes: Vec<String>,
    /// One entry per downloadable dataset.
    pub datasets: Vec<DatasetEntry>,
}

/// One downloadable dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetEntry {
    /// Directory name and CLI name (`mnist`, `fashion-mnist`, `cifar10`, `cifar100`).
    pub name: String,
    /// One-line description.
    #[serde(default)]
    pub description: String,
    /// Where the dataset authors publish it.
    #[serde(default)]
    pub homepage: String,
    /// The on-disk format read.
    #[serde(default)]
    pub format: String,
    /// The files to download.
    pub archives: Vec<ArchiveEntry>,
}

/// How a downloaded archive holds its members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArchiveKind {
    /// A gzip file holding exactly one member; it is kept compressed on disk
    /// and decompressed when loaded.
    Gzip,
    /// A gzip-compressed tar file; the listed members are extracted.
    TarGz,
    /// A zip file, unpacked whole (Tiny ImageNet's ~120,000 files are too
    /// many to list); the listed members must be among its files.
    Zip,
}

/// One downloaded file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveEntry {
    /// File name the archive is stored under.
    pub file: String,
    /// Archive format.
    pub kind: ArchiveKind,
    /// Download URLs, tried in order.
    pub urls: Vec<String>,
    /// Size in bytes as downloaded, if pinned.
    pub size: Option<u64>,
    /// MD5 (lower-case hex) as downloaded, as published by the dataset
    /// authors or torchvision, if pinned.
    pub md5: Option<String>,
    /// SHA-256 (lower-case hex) as downloaded, if pinned.
    pub sha256: Option<String>,
    /// The files inside.
    pub members: Vec<MemberEntry>,
    /// Provenance remarks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One file inside an archive, as the parsers read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    /// Relative path: the decompressed file name for [`ArchiveKind::Gzip`],
    /// the path inside the tar file for [`ArchiveKind::TarGz`].
    pub path: String,
    /// Decompressed size in bytes, if pinned.
    pub size: Option<u64>,
    /// SHA-256 (lower-case hex) of the decompressed payload. `None` means
    /// "verify the archive checksum only": the archive is checked at
    /// download, and on load only the decompressed size is checked (plus the
    /// archive checksum when the file on disk is the pinned archive itself).
    pub sha256: Option<String>,
    /// Provenance remarks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl MemberEntry {
    /// The last path component (`data_batch_1.bin`).
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
}

impl Manifest {
    /// The manifest compiled into the crate (`datasets/manifest.json`).
    pub fn builtin() -> Result<&'static Manifest> {
        static BUILTIN: OnceLock<std::result::Result<Manifest, String>> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                Manifest::from_json(BUILTIN_MANIFEST_JSON, "datasets/manifest.json")
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|message| Error::Manifest {
                source_name: "datasets/manifest.json (built in)".into(),
                message: message.clone(),
            })
    }

    /// Parses and validates a manifest. `source_name` labels errors.
    pub fn from_json(text: &str, source_name: &str) -> Result<Manifest> {
        let manifest: Manifest = serde_json::from_str(text).map_err(|e| Error::Manifest {
            source_name: source_name.into(),
            message: e.to_string(),
        })?;
        manifest.validate(source_name)?;
        Ok(manifest)
    }

    /// Checks digests are well-formed hex and member paths are safe relative
    /// paths (no `..`, no absolute paths), so extraction cannot escape the
    /// destination directory.
    pub fn validate(&self, source_name: &str) -> Result<()> {
        let err = |message: String| Error::Manifest {
            source_name: source_name.into(),
            message,
        };
        if self.schema != 1 {
            return Err(err(format!(
                "unsupported schema {}, expected 1",
                self.schema
            )));
        }
        for d in &self.datasets {
            for a in &d.archives {
                check_hex(a.md5.as_deref(), 32)
                    .map_err(|m| err(format!("{}/{}: md5 {m}", d.name, a.file)))?;
                check_hex(a.sha256.as_deref(), 64)
                    .map_err(|m| err(format!("{}/{}: sha256 {m}", d.name, a.file)))?;
                if !safe_relative(&a.file) || a.file.contains('/') {
                    return Err(err(format!(
                        "{}: unsafe archive file name {:?}",
                        d.name, a.file
                    )));
                }
                if a.kind == ArchiveKind::Gzip && a.members.len() != 1 {
                    return Err(err(format!(
                        "{}/{}: a gzip archive must list exactly one member",
                        d.name, a.file
                    )));
                }
                for m in &a.members {
                    check_hex(m.sha256.as_deref(), 64)
                        .map_err(|msg| err(format!("{}/{}: sha256 {msg}", d.name, m.path)))?;
                    if !safe_relative(&m.path) {
                        return Err(err(format!("{}: unsafe member path {:?}", d.name, m.path)));
                    }
                }
            }
        }
        Ok(())
    }

    /// The entry for a dataset directory name (`mnist`, `fashion-mnist`, ...).
    pub fn dataset(&self, name: &str) -> Result<&DatasetEntry> {
        self.datasets
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| Error::Manifest {
                source_name: "manifest".into(),
                message: format!("no entry for dataset `{name}`"),
            })
    }
}

impl DatasetEntry {
    /// Finds the member whose file name is `file_name` (with or without a
    /// `.gz` suffix), together with its archive.
    pub fn member(&self, file_name: &str) -> Option<(&ArchiveEntry, &MemberEntry)> {
        let base = file_name.strip_suffix(".gz").unwrap_or(file_name);
        self.archives.iter().find_map(|a| {
            a.members
                .iter()
                .find(|m| m.file_name() == base)
                .map(|m| (a, m))
        })
    }
}

fn check_hex(value: Option<&str>, len: usize) -> std::result::Result<(), String> {
    match value {
        None => Ok(()),
        Some(v) if v.len() == len && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) => {
            Ok(())
        }
        Some(v) => Err(format!("{v:?} is not {len} lower-case hex digits")),
    }
}

fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_manifest_parses_and_covers_every_dataset() {
        let m = Manifest::builtin().expect("built-in manifest");
        for name in ["mnist", "fashion-mnist", "cifar10", "cifar100"] {
            let d = m.dataset(name).expect(name);
            assert!(!d.archives.is_empty());
            for a in &d.archives {
                assert!(!a.urls.is_empty(), "{name}/{}", a.file);
                assert!(a.md5.is_some() || a.sha256.is_some(), "{name}/{}", a.file);
                assert!(a.size.is_some(), "{name}/{}", a.file);
            }
        }
        let fm = m.dataset("fashion-mnist").unwrap();
        let (_, member) = fm.member("t10k-labels-idx1-ubyte.gz").unwrap();
        assert_eq!(
            member.sha256.as_deref(),
            Some("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34")
        );
        let tiny = m.dataset("tiny-imagenet").unwrap();
        assert_eq!(tiny.archives[0].kind, ArchiveKind::Zip);
        assert_eq!(
            tiny.archives[0].md5.as_deref(),
            Some("90528d7ca1a48142e341f4ef8d21d0de")
        );
        let c10 = m.dataset("cifar10").unwrap();
        assert_eq!(
            c10.member("test_batch.bin").unwrap().1.size,
            Some(30_730_000)
        );
    }

    #[test]
    fn rejects_unsafe_paths_and_bad_hex() {
        let bad_path = BUILTIN_MANIFEST_JSON.replace(
            "cifar-100-binary/test.bin",
            "cifar-100-binary/../../etc/passwd",
        );
        assert!(Manifest::from_json(&bad_path, "t").is_err());
        let bad_hex = BUILTIN_MANIFEST_JSON.replace(
            "03b5dce01913d631647c71ecec9e9cb8",
            "03B5DCE01913D631647C71ECEC9E9CB8",
        );
        assert!(Manifest::from_json(&bad_hex, "t").is_err());
    }
}
