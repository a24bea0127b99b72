//! Downloading datasets (`cargo xtask fetch-data`).
//!
//! Each archive listed in the manifest is downloaded into a temporary file
//! next to its destination (`.<name>.XXXXXX.part`), hashed while it streams,
//! checked against the pinned size and checksums, and only then renamed to
//! its final name — so an interrupted or corrupt download never leaves a
//! file under the final name (the temporary file is deleted when dropped).
//! `.gz` files are kept compressed (the loader reads them directly, and their
//! decompressed payload is verified before the rename); `.tar.gz` archives are
//! kept and the members listed in the manifest are extracted the same way,
//! one temporary file each. Nothing outside the manifest's member paths is
//! ever written.
//!
//! The functions take the manifest entry to fetch, so tests (and mirrors) can
//! point them at any URL, e.g. an HTTP server on `127.0.0.1`.

use crate::error::{Error, Result};
use crate::io::{gunzip, MAX_DECOMPRESSED};
use crate::load::DatasetName;
use crate::manifest::{ArchiveEntry, ArchiveKind, DatasetEntry, Manifest, MemberEntry};
use crate::verify::{check_archive_digests, sha256_hex};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use md5::Md5;
use sha2::{Digest, Sha256};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How [`fetch`] downloads.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Data root: dataset `d` goes to `<data_dir>/<d>/` (the first place
    /// [`crate::load`] looks under a data root).
    pub data_dir: PathBuf,
    /// Check sizes and checksums (on by default). Without it files are still
    /// downloaded to a temporary name and renamed atomically.
    pub verify: bool,
    /// Download again even when a verified copy is present.
    pub force: bool,
    /// Show progress bars (hidden anyway when stderr is not a terminal) and
    /// one status line per file on stderr.
    pub progress: bool,
    /// Replace every URL by `<base_url>/<archive file name>` (a mirror).
    pub base_url: Option<String>,
    /// Use the proxy named by `$HTTPS_PROXY` / `$HTTP_PROXY` / `$ALL_PROXY`
    /// (honouring `$NO_PROXY`); on by default.
    pub proxy_from_env: bool,
}

impl FetchOptions {
    /// Defaults: verify, no force, progress on, no mirror, proxy from env.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        FetchOptions {
            data_dir: data_dir.into(),
            verify: true,
            force: false,
            progress: true,
            base_url: None,
            proxy_from_env: true,
        }
    }
}

/// What happened to one archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedArchive {
    /// The archive's final path.
    pub path: PathBuf,
    /// Whether it was downloaded (`false`: a verified copy was present).
    pub downloaded: bool,
}

/// Downloads a dataset listed in the built-in manifest into
/// `<data_dir>/<name>/`; returns that directory.
/// [`DatasetName::MnistTestSplit`] fetches MNIST.
pub fn fetch(name: DatasetName, options: &FetchOptions) -> Result<PathBuf> {
    let entry = Manifest::builtin()?.dataset(name.manifest_name())?;
    fetch_entry(entry, options).map(|(dir, _)| dir)
}

/// Downloads every archive of `entry` into `<data_dir>/<entry.name>/`,
/// skipping those already present and valid (unless `force`). Returns the
/// directory and what happened to each archive.
pub fn fetch_entry(
    entry: &DatasetEntry,
    options: &FetchOptions,
) -> Result<(PathBuf, Vec<FetchedArchive>)> {
    let dir = options.data_dir.join(&entry.name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let agent = make_agent(options);
    let mut out = Vec::new();
    for archive in &entry.archives {
        out.push(fetch_archive(&agent, archive, &dir, options)?);
    }
    Ok((dir, out))
}

fn make_agent(options: &FetchOptions) -> ureq::Agent {
    let mut config = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        // Never ask for Content-Encoding: the checksums are of the raw bytes.
        .accept_encoding("")
        .user_agent(concat!("noprop-datasets/", env!("CARGO_PKG_VERSION")));
    if !options.proxy_from_env {
        config = config.proxy(None);
    }
    config.build().new_agent()
}

/// A temporary-file builder for downloads: `<prefix>XXXXXX.part`, mode
/// 0644 on Unix (temporary files default to 0600).
fn part_file(prefix: &str) -> tempfile::Builder<'_, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix).suffix(".part");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    builder
}

fn log(options: &FetchOptions, msg: &str) {
    if options.progress {
        eprintln!("{msg}");
    }
}

/// Fetches one archive into `dir`, then extracts its members if it is a
/// `.tar.gz`.
pub fn fetch_archive(
    agent: &ureq::Agent,
    archive: &ArchiveEntry,
    dir: &Path,
    options: &FetchOptions,
) -> Result<FetchedArchive> {
    let path = dir.join(&archive.file);
    if matches!(archive.kind, ArchiveKind::TarGz | ArchiveKind::Zip)
        && !options.force
        && members_present(archive, dir, options)
    {
        log(
            options,
            &format!("{}: members present, skipping", path.display()),
        );
        return Ok(FetchedArchive {
            path,
            downloaded: false,
        });
    }
    let present = !options.force && path.is_file() && existing_valid(archive, &path, options);
    if present {
        log(
            options,
            &format!("{}: present and valid, skipping", path.display()),
        );
    } else {
        download(agent, archive, &path, options)?;
    }
    match archive.kind {
        ArchiveKind::TarGz => extract_tar_gz(archive, &path, dir, options)?,
        ArchiveKind::Zip => extract_zip(archive, &path, dir, options)?,
        ArchiveKind::Gzip => {}
    }
    Ok(FetchedArchive {
        path,
        downloaded: !present,
    })
}

/// Whether an existing archive passes verification (always `true` when
/// verification is off).
fn existing_valid(archive: &ArchiveEntry, path: &Path, options: &FetchOptions) -> bool {
    if !options.verify {
        return true;
    }
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    let ok = check_archive_digests(path, &bytes, archive).is_ok()
        && (archive.kind != ArchiveKind::Gzip || check_gzip_member(path, &bytes, archive).is_ok());
    if !ok {
        log(
            options,
            &format!(
                "{}: present but fails verification, downloading again",
                path.display()
            ),
        );
    }
    ok
}

/// Whether every member of a tar archive is already extracted with the
/// pinned size (and SHA-256 where pinned, when verifying).
fn members_present(archive: &ArchiveEntry, dir: &Path, options: &FetchOptions) -> bool {
    archive.members.iter().all(|m| {
        let p = dir.join(&m.path);
        let Ok(meta) = std::fs::metadata(&p) else {
            return false;
        };
        if m.size.is_some_and(|s| s != meta.len()) {
            return false;
        }
        match (&m.sha256, options.verify) {
            (Some(sha), true) => std::fs::read(&p).is_ok_and(|b| &sha256_hex(&b) == sha),
            _ => true,
        }
    })
}

/// Checks the decompressed payload of a single-member gzip archive.
fn check_gzip_member(path: &Path, bytes: &[u8], archive: &ArchiveEntry) -> Result<()> {
    let Some(member) = archive.members.first() else {
        return Ok(());
    };
    if member.size.is_none() && member.sha256.is_none() {
        return Ok(());
    }
    let payload = gunzip(bytes, path, MAX_DECOMPRESSED)?;
    check_member_bytes(
        path,
        payload.len() as u64,
        || sha256_hex(&payload),
        member,
        true,
    )
}

fn check_member_bytes(
    path: &Path,
    len: u64,
    sha: impl FnOnce() -> String,
    member: &MemberEntry,
    decompressed: bool,
) -> Result<()> {
    if let Some(size) = member.size {
        if size != len {
            return Err(Error::SizeMismatch {
                file: path.into(),
                decompressed,
                expected: size,
                actual: len,
            });
        }
    }
    if let Some(expected) = &member.sha256 {
        let actual = sha();
        if &actual != expected {
            return Err(Error::ChecksumMismatch {
                file: path.into(),
                algorithm: "sha256",
                decompressed,
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(())
}

fn progress_bar(options: &FetchOptions, len: Option<u64>, name: &str) -> ProgressBar {
    if !options.progress || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = if len.is_some() {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "{msg} {bytes} {bytes_per_sec}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(name.to_string());
    bar
}

/// The URLs to try for `archive`.
fn urls(archive: &ArchiveEntry, options: &FetchOptions) -> Vec<String> {
    match &options.base_url {
        Some(base) => vec![format!("{}/{}", base.trim_end_matches('/'), archive.file)],
        None => archive.urls.clone(),
    }
}

/// Downloads `archive` to `dest` (via a temporary file and an atomic
/// rename), trying each URL in turn.
pub fn download(
    agent: &ureq::Agent,
    archive: &ArchiveEntry,
    dest: &Path,
    options: &FetchOptions,
) -> Result<()> {
    let urls = urls(archive, options);
    if urls.is_empty() {
        return Err(Error::Download {
            file: archive.file.clone(),
            message: "the manifest lists no URL".into(),
        });
    }
    let mut errors: Vec<(String, Error)> = Vec::new();
    for url in &urls {
        log(options, &format!("fetching {url} -> {}", dest.display()));
        match download_from(agent, url, archive, dest, options) {
            Ok(()) => return Ok(()),
            Err(e) => {
                log(options, &format!("  failed: {e}"));
                errors.push((url.clone(), e));
            }
        }
    }
    if errors.len() == 1 {
        return Err(errors.remove(0).1);
    }
    Err(Error::Download {
        file: archive.file.clone(),
        message: errors
            .iter()
            .map(|(u, e)| format!("\n  {u}: {e}"))
            .collect(),
    })
}

fn download_from(
    agent: &ureq::Agent,
    url: &str,
    archive: &ArchiveEntry,
    dest: &Path,
    options: &FetchOptions,
) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let http_err = |e: &dyn std::fmt::Display| Error::Download {
        file: archive.file.clone(),
        message: format!("{url}: {e}"),
    };
    let response = agent.get(url).call().map_err(|e| http_err(&e))?;
    let (_, body) = response.into_parts();
    let len = body.content_length();
    let mut reader = body.into_reader();
    let prefix = format!(".{}.", archive.file);
    let mut tmp = part_file(&prefix)
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    let bar = progress_bar(options, len.or(archive.size), &archive.file);
    let (mut md5, mut sha) = (Md5::new(), Sha256::new());
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.abandon();
                return Err(http_err(&format!("interrupted after {total} bytes: {e}")));
            }
        };
        tmp.write_all(&buf[..n])
            .map_err(|e| Error::io(tmp.path(), e))?;
        md5.update(&buf[..n]);
        sha.update(&buf[..n]);
        total += n as u64;
        bar.inc(n as u64);
        // A server sending more than the pinned size is not the file we want.
        if archive.size.is_some_and(|s| total > s) && options.verify {
            bar.abandon();
            return Err(Error::SizeMismatch {
                file: dest.into(),
                decompressed: false,
                expected: archive.size.unwrap_or(0),
                actual: total,
            });
        }
    }
    bar.finish_and_clear();
    if let Some(l) = len {
        if l != total {
            return Err(http_err(&format!(
                "connection closed after {total} of {l} bytes"
            )));
        }
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io(tmp.path(), e))?;
    if options.verify {
        if let Some(size) = archive.size {
            if size != total {
                return Err(Error::SizeMismatch {
                    file: dest.into(),
                    decompressed: false,
                    expected: size,
                    actual: total,
                });
            }
        }
        let digests = [
            ("md5", &archive.md5, hex::encode(md5.finalize())),
            ("sha256", &archive.sha256, hex::encode(sha.finalize())),
        ];
        for (algorithm, expected, actual) in digests {
            if let Some(expected) = expected {
                if expected != &actual {
                    return Err(Error::ChecksumMismatch {
                        file: dest.into(),
                        algorithm,
                        decompressed: false,
                        expected: expected.clone(),
                        actual,
                    });
                }
            }
        }
        if archive.kind == ArchiveKind::Gzip {
            let bytes = std::fs::read(tmp.path()).map_err(|e| Error::io(tmp.path(), e))?;
            check_gzip_member(dest, &bytes, archive)?;
        }
    }
    // Atomic rename; on failure the temporary file is removed by its drop.
    tmp.persist(dest).map_err(|e| Error::io(dest, e.error))?;
    Ok(())
}

/// Unpacks a whole `.zip` archive into `dir` (each file through a temporary
/// file, directories created as needed; an entry whose path would leave
/// `dir` is an error), then checks that every listed member is there with
/// its pinned size and SHA-256.
pub fn extract_zip(
    archive: &ArchiveEntry,
    path: &Path,
    dir: &Path,
    options: &FetchOptions,
) -> Result<()> {
    log(options, &format!("extracting {}", path.display()));
    let arch_err = |message: String| Error::Archive {
        file: path.into(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::with_capacity(1 << 20, file))
        .map_err(|e| arch_err(e.to_string()))?;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| arch_err(e.to_string()))?;
        let Some(rel) = entry.enclosed_name() else {
            return Err(arch_err(format!(
                "entry {:?} would be written outside {}",
                entry.name(),
                dir.display()
            )));
        };
        let dest = dir.join(rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
            continue;
        }
        let parent = dest.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let mut tmp = part_file(".zip-member.")
            .tempfile_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        std::io::copy(&mut entry, &mut tmp)
            .map_err(|e| arch_err(format!("reading {}: {e}", dest.display())))?;
        tmp.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
    }
    let missing: Vec<&str> = archive
        .members
        .iter()
        .filter(|m| !dir.join(&m.path).is_file())
        .map(|m| m.path.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(arch_err(format!("missing members: {}", missing.join(", "))));
    }
    if options.verify {
        for m in &archive.members {
            let p = dir.join(&m.path);
            let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
            check_member_bytes(&p, bytes.len() as u64, || sha256_hex(&bytes), m, false)?;
        }
    }
    Ok(())
}

/// Extracts the manifest's members of a `.tar.gz` archive into `dir`, each
/// through a temporary file, verifying size and SHA-256 where pinned.
pub fn extract_tar_gz(
    archive: &ArchiveEntry,
    path: &Path,
    dir: &Path,
    options: &FetchOptions,
) -> Result<()> {
    log(options, &format!("extracting {}", path.display()));
    let arch_err = |message: String| Error::Archive {
        file: path.into(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let gz = flate2::read::GzDecoder::new(std::io::BufReader::with_capacity(1 << 20, file));
    let mut tar = tar::Archive::new(gz);
    let mut done = vec![false; archive.members.len()];
    let entries = tar.entries().map_err(|e| arch_err(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| arch_err(e.to_string()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| arch_err(e.to_string()))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let Some(i) = archive.members.iter().position(|m| m.path == name) else {
            continue;
        };
        let member = &archive.members[i];
        let dest = dir.join(&member.path);
        let parent = dest.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let file_name = dest
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let prefix = format!(".{file_name}.");
        let mut tmp = part_file(&prefix)
            .tempfile_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        let mut sha = Sha256::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| arch_err(format!("reading {name}: {e}")))?;
            if n == 0 {
                break;
            }
            tmp.write_all(&buf[..n])
                .map_err(|e| Error::io(tmp.path(), e))?;
            sha.update(&buf[..n]);
            total += n as u64;
        }
        if options.verify {
            let digest = hex::encode(sha.finalize());
            check_member_bytes(&dest, total, || digest, member, false)?;
        }
        tmp.persist(&dest).map_err(|e| Error::io(&dest, e.error))?;
        done[i] = true;
    }
    let missing: Vec<&str> = archive
        .members
        .iter()
        .zip(&done)
        .filter(|(_, d)| !**d)
        .map(|(m, _)| m.path.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(arch_err(format!("missing members: {}", missing.join(", "))));
    }
    Ok(())
}
