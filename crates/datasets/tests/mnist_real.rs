//! The real MNIST test set, shipped with the repository in
//! `datasets/mnist-test` (see its `README.md`).

mod common;

use noprop_datasets::{
    idx, load, read_idx_images, read_idx_labels, verify::sha256_hex, BatchOptions, DatasetName,
    Error, LoadOptions, StampCache, Verification, MNIST_TEST_SPLIT_TRAIN,
};
use std::path::PathBuf;

fn dir() -> PathBuf {
    common::mnist_test_dir().expect(
        "the MNIST test set ships with the repository: datasets/mnist-test/\
         t10k-{images-idx3,labels-idx1}-ubyte.gz must be present",
    )
}

fn opts(data_dir: PathBuf) -> LoadOptions {
    LoadOptions {
        search_defaults: false,
        stamps: StampCache::Off,
        ..LoadOptions::with_data_dir(data_dir)
    }
}

#[test]
fn low_level_readers_match_known_facts() {
    let d = dir();
    let images = read_idx_images(d.join("t10k-images-idx3-ubyte.gz")).unwrap();
    let labels = read_idx_labels(d.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!((images.count, images.rows, images.cols), (10_000, 28, 28));
    assert_eq!(labels.len(), 10_000);
    assert_eq!(&labels[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    let sum0: u64 = images.pixels[..784].iter().map(|&p| u64::from(p)).sum();
    assert_eq!(sum0, 18_454);
}

#[test]
fn mnist_test_split_is_first_8000_and_last_2000() {
    let d = dir();
    let split = load(DatasetName::MnistTestSplit, &opts(d.clone())).unwrap();
    assert_eq!(split.train.len(), MNIST_TEST_SPLIT_TRAIN);
    assert_eq!(split.test.len(), 2_000);
    assert_eq!(split.train.num_classes(), 10);
    assert_eq!(&split.train.labels()[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    let sum0: u64 = split.train.image(0).iter().map(|&p| u64::from(p)).sum();
    assert_eq!(sum0, 18_454);
    for f in &split.files {
        assert_eq!(f.verification, Verification::Sha256, "{}", f.path.display());
    }
    // The test part is exactly images 8000.. of the file.
    let images = read_idx_images(d.join("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!(
        split.test.image(0),
        &images.pixels[8_000 * 784..8_001 * 784]
    );
    // Every class appears in both parts.
    assert!(split.train.class_counts().iter().all(|&c| c > 600));
    assert!(split.test.class_counts().iter().all(|&c| c > 150));
    let norm = split.normalization();
    assert!(
        (norm.mean[0] - 0.13).abs() < 0.01 && (norm.std[0] - 0.31).abs() < 0.01,
        "{norm:?}"
    );
    // Batching a real split: 8000 / 128 = 62.5 -> 63 batches, all images seen once.
    let mut seen = vec![0u8; split.train.len()];
    for b in split
        .train
        .batches(BatchOptions::new(128).shuffle(1).normalize(norm))
        .unwrap()
    {
        for &i in b.indices() {
            seen[i] += 1;
        }
    }
    assert!(seen.iter().all(|&s| s == 1));
}

#[test]
fn default_search_finds_the_shipped_copy_first() {
    // No data_dir: the repository's datasets/mnist-test comes before every
    // other default place, $NOPROP_DATA included.
    let split = load(
        DatasetName::MnistTestSplit,
        &LoadOptions {
            stamps: StampCache::Off,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(split.train.len() + split.test.len(), 10_000);
    let shipped = std::fs::canonicalize(dir()).unwrap();
    assert_eq!(std::fs::canonicalize(&split.source).unwrap(), shipped);
    for f in &split.files {
        assert_eq!(f.verification, Verification::Sha256, "{}", f.path.display());
    }
}

#[test]
fn shipped_files_match_sha256sums_and_the_manifest() {
    let d = dir();
    let sums = std::fs::read_to_string(d.join("SHA256SUMS")).unwrap();
    let manifest = noprop_datasets::Manifest::builtin().unwrap();
    let mnist = manifest.dataset("mnist").unwrap();
    let mut checked = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let mut it = line.split_whitespace();
        let (Some(hash), Some(name)) = (it.next(), it.next()) else {
            panic!("malformed SHA256SUMS line {line:?}");
        };
        let name = name.trim_start_matches('*');
        let bytes = std::fs::read(d.join(name)).unwrap();
        assert_eq!(sha256_hex(&bytes), hash, "{name} vs SHA256SUMS");
        let (archive, _) = mnist.member(name).unwrap();
        assert_eq!(archive.sha256.as_deref(), Some(hash), "{name} vs manifest");
        assert_eq!(archive.size, Some(bytes.len() as u64), "{name}");
        checked += 1;
    }
    assert_eq!(checked, 2);
}

#[test]
fn verification_is_cached_by_size_and_mtime_and_catches_tampering() {
    let src = dir();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("mnist-test");
    std::fs::create_dir(&data).unwrap();
    for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(src.join(f), data.join(f)).unwrap();
    }
    let stamps = tmp.path().join("stamps");
    let o = LoadOptions {
        stamps: StampCache::Dir(stamps.clone()),
        ..opts(tmp.path().to_path_buf())
    };
    let kinds = |o: &LoadOptions| -> Vec<Verification> {
        load(DatasetName::MnistTestSplit, o)
            .unwrap()
            .files
            .iter()
            .map(|f| f.verification)
            .collect()
    };
    assert_eq!(kinds(&o), vec![Verification::Sha256; 2]);
    assert_eq!(kinds(&o), vec![Verification::Cached; 2]);
    let no_verify = LoadOptions {
        verify: false,
        ..o.clone()
    };
    assert_eq!(kinds(&no_verify), vec![Verification::Skipped; 2]);

    // Re-compressing the labels (different .gz bytes, same payload) still
    // verifies: the pinned hash is of the decompressed payload.
    let labels_path = data.join("t10k-labels-idx1-ubyte.gz");
    let payload = noprop_datasets::io::read_maybe_gz(&labels_path).unwrap();
    std::fs::write(&labels_path, common::gz(&payload)).unwrap();
    assert_eq!(kinds(&o)[1], Verification::Sha256);

    // A changed label is caught (the stamp no longer matches size/mtime).
    let mut bad = payload.clone();
    bad[8] = 3; // first label 7 -> 3
    std::fs::remove_file(&labels_path).unwrap();
    std::fs::write(data.join("t10k-labels-idx1-ubyte"), &bad).unwrap();
    let err = load(DatasetName::MnistTestSplit, &o).unwrap_err();
    match &err {
        Error::ChecksumMismatch {
            file,
            expected,
            actual,
            algorithm,
            ..
        } => {
            assert!(file.ends_with("t10k-labels-idx1-ubyte"));
            assert_eq!(*algorithm, "sha256");
            assert_eq!(
                expected,
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
            );
            assert_eq!(actual, &sha256_hex(&bad));
        }
        other => panic!("expected a checksum mismatch, got {other}"),
    }
    // ... but loads with verification off.
    let loaded = load(DatasetName::MnistTestSplit, &no_verify).unwrap();
    assert_eq!(loaded.train.label(0), 3);
}

#[test]
fn missing_dataset_names_every_place_and_the_fetch_command() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("mnist")).unwrap();
    std::fs::write(tmp.path().join("mnist/train-images-idx3-ubyte.gz"), b"").unwrap();
    let err = load(DatasetName::Mnist, &opts(tmp.path().to_path_buf())).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::NotFound { .. }));
    assert!(msg.contains("cargo xtask fetch-data mnist"), "{msg}");
    assert!(
        msg.contains(&tmp.path().join("mnist").display().to_string()),
        "{msg}"
    );
    assert!(
        msg.contains("missing train-labels-idx1-ubyte[.gz]"),
        "{msg}"
    );
    assert!(msg.contains("no such directory"), "{msg}");
    // The full search list includes the system and environment locations.
    let all = noprop_datasets::search_locations(DatasetName::Mnist, &LoadOptions::default());
    assert!(all.iter().any(|p| p.starts_with("/usr/share/datasets")));
}

#[test]
fn idx_encode_roundtrip_of_real_data() {
    let d = dir();
    let images = read_idx_images(d.join("t10k-images-idx3-ubyte.gz")).unwrap();
    let enc = idx::encode_idx_images(10_000, 28, 28, &images.pixels);
    let raw = noprop_datasets::io::read_maybe_gz(&d.join("t10k-images-idx3-ubyte.gz")).unwrap();
    assert_eq!(enc, raw);
}
