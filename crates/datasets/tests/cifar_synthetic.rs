//! CIFAR-10 / CIFAR-100 files written in the exact binary format.

mod common;

use common::{cifar100_records, cifar10_records, gz};
use noprop_datasets::cifar::{parse_cifar10, parse_cifar100, CIFAR10_RECORD};
use noprop_datasets::{
    load, read_cifar10, read_cifar100, BatchOptions, Cifar100Labels, DatasetName, Error,
    LoadOptions, StampCache, Verification,
};
use std::path::Path;

fn opts(dir: &Path) -> LoadOptions {
    LoadOptions {
        search_defaults: false,
        stamps: StampCache::Off,
        ..LoadOptions::with_data_dir(dir)
    }
}

fn write_cifar10(root: &Path, per_batch: usize) {
    let dir = root.join("cifar10/cifar-10-batches-bin");
    std::fs::create_dir_all(&dir).unwrap();
    for b in 1..=5 {
        let recs = cifar10_records(per_batch, (b - 1) * per_batch);
        std::fs::write(dir.join(format!("data_batch_{b}.bin")), recs).unwrap();
    }
    // The test batch compressed, to exercise `.gz` support.
    std::fs::write(dir.join("test_batch.bin.gz"), gz(&cifar10_records(3, 1000))).unwrap();
}

#[test]
fn cifar10_planes_land_in_the_right_channels() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar10(tmp.path(), 4);
    // With verification on, the synthetic files fail the pinned sizes.
    let err = load(DatasetName::Cifar10, &opts(tmp.path())).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SizeMismatch {
                expected: 30_730_000,
                ..
            }
        ),
        "{err}"
    );
    let data = load(
        DatasetName::Cifar10,
        &LoadOptions {
            verify: false,
            ..opts(tmp.path())
        },
    )
    .unwrap();
    assert!(data
        .files
        .iter()
        .all(|f| f.verification == Verification::Skipped));
    assert!(data.source.ends_with("cifar10/cifar-10-batches-bin"));
    assert_eq!((data.train.len(), data.test.len()), (20, 3));
    assert_eq!(
        data.train.shape(),
        noprop_datasets::ImageShape::new(3, 32, 32)
    );
    let labels: Vec<u8> = (0..20).map(|k| (k % 10) as u8).collect();
    assert_eq!(data.train.labels(), &labels[..]);
    assert_eq!(data.test.labels(), &[0, 1, 2]);
    for i in 0..data.train.len() {
        let img = data.train.image(i);
        for (c, plane) in img.chunks_exact(1024).enumerate() {
            assert!(
                plane.iter().all(|&v| usize::from(v & 3) == c),
                "image {i} channel {c}"
            );
            // Exact pixel values, row-major within the plane.
            assert!(plane
                .iter()
                .enumerate()
                .all(|(j, &v)| v == (common::px(i, j) & !3) | c as u8));
        }
    }
    // Through batching too: channel c of the f32 output decodes to c.
    let b = data
        .train
        .batches(BatchOptions::new(20))
        .unwrap()
        .next()
        .unwrap();
    assert_eq!(b.shape(), [20, 3, 32, 32]);
    for (k, v) in b.images().iter().enumerate() {
        let c = (k / 1024) % 3;
        let byte = (v * 255.0).round() as u8;
        assert_eq!(usize::from(byte & 3), c);
    }
    // The low-level reader concatenates in the order given.
    let dir = tmp.path().join("cifar10/cifar-10-batches-bin");
    let two = read_cifar10(&[dir.join("data_batch_2.bin"), dir.join("data_batch_1.bin")]).unwrap();
    assert_eq!(two.image(0), data.train.image(4));
    assert_eq!(two.image(4), data.train.image(0));
}

#[test]
fn cifar100_exposes_both_label_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cifar100/cifar-100-binary");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("train.bin"), cifar100_records(30, 0)).unwrap();
    std::fs::write(dir.join("test.bin"), cifar100_records(5, 100)).unwrap();
    let o = LoadOptions {
        verify: false,
        ..opts(tmp.path())
    };
    let fine = load(DatasetName::Cifar100, &o).unwrap();
    assert_eq!(fine.train.num_classes(), 100);
    let want_fine: Vec<u8> = (0..30).map(|k| ((k * 7) % 100) as u8).collect();
    assert_eq!(fine.train.labels(), &want_fine[..]);
    let coarse = load(
        DatasetName::Cifar100,
        &LoadOptions {
            cifar100_labels: Cifar100Labels::Coarse,
            ..o
        },
    )
    .unwrap();
    assert_eq!(coarse.train.num_classes(), 20);
    let want_coarse: Vec<u8> = (0..30).map(|k| (k % 20) as u8).collect();
    assert_eq!(coarse.train.labels(), &want_coarse[..]);
    assert_eq!(coarse.train.images(), fine.train.images());
    let raw = read_cifar100(dir.join("test.bin")).unwrap();
    assert_eq!(raw.len(), 5);
    assert_eq!(raw.coarse, vec![0, 1, 2, 3, 4]);
    assert_eq!(raw.fine, vec![0, 7, 14, 21, 28]);
    for (c, plane) in raw.images[..3072].chunks_exact(1024).enumerate() {
        assert!(plane.iter().all(|&v| usize::from(v & 3) == c));
    }
}

#[test]
fn cifar_errors_are_typed() {
    let recs = cifar10_records(3, 0);
    let e = parse_cifar10(&recs[..CIFAR10_RECORD * 2 + 10], "data_batch_1.bin").unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(
            e,
            Error::Truncated {
                offset: 6146,
                expected: 3073,
                actual: 10,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("data_batch_1.bin") && msg.contains("6146"),
        "{msg}"
    );
    let mut bad = cifar100_records(2, 0);
    bad[3074] = 25; // coarse label of record 1
    let e = parse_cifar100(&bad, "train.bin").unwrap_err();
    assert!(
        matches!(
            e,
            Error::LabelOutOfRange {
                offset: 3074,
                label: 25,
                classes: 20,
                ..
            }
        ),
        "{e}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("test_batch.bin.gz");
    let mut z = gz(&recs);
    z.truncate(z.len() - 20);
    std::fs::write(&p, z).unwrap();
    assert!(matches!(read_cifar10(&[&p]), Err(Error::Gzip { .. })));
}
