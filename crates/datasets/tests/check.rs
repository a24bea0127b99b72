//! `check` / `check_all`: the shipped MNIST test set, tampered, truncated,
//! partial and missing datasets, and synthetic CIFAR files.

mod common;

use noprop_datasets::io::read_maybe_gz;
use noprop_datasets::manifest::Manifest;
use noprop_datasets::verify::sha256_hex;
use noprop_datasets::{
    check, check_all, DatasetName, Error, FileStatus, LoadOptions, StampCache, Verification,
};
use std::path::{Path, PathBuf};

/// MNIST test set images per class (digits 0..9), as published.
const MNIST_TEST_PER_CLASS: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];
const IMAGES_SHA256: &str = "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7";

fn shipped() -> PathBuf {
    common::mnist_test_dir().expect("datasets/mnist-test ships with the repository")
}

/// Options looking in `dir` only.
fn only(dir: &Path) -> LoadOptions {
    LoadOptions {
        search_defaults: false,
        stamps: StampCache::Off,
        ..LoadOptions::with_data_dir(dir)
    }
}

/// A temporary data root holding `mnist-test/` with the shipped files, as
/// `(name, bytes)` pairs after `edit` has had its say.
fn temp_copy(edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist-test");
    std::fs::create_dir(&dir).unwrap();
    let mut files: Vec<(String, Vec<u8>)> =
        ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
            .iter()
            .map(|f| (f.to_string(), std::fs::read(shipped().join(f)).unwrap()))
            .collect();
    edit(&mut files);
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    tmp
}

fn payload(name: &str) -> Vec<u8> {
    read_maybe_gz(&shipped().join(format!("{name}.gz"))).unwrap()
}

#[test]
fn shipped_mnist_test_is_ok_with_all_counts() {
    let report = check(DatasetName::MnistTestSplit, &LoadOptions::default());
    assert!(report.is_ok(), "{report}");
    assert!(!report.is_missing());
    assert_eq!(
        std::fs::canonicalize(report.dir.as_ref().unwrap()).unwrap(),
        std::fs::canonicalize(shipped()).unwrap()
    );
    assert_eq!(report.files.len(), 2);
    for f in &report.files {
        assert_eq!(
            f.status,
            FileStatus::Verified(Verification::Sha256),
            "{}",
            f.name
        );
        assert!(f.path.as_ref().unwrap().ends_with(format!("{}.gz", f.name)));
    }
    assert_eq!(report.files[0].size, Some(1_648_877));
    assert_eq!(report.files[1].size, Some(4_542));
    let shape = report.shape.unwrap();
    assert_eq!((shape.channels, shape.height, shape.width), (1, 28, 28));
    assert_eq!(report.num_classes, 10);
    let names: Vec<&str> = report.splits.iter().map(|s| s.name).collect();
    assert_eq!(names, ["train", "test"]);
    assert_eq!(report.splits[0].images, 8_000);
    assert_eq!(report.splits[1].images, 2_000);
    assert_eq!(report.total_images(), 10_000);
    let mut per_class = [0usize; 10];
    for split in &report.splits {
        assert_eq!(split.per_class.len(), 10);
        assert_eq!(split.per_class.iter().sum::<usize>(), split.images);
        for (c, n) in split.per_class.iter().enumerate() {
            per_class[c] += n;
        }
    }
    assert_eq!(per_class, MNIST_TEST_PER_CLASS);
    assert_eq!(per_class.iter().sum::<usize>(), 10_000);

    let text = report.to_string();
    eprintln!("{text}");
    assert!(text.starts_with("mnist-test-split: ok\n"), "{text}");
    assert!(
        text.contains("t10k-images-idx3-ubyte.gz (1,648,877 bytes): verified"),
        "{text}"
    );
    assert!(text.contains("train: 8,000 images"), "{text}");
    assert!(text.contains("test: 2,000 images"), "{text}");
    assert!(text.contains("images: 1x28x28, 10 classes"), "{text}");
    assert!(!text.contains("looked in"), "{text}");

    // `verify: false` does not turn a check's verification off.
    let unverified = check(
        DatasetName::MnistTestSplit,
        &LoadOptions {
            verify: false,
            ..only(&shipped())
        },
    );
    assert_eq!(
        unverified.files[0].status,
        FileStatus::Verified(Verification::Sha256)
    );
}

#[test]
fn flipped_byte_is_a_checksum_mismatch_naming_the_file() {
    // One pixel changed, then re-compressed under the same name: the .gz is
    // valid, the payload's SHA-256 is not the pinned one.
    let mut bad = payload("t10k-images-idx3-ubyte");
    bad[16 + 400] ^= 0x01;
    let tmp = temp_copy(|files| files[0].1 = common::gz(&bad));
    let report = check(DatasetName::MnistTestSplit, &only(tmp.path()));
    assert!(!report.is_ok());
    let images = &report.files[0];
    assert!(images
        .path
        .as_ref()
        .unwrap()
        .ends_with("mnist-test/t10k-images-idx3-ubyte.gz"));
    assert_eq!(
        images.status,
        FileStatus::ChecksumMismatch {
            algorithm: "sha256",
            decompressed: true,
            expected: IMAGES_SHA256.into(),
            actual: sha256_hex(&bad),
        }
    );
    // The other file is still verified and everything is still counted.
    assert_eq!(
        report.files[1].status,
        FileStatus::Verified(Verification::Sha256)
    );
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.total_images(), 10_000);
    let text = report.to_string();
    eprintln!("{text}");
    assert!(text.starts_with("mnist-test-split: 1 PROBLEM\n"), "{text}");
    assert!(text.contains("    t10k-images-idx3-ubyte.gz ("), "{text}");
    assert!(text.contains(&format!("CHECKSUM MISMATCH: sha256 of the decompressed payload: expected {IMAGES_SHA256}, found {}", sha256_hex(&bad))), "{text}");

    // A byte flipped in the stored .gz itself: the gzip CRC or the payload
    // checksum catches it, either way naming the file.
    let tmp = temp_copy(|files| {
        let gz = &mut files[1].1;
        let mid = gz.len() / 2;
        gz[mid] ^= 0x55;
    });
    let report = check(DatasetName::MnistTestSplit, &only(tmp.path()));
    assert!(!report.is_ok());
    assert_eq!(
        report.files[0].status,
        FileStatus::Verified(Verification::Sha256)
    );
    let labels = &report.files[1];
    assert!(!labels.status.is_ok(), "{report}");
    assert!(
        report.to_string().contains("t10k-labels-idx1-ubyte.gz"),
        "{report}"
    );
}

#[test]
fn truncated_and_malformed_files_are_named_problems() {
    // A raw (uncompressed) label file cut short: size mismatch, and the
    // parser's Truncated error naming the file; the image file is still
    // verified and reported.
    let labels = payload("t10k-labels-idx1-ubyte");
    let tmp = temp_copy(|files| {
        files.pop();
        files.push(("t10k-labels-idx1-ubyte".into(), labels[..5_000].to_vec()));
    });
    let report = check(DatasetName::MnistTestSplit, &only(tmp.path()));
    assert!(!report.is_ok());
    assert_eq!(
        report.files[0].status,
        FileStatus::Verified(Verification::Sha256)
    );
    assert_eq!(
        report.files[1].status,
        FileStatus::SizeMismatch {
            decompressed: false,
            expected: 10_008,
            actual: 5_000
        }
    );
    assert_eq!(report.files[1].size, Some(5_000));
    assert!(report.splits.is_empty());
    assert_eq!(report.problems.len(), 1, "{report}");
    match &report.problems[0] {
        Error::Truncated {
            file,
            offset,
            expected,
            actual,
            ..
        } => {
            assert!(file.ends_with("mnist-test/t10k-labels-idx1-ubyte"));
            assert_eq!((*offset, *expected, *actual), (8, 10_000, 4_992));
        }
        other => panic!("expected Truncated, got {other}"),
    }
    let text = report.to_string();
    eprintln!("{text}");
    assert!(text.starts_with("mnist-test-split: 2 PROBLEMS\n"), "{text}");
    assert!(text.contains("truncated at byte 8"), "{text}");

    // A truncated .gz: unreadable (broken gzip stream), named.
    let tmp = temp_copy(|files| files[0].1.truncate(100_000));
    let report = check(DatasetName::MnistTestSplit, &only(tmp.path()));
    match &report.files[0].status {
        FileStatus::Unreadable { message } => {
            assert!(message.contains("t10k-images-idx3-ubyte.gz"), "{message}");
            assert!(message.contains("gzip"), "{message}");
        }
        other => panic!("expected unreadable, got {other}"),
    }
    assert_eq!(report.files[0].size, Some(100_000));
    assert_eq!(
        report.files[1].status,
        FileStatus::Verified(Verification::Sha256)
    );

    // Wrong magic numbers in both files: both reported, not just the first.
    let mut images = payload("t10k-images-idx3-ubyte");
    images[3] = 0x01;
    let mut labels = payload("t10k-labels-idx1-ubyte");
    labels[3] = 0x03;
    let tmp = temp_copy(|files| {
        files[0].1 = common::gz(&images);
        files[1].1 = common::gz(&labels);
    });
    let report = check(DatasetName::MnistTestSplit, &only(tmp.path()));
    assert_eq!(report.problem_count(), 4, "{report}");
    assert!(report
        .files
        .iter()
        .all(|f| matches!(f.status, FileStatus::ChecksumMismatch { .. })));
    let magic: Vec<&Path> = report
        .problems
        .iter()
        .map(|p| match p {
            Error::BadMagic { file, .. } => file.as_path(),
            other => panic!("expected BadMagic, got {other}"),
        })
        .collect();
    assert!(magic[0].ends_with("t10k-images-idx3-ubyte.gz"));
    assert!(magic[1].ends_with("t10k-labels-idx1-ubyte.gz"));
}

#[test]
fn missing_dataset_lists_every_place_searched() {
    let tmp = tempfile::tempdir().unwrap();
    let report = check(DatasetName::Cifar10, &only(tmp.path()));
    assert!(report.is_missing());
    assert!(!report.is_ok());
    assert_eq!(report.dir, None);
    assert_eq!(report.files.len(), 6);
    assert!(report
        .files
        .iter()
        .all(|f| f.status == FileStatus::Missing && f.path.is_none()));
    assert!(report.splits.is_empty() && report.shape.is_none());
    let searched: Vec<&Path> = report.searched.iter().map(|(p, _)| p.as_path()).collect();
    assert_eq!(searched.len(), 4);
    assert_eq!(searched[0], tmp.path().join("cifar10/cifar-10-batches-bin"));
    assert_eq!(searched[3], tmp.path());
    assert_eq!(report.searched[3].1, "missing data_batch_1.bin[.gz], data_batch_2.bin[.gz], data_batch_3.bin[.gz], data_batch_4.bin[.gz], data_batch_5.bin[.gz], test_batch.bin[.gz]");
    let text = report.to_string();
    eprintln!("{text}");
    assert!(text.starts_with("cifar10: MISSING\n"), "{text}");
    assert!(text.contains("looked in:"), "{text}");
    assert!(
        text.contains(&format!("{} (no such directory)", searched[0].display())),
        "{text}"
    );
    assert!(text.contains("cargo xtask fetch-data cifar10"), "{text}");

    // The default search includes the repository's datasets/ and the
    // system directories.
    let defaults = check(DatasetName::Cifar100, &LoadOptions::default());
    if defaults.is_missing() {
        assert!(defaults
            .searched
            .iter()
            .any(|(p, _)| p.starts_with("/usr/share/datasets")));
        assert!(defaults
            .searched
            .iter()
            .any(|(p, _)| p.starts_with(noprop_datasets::repo_datasets_dir())));
    }

    // check_all: every dataset, in order, missing ones reported as such.
    let all = check_all(&only(tmp.path()));
    let names: Vec<DatasetName> = all.iter().map(|c| c.dataset).collect();
    assert_eq!(names, DatasetName::ALL);
    assert!(all.iter().all(|c| c.is_missing()));
}

#[test]
fn partial_dataset_reports_what_is_there_and_what_is_not() {
    // Full MNIST with only the t10k files: the test split is checked and
    // counted, the train files are missing.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnist");
    std::fs::create_dir(&dir).unwrap();
    for f in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        std::fs::copy(shipped().join(f), dir.join(f)).unwrap();
    }
    let report = check(DatasetName::Mnist, &only(tmp.path()));
    assert!(!report.is_ok() && !report.is_missing());
    assert_eq!(report.dir.as_deref(), Some(dir.as_path()));
    let statuses: Vec<&FileStatus> = report.files.iter().map(|f| &f.status).collect();
    assert_eq!(
        statuses,
        [
            &FileStatus::Missing,
            &FileStatus::Missing,
            &FileStatus::Verified(Verification::Sha256),
            &FileStatus::Verified(Verification::Sha256),
        ]
    );
    assert_eq!(report.splits.len(), 1);
    assert_eq!(report.splits[0].name, "test");
    assert_eq!(report.splits[0].per_class, MNIST_TEST_PER_CLASS);
    let text = report.to_string();
    eprintln!("{text}");
    assert!(text.starts_with("mnist: 2 PROBLEMS\n"), "{text}");
    assert!(
        text.contains("train-images-idx3-ubyte[.gz]: MISSING"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{} (missing train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz])",
            dir.display()
        )),
        "{text}"
    );
}

#[test]
fn cifar_files_are_counted_and_every_bad_file_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar10");
    std::fs::create_dir(&dir).unwrap();
    for b in 1..=5 {
        let recs = common::cifar10_records(4, (b - 1) * 4);
        std::fs::write(dir.join(format!("data_batch_{b}.bin")), recs).unwrap();
    }
    std::fs::write(
        dir.join("test_batch.bin.gz"),
        common::gz(&common::cifar10_records(3, 0)),
    )
    .unwrap();

    // Against the built-in manifest the synthetic files have the wrong size.
    let report = check(DatasetName::Cifar10, &only(tmp.path()));
    assert!(report.files.iter().all(|f| matches!(
        f.status,
        FileStatus::SizeMismatch {
            expected: 30_730_000,
            ..
        }
    )));
    assert_eq!(report.total_images(), 23);

    // With a manifest that does not pin them, they are ok and counted.
    let empty = Manifest {
        schema: 1,
        notes: Vec::new(),
        datasets: Vec::new(),
    };
    let opts = LoadOptions {
        manifest: Some(empty),
        ..only(tmp.path())
    };
    let report = check(DatasetName::Cifar10, &opts);
    assert!(report.is_ok(), "{report}");
    assert!(report
        .files
        .iter()
        .all(|f| f.status == FileStatus::NotPinned));
    assert_eq!(report.splits[0].images, 20);
    assert_eq!(report.splits[1].images, 3);
    assert_eq!(report.splits[0].per_class, [2; 10]);
    assert_eq!(report.num_classes, 10);
    let shape = report.shape.unwrap();
    assert_eq!((shape.channels, shape.height, shape.width), (3, 32, 32));

    // Two bad train batches: both are reported, the test split still counted.
    let mut bad_label = common::cifar10_records(4, 0);
    bad_label[0] = 10;
    std::fs::write(dir.join("data_batch_2.bin"), bad_label).unwrap();
    std::fs::write(
        dir.join("data_batch_4.bin"),
        &common::cifar10_records(4, 0)[..5_000],
    )
    .unwrap();
    let report = check(DatasetName::Cifar10, &opts);
    assert!(!report.is_ok());
    assert_eq!(report.problems.len(), 2, "{report}");
    assert!(
        matches!(&report.problems[0], Error::LabelOutOfRange { file, label: 10, .. } if file.ends_with("data_batch_2.bin"))
    );
    assert!(
        matches!(&report.problems[1], Error::Truncated { file, .. } if file.ends_with("data_batch_4.bin"))
    );
    assert_eq!(report.splits.len(), 1);
    assert_eq!(
        (report.splits[0].name, report.splits[0].images),
        ("test", 3)
    );

    // CIFAR-100 with coarse labels: 20 classes.
    let dir = tmp.path().join("cifar100");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("train.bin"), common::cifar100_records(40, 0)).unwrap();
    std::fs::write(dir.join("test.bin"), common::cifar100_records(20, 3)).unwrap();
    let coarse = LoadOptions {
        cifar100_labels: noprop_datasets::Cifar100Labels::Coarse,
        ..opts.clone()
    };
    let report = check(DatasetName::Cifar100, &coarse);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.num_classes, 20);
    assert_eq!(report.splits[0].per_class, [2; 20]);
    let fine = check(DatasetName::Cifar100, &opts);
    assert_eq!(fine.num_classes, 100);
    assert_eq!(fine.splits[0].per_class.len(), 100);
    // 100 per-class counts are printed ten to a line.
    eprintln!("{fine}");
    assert!(fine.to_string().contains("    90: "), "{fine}");
}
