//! The whole download path against an HTTP/1.1 server on 127.0.0.1 started
//! by the test, serving good, truncated and corrupted files.

mod common;

use common::gz;
use noprop_datasets::fetch::fetch_entry;
use noprop_datasets::idx::{encode_idx_images, encode_idx_labels};
use noprop_datasets::manifest::{ArchiveEntry, ArchiveKind, DatasetEntry, Manifest, MemberEntry};
use noprop_datasets::verify::{md5_hex, sha256_hex};
use noprop_datasets::{
    load, DatasetName, Error, FetchOptions, LoadOptions, StampCache, Verification,
};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// What the server answers for a path.
#[derive(Clone)]
enum Route {
    /// 200 with the body and a correct Content-Length.
    Ok(Vec<u8>),
    /// 200 announcing `len` bytes, sending only the body, then closing.
    Truncated { body: Vec<u8>, len: usize },
    /// 200 without Content-Length (body ends when the connection closes).
    NoLength(Vec<u8>),
}

type Routes = Arc<Mutex<HashMap<String, Route>>>;

/// A tiny HTTP/1.1 server on 127.0.0.1; one thread per connection.
struct Server {
    base: String,
    routes: Routes,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Routes = Arc::default();
        let hits: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, h) = (routes.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, h) = (r.clone(), h.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &r, &h);
                });
            }
        });
        Server { base, routes, hits }
    }

    fn route(&self, path: &str, route: Route) -> String {
        self.routes.lock().unwrap().insert(path.to_string(), route);
        format!("{}{path}", self.base)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

fn serve(stream: TcpStream, routes: &Routes, hits: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
    }
    hits.lock().unwrap().push(path.clone());
    let route = routes.lock().unwrap().get(&path).cloned();
    let mut out = stream;
    match route {
        None => {
            let body = b"not found";
            write!(
                out,
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(body)?;
        }
        Some(Route::Ok(body)) => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(&body)?;
        }
        Some(Route::Truncated { body, len }) => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
            )?;
            out.write_all(&body)?;
        }
        Some(Route::NoLength(body)) => {
            write!(out, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")?;
            out.write_all(&body)?;
        }
    }
    out.flush()?;
    out.shutdown(std::net::Shutdown::Both)
}

/// A small MNIST-like dataset: 50 train / 20 test images 28x28.
fn idx_files() -> Vec<(&'static str, Vec<u8>)> {
    let img = |n: usize, s: usize| {
        let px: Vec<u8> = (0..n * 784).map(|i| common::px(s, i)).collect();
        encode_idx_images(n as u32, 28, 28, &px)
    };
    let lab = |n: usize, s: usize| {
        encode_idx_labels(&(0..n).map(|i| ((i + s) % 10) as u8).collect::<Vec<_>>())
    };
    vec![
        ("train-images-idx3-ubyte", img(50, 1)),
        ("train-labels-idx1-ubyte", lab(50, 1)),
        ("t10k-images-idx3-ubyte", img(20, 2)),
        ("t10k-labels-idx1-ubyte", lab(20, 2)),
    ]
}

fn gz_archive(file: &str, url: String, gzipped: &[u8], payload: &[u8]) -> ArchiveEntry {
    ArchiveEntry {
        file: format!("{file}.gz"),
        kind: ArchiveKind::Gzip,
        urls: vec![url],
        size: Some(gzipped.len() as u64),
        md5: Some(md5_hex(gzipped)),
        sha256: None,
        members: vec![MemberEntry {
            path: file.to_string(),
            size: Some(payload.len() as u64),
            sha256: Some(sha256_hex(payload)),
            note: None,
        }],
        note: None,
    }
}

fn options(dir: &Path) -> FetchOptions {
    FetchOptions {
        progress: false,
        proxy_from_env: false,
        ..FetchOptions::new(dir)
    }
}

/// Lists files under `dir` whose name contains `.part` (left-over temporaries).
fn leftovers(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(leftovers(&p));
            } else if p.to_string_lossy().contains(".part") {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn fetch_verify_then_load_idx_dataset() {
    let server = Server::start();
    let archives: Vec<ArchiveEntry> = idx_files()
        .iter()
        .map(|(name, payload)| {
            let z = gz(payload);
            let url = server.route(&format!("/mnist/{name}.gz"), Route::Ok(z.clone()));
            gz_archive(name, url, &z, payload)
        })
        .collect();
    let entry = DatasetEntry {
        name: "mnist".into(),
        description: String::new(),
        homepage: String::new(),
        format: String::new(),
        archives,
    };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, report) = fetch_entry(&entry, &options(tmp.path())).unwrap();
    assert_eq!(dir, tmp.path().join("mnist"));
    assert!(report.iter().all(|r| r.downloaded));
    assert!(dir.join("train-images-idx3-ubyte.gz").is_file());
    assert!(leftovers(tmp.path()).is_empty());

    // A second fetch finds verified copies and downloads nothing.
    let (_, again) = fetch_entry(&entry, &options(tmp.path())).unwrap();
    assert!(again.iter().all(|r| !r.downloaded));
    assert_eq!(server.hits("/mnist/train-images-idx3-ubyte.gz"), 1);
    // --force downloads again.
    let forced = FetchOptions {
        force: true,
        ..options(tmp.path())
    };
    fetch_entry(&entry, &forced).unwrap();
    assert_eq!(server.hits("/mnist/train-images-idx3-ubyte.gz"), 2);

    // Load with the same entries as manifest: every file verifies by SHA-256.
    let manifest = Manifest {
        schema: 1,
        notes: vec![],
        datasets: vec![entry],
    };
    let data = load(
        DatasetName::Mnist,
        &LoadOptions {
            search_defaults: false,
            stamps: StampCache::Off,
            manifest: Some(manifest),
            ..LoadOptions::with_data_dir(tmp.path())
        },
    )
    .unwrap();
    assert_eq!((data.train.len(), data.test.len()), (50, 20));
    assert!(data
        .files
        .iter()
        .all(|f| f.verification == Verification::Sha256));
}

#[test]
fn corrupted_truncated_and_missing_downloads_leave_no_final_file() {
    let server = Server::start();
    let (name, payload) = idx_files().swap_remove(0);
    let z = gz(&payload);
    let good = gz_archive(name, String::new(), &z, &payload);
    let tmp = tempfile::tempdir().unwrap();
    let final_path = tmp.path().join("mnist").join(format!("{name}.gz"));
    let run = |route: Option<Route>, path: &str| -> Error {
        let url = match route {
            Some(r) => server.route(path, r),
            None => format!("{}{path}", server.base),
        };
        let entry = DatasetEntry {
            name: "mnist".into(),
            description: String::new(),
            homepage: String::new(),
            format: String::new(),
            archives: vec![ArchiveEntry {
                urls: vec![url],
                ..good.clone()
            }],
        };
        let err = fetch_entry(&entry, &options(tmp.path())).unwrap_err();
        assert!(!final_path.exists(), "final file left after: {err}");
        assert!(
            leftovers(tmp.path()).is_empty(),
            "temporaries left after: {err}"
        );
        err
    };

    // One flipped bit: md5 mismatch, expected vs actual reported.
    let mut bad = z.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x10;
    let err = run(Some(Route::Ok(bad.clone())), "/flip.gz");
    match &err {
        Error::ChecksumMismatch {
            algorithm,
            expected,
            actual,
            file,
            ..
        } => {
            assert_eq!(*algorithm, "md5");
            assert_eq!(expected, &md5_hex(&z));
            assert_eq!(actual, &md5_hex(&bad));
            assert_eq!(file, &final_path);
        }
        other => panic!("expected checksum mismatch, got {other}"),
    }
    assert!(err.to_string().contains(&md5_hex(&z)));

    // Connection closed before Content-Length bytes arrived.
    let err = run(
        Some(Route::Truncated {
            body: z[..z.len() / 2].to_vec(),
            len: z.len(),
        }),
        "/trunc.gz",
    );
    assert!(matches!(err, Error::Download { .. }), "{err}");

    // No Content-Length and a short body: caught by the pinned size.
    let err = run(Some(Route::NoLength(z[..100].to_vec())), "/short.gz");
    assert!(
        matches!(err, Error::SizeMismatch { expected, actual: 100, .. } if expected == z.len() as u64),
        "{err}"
    );

    // 404.
    let err = run(None, "/missing.gz");
    assert!(err.to_string().contains("404"), "{err}");

    // A re-compressed body of the right payload but the wrong archive
    // checksum is still rejected at download (the archive is pinned).
    let other = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&payload).unwrap();
        e.finish().unwrap()
    };
    let err = run(Some(Route::Ok(other)), "/recompressed.gz");
    assert!(
        matches!(
            err,
            Error::SizeMismatch { .. } | Error::ChecksumMismatch { .. }
        ),
        "{err}"
    );

    // Archive checksum right but payload hash wrong (a bad manifest entry):
    // the decompressed check fails before the rename.
    let url = server.route("/good.gz", Route::Ok(z.clone()));
    let mut wrong = good.clone();
    wrong.urls = vec![url.clone()];
    wrong.members[0].sha256 = Some("0".repeat(64));
    let entry = DatasetEntry {
        name: "mnist".into(),
        description: String::new(),
        homepage: String::new(),
        format: String::new(),
        archives: vec![wrong],
    };
    let err = fetch_entry(&entry, &options(tmp.path())).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ChecksumMismatch {
                decompressed: true,
                ..
            }
        ),
        "{err}"
    );
    assert!(!final_path.exists());

    // With --no-verify the same download succeeds.
    let no_verify = FetchOptions {
        verify: false,
        ..options(tmp.path())
    };
    fetch_entry(&entry, &no_verify).unwrap();
    assert!(final_path.is_file());

    // Fallback: the first URL fails, the second serves the file.
    std::fs::remove_file(&final_path).unwrap();
    let mut two = good.clone();
    two.urls = vec![format!("{}/nothing-here.gz", server.base), url];
    let entry = DatasetEntry {
        archives: vec![two],
        ..entry
    };
    let (_, report) = fetch_entry(&entry, &options(tmp.path())).unwrap();
    assert!(report[0].downloaded);
    assert_eq!(std::fs::read(&final_path).unwrap(), z);
}

fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(enc);
    for (path, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn tar_gz_archives_are_verified_and_extracted() {
    let server = Server::start();
    let train = common::cifar10_records(6, 0);
    let test = common::cifar10_records(2, 50);
    let mut files: Vec<(String, Vec<u8>)> = (1..=5)
        .map(|b| {
            (
                format!("cifar-10-batches-bin/data_batch_{b}.bin"),
                train.clone(),
            )
        })
        .collect();
    files.push(("cifar-10-batches-bin/test_batch.bin".into(), test.clone()));
    files.push((
        "cifar-10-batches-bin/readme.html".into(),
        b"not extracted".to_vec(),
    ));
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(p, d)| (p.as_str(), d.as_slice()))
        .collect();
    let archive_bytes = tar_gz(&refs);
    let url = server.route("/cifar-10-binary.tar.gz", Route::Ok(archive_bytes.clone()));
    let members: Vec<MemberEntry> = files[..6]
        .iter()
        .map(|(p, d)| MemberEntry {
            path: p.clone(),
            size: Some(d.len() as u64),
            sha256: Some(sha256_hex(d)),
            note: None,
        })
        .collect();
    let archive = ArchiveEntry {
        file: "cifar-10-binary.tar.gz".into(),
        kind: ArchiveKind::TarGz,
        urls: vec![url],
        size: Some(archive_bytes.len() as u64),
        md5: Some(md5_hex(&archive_bytes)),
        sha256: Some(sha256_hex(&archive_bytes)),
        members,
        note: None,
    };
    let entry = DatasetEntry {
        name: "cifar10".into(),
        description: String::new(),
        homepage: String::new(),
        format: String::new(),
        archives: vec![archive.clone()],
    };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = fetch_entry(&entry, &options(tmp.path())).unwrap();
    let bin = dir.join("cifar-10-batches-bin");
    assert_eq!(std::fs::read(bin.join("test_batch.bin")).unwrap(), test);
    assert!(
        !bin.join("readme.html").exists(),
        "only manifest members are extracted"
    );
    assert!(leftovers(tmp.path()).is_empty());
    // Loadable through the locator (sizes differ from the real set, so no verify).
    let data = load(
        DatasetName::Cifar10,
        &LoadOptions {
            verify: false,
            search_defaults: false,
            ..LoadOptions::with_data_dir(tmp.path())
        },
    )
    .unwrap();
    assert_eq!((data.train.len(), data.test.len()), (30, 2));
    // Present members: nothing downloaded the second time.
    let (_, again) = fetch_entry(&entry, &options(tmp.path())).unwrap();
    assert!(!again[0].downloaded);
    assert_eq!(server.hits("/cifar-10-binary.tar.gz"), 1);

    // A member failing its pinned hash is not written under its final name.
    let tmp2 = tempfile::tempdir().unwrap();
    let mut bad = archive;
    bad.members[5].sha256 = Some("f".repeat(64));
    let entry = DatasetEntry {
        archives: vec![bad],
        ..entry
    };
    let err = fetch_entry(&entry, &options(tmp2.path())).unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    assert!(!tmp2
        .path()
        .join("cifar10/cifar-10-batches-bin/test_batch.bin")
        .exists());
    assert!(leftovers(tmp2.path()).is_empty());
}

/// A zip of `files` (stored, uncompressed).
fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in files {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn tiny_jpeg(v: u8) -> Vec<u8> {
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(&[v; 64 * 64 * 3], 64, 64, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    out
}

/// `fetch-data tiny-imagenet`'s path: the zip is downloaded, checked
/// against its MD5, unpacked whole, and the tree loads; an entry escaping
/// the directory is refused.
#[test]
fn zip_archives_are_verified_unpacked_and_load_as_tiny_imagenet() {
    let server = Server::start();
    let (a, b) = (tiny_jpeg(30), tiny_jpeg(220));
    let files: Vec<(&str, &[u8])> = vec![
        ("tiny-imagenet-200/wnids.txt", b"n01443537\nn01629819\n"),
        (
            "tiny-imagenet-200/train/n01443537/images/n01443537_0.JPEG",
            &a,
        ),
        (
            "tiny-imagenet-200/train/n01629819/images/n01629819_0.JPEG",
            &b,
        ),
        ("tiny-imagenet-200/val/images/val_0.JPEG", &b),
        (
            "tiny-imagenet-200/val/val_annotations.txt",
            b"val_0.JPEG\tn01629819\t0\t0\t63\t63\n",
        ),
    ];
    let bytes = zip_of(&files);
    let url = server.route("/tiny-imagenet-200.zip", Route::Ok(bytes.clone()));
    let archive = |url: String, md5: String| ArchiveEntry {
        file: "tiny-imagenet-200.zip".into(),
        kind: ArchiveKind::Zip,
        urls: vec![url],
        size: None,
        md5: Some(md5),
        sha256: None,
        members: vec![MemberEntry {
            path: "tiny-imagenet-200/wnids.txt".into(),
            size: Some(20),
            sha256: None,
            note: None,
        }],
        note: None,
    };
    let entry = DatasetEntry {
        name: "tiny-imagenet".into(),
        description: String::new(),
        homepage: String::new(),
        format: String::new(),
        archives: vec![archive(url.clone(), md5_hex(&bytes))],
    };
    let tmp = tempfile::tempdir().unwrap();
    let (dir, fetched) = fetch_entry(&entry, &options(tmp.path())).unwrap();
    assert!(fetched[0].downloaded);
    let data = load(
        DatasetName::TinyImagenet,
        &LoadOptions {
            search_defaults: false,
            ..LoadOptions::with_data_dir(tmp.path())
        },
    )
    .unwrap();
    assert_eq!(data.source, dir.join("tiny-imagenet-200"));
    assert_eq!((data.train.len(), data.test.len()), (2, 1));
    assert_eq!(data.test.labels(), [1]);
    // A second fetch finds the unpacked members and downloads nothing.
    let (_, again) = fetch_entry(&entry, &options(tmp.path())).unwrap();
    assert!(!again[0].downloaded);

    // A wrong MD5 is refused before unpacking.
    let bad = DatasetEntry {
        archives: vec![archive(url, "0".repeat(32))],
        ..entry.clone()
    };
    let other = tempfile::tempdir().unwrap();
    let e = fetch_entry(&bad, &options(other.path())).unwrap_err();
    assert!(matches!(e, Error::ChecksumMismatch { .. }), "{e}");
    assert!(!other
        .path()
        .join("tiny-imagenet/tiny-imagenet-200")
        .exists());

    // Zip-slip: an entry leaving the directory is an archive error.
    let evil = zip_of(&[
        ("../evil.txt", b"x"),
        ("tiny-imagenet-200/wnids.txt", b"n0\n"),
    ]);
    let url = server.route("/evil.zip", Route::Ok(evil.clone()));
    let evil_entry = DatasetEntry {
        archives: vec![archive(url, md5_hex(&evil))],
        ..entry
    };
    let third = tempfile::tempdir().unwrap();
    let e = fetch_entry(&evil_entry, &options(third.path())).unwrap_err();
    assert!(matches!(e, Error::Archive { .. }), "{e}");
    assert!(e.to_string().contains("outside"), "{e}");
    assert!(!third.path().join("evil.txt").exists());
}
