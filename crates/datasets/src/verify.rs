//! Checksums and the verification cache.
//!
//! A file that verified once is not hashed again while its size and
//! modification time are unchanged: a small JSON *stamp* per file, keyed by
//! its canonical path, records size, mtime and the pinned digest it matched.
//! Stamps live in a cache directory (see [`StampCache`]) so read-only system
//! locations such as `/usr/share/datasets` are cached too. The cache is an
//! optimisation only: failing to read or write it never fails a load.

use crate::error::{Error, Result};
use crate::manifest::{ArchiveEntry, DatasetEntry, MemberEntry};
use md5::Md5;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Lower-case hex MD5 of `bytes`.
pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// How a file that was loaded got verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Verification {
    /// The SHA-256 of the decompressed payload matched the manifest.
    Sha256,
    /// The file on disk is the downloaded archive itself and its MD5 /
    /// SHA-256 matched (used where the payload SHA-256 is not pinned).
    ArchiveChecksum,
    /// A stamp showed the file verified earlier and is unchanged.
    Cached,
    /// No checksum applies (payload SHA-256 not pinned and the file is not
    /// the pinned archive, e.g. an extracted CIFAR member): only the
    /// decompressed size was checked.
    SizeOnly,
    /// The manifest has no entry for this file.
    Unpinned,
    /// Verification was turned off.
    Skipped,
}

/// One file read by a load, and how it was verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// How it was verified.
    pub verification: Verification,
}

/// Where verification stamps are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum StampCache {
    /// `$NOPROP_CACHE/verified`, else `$XDG_CACHE_HOME/noprop-rs/verified`,
    /// else `$HOME/.cache/noprop-rs/verified`; off when none is set.
    #[default]
    Default,
    /// This directory.
    Dir(PathBuf),
    /// No caching: hash on every load.
    Off,
}

impl StampCache {
    /// The directory stamps go to, if any.
    pub fn dir(&self) -> Option<PathBuf> {
        match self {
            StampCache::Off => None,
            StampCache::Dir(d) => Some(d.clone()),
            StampCache::Default => {
                let env = |k: &str| {
                    std::env::var_os(k)
                        .filter(|v| !v.is_empty())
                        .map(PathBuf::from)
                };
                if let Some(d) = env("NOPROP_CACHE") {
                    Some(d.join("verified"))
                } else if let Some(d) = env("XDG_CACHE_HOME") {
                    Some(d.join("noprop-rs").join("verified"))
                } else {
                    env("HOME").map(|h| h.join(".cache").join("noprop-rs").join("verified"))
                }
            }
        }
    }
}

/// Size and modification time of a file, captured before reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileId {
    pub size: u64,
    pub mtime_ns: u64,
}

impl FileId {
    pub(crate) fn of(path: &Path) -> Result<FileId> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Ok(FileId {
            size: meta.len(),
            mtime_ns,
        })
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    id: FileId,
    check: String,
}

fn stamp_file(dir: &Path, path: &Path) -> (PathBuf, PathBuf) {
    let canon = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let key = sha256_hex(canon.to_string_lossy().as_bytes());
    (dir.join(format!("{}.json", &key[..32])), canon)
}

fn stamp_hit(dir: &Path, path: &Path, id: FileId, check: &str) -> bool {
    let (file, canon) = stamp_file(dir, path);
    std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Stamp>(&b).ok())
        .is_some_and(|s| s.path == canon && s.id == id && s.check == check)
}

fn write_stamp(dir: &Path, path: &Path, id: FileId, check: &str) {
    let (file, canon) = stamp_file(dir, path);
    let stamp = Stamp {
        path: canon,
        id,
        check: check.to_string(),
    };
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&serde_json::to_vec(&stamp).map_err(std::io::Error::other)?)?;
        tmp.persist(&file).map_err(|e| e.error)?;
        Ok(())
    };
    // Best effort: a read-only or missing cache only costs re-hashing.
    let _ = write();
}

/// Verifies one loaded file against its manifest entry.
///
/// `payload` is the decompressed content, `disk` the compressed bytes when
/// the file was a `.gz` (`None` otherwise), `id` the file's size and mtime
/// taken before reading it.
pub(crate) fn verify_member(
    path: &Path,
    id: FileId,
    payload: &[u8],
    disk: Option<&[u8]>,
    entry: Option<(&ArchiveEntry, &MemberEntry)>,
    stamps: Option<&Path>,
) -> Result<Verification> {
    let Some((archive, member)) = entry else {
        return Ok(Verification::Unpinned);
    };
    let compressed = disk.is_some();
    if let Some(size) = member.size {
        if payload.len() as u64 != size {
            return Err(Error::SizeMismatch {
                file: path.into(),
                expected: size,
                actual: payload.len() as u64,
                decompressed: compressed,
            });
        }
    }
    // Which check applies: the payload SHA-256, else the archive digests when
    // the file on disk is the archive itself (same name and pinned size).
    let is_archive = disk.is_some_and(|d| {
        path.file_name().is_some_and(|n| n == archive.file.as_str())
            && archive.size == Some(d.len() as u64)
            && (archive.md5.is_some() || archive.sha256.is_some())
    });
    let check = if let Some(sha) = &member.sha256 {
        format!("payload-sha256:{sha}")
    } else if is_archive {
        format!(
            "archive:{}:{}",
            archive.md5.as_deref().unwrap_or("-"),
            archive.sha256.as_deref().unwrap_or("-")
        )
    } else {
        return Ok(Verification::SizeOnly);
    };
    if let Some(dir) = stamps {
        if stamp_hit(dir, path, id, &check) {
            return Ok(Verification::Cached);
        }
    }
    let verification = if let Some(expected) = &member.sha256 {
        let actual = sha256_hex(payload);
        if &actual != expected {
            return Err(Error::ChecksumMismatch {
                file: path.into(),
                algorithm: "sha256",
                decompressed: compressed,
                expected: expected.clone(),
                actual,
            });
        }
        Verification::Sha256
    } else {
        check_archive_digests(path, disk.unwrap_or(payload), archive)?;
        Verification::ArchiveChecksum
    };
    if let Some(dir) = stamps {
        write_stamp(dir, path, id, &check);
    }
    Ok(verification)
}

/// Verifies one loaded file against the member of `entry` that its file
/// name (`<member>` or `<member>.gz`) names; [`Verification::Unpinned`] when
/// there is none. Arguments as for [`verify_member`].
pub(crate) fn verify_file(
    path: &Path,
    id: FileId,
    payload: &[u8],
    disk: Option<&[u8]>,
    entry: Option<&DatasetEntry>,
    stamps: Option<&Path>,
) -> Result<Verification> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let member = entry.zip(name).and_then(|(e, n)| e.member(&n));
    verify_member(path, id, payload, disk, member, stamps)
}

/// Checks `bytes` (an archive as downloaded) against the pinned size, MD5 and
/// SHA-256 of `archive`; returns whether any checksum was pinned.
pub(crate) fn check_archive_digests(
    path: &Path,
    bytes: &[u8],
    archive: &ArchiveEntry,
) -> Result<bool> {
    if let Some(size) = archive.size {
        if bytes.len() as u64 != size {
            return Err(Error::SizeMismatch {
                file: path.into(),
                expected: size,
                actual: bytes.len() as u64,
                decompressed: false,
            });
        }
    }
    let mut any = false;
    if let Some(expected) = &archive.md5 {
        any = true;
        let actual = md5_hex(bytes);
        if &actual != expected {
            return Err(Error::ChecksumMismatch {
                file: path.into(),
                algorithm: "md5",
                decompressed: false,
                expected: expected.clone(),
                actual,
            });
        }
    }
    if let Some(expected) = &archive.sha256 {
        any = true;
        let actual = sha256_hex(bytes);
        if &actual != expected {
            return Err(Error::ChecksumMismatch {
                file: path.into(),
                algorithm: "sha256",
                decompressed: false,
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }
}
