//! Helpers shared by the integration tests.
#![allow(dead_code)]

use flate2::{write::GzEncoder, Compression};
use noprop_datasets::cifar::{CIFAR100_RECORD, CIFAR10_RECORD};
use std::io::Write;
use std::path::PathBuf;

/// The directory holding the real MNIST test set: `datasets/mnist-test`,
/// which ships with the repository (see its `README.md`).
pub fn mnist_test_dir() -> Option<PathBuf> {
    let d = noprop_datasets::repo_datasets_dir().join("mnist-test");
    (d.join("t10k-images-idx3-ubyte.gz").is_file() && d.join("t10k-labels-idx1-ubyte.gz").is_file())
        .then_some(d)
}

/// Gzip-compresses `data`.
pub fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A deterministic pseudo-random byte for synthetic pixels.
pub fn px(seed: usize, i: usize) -> u8 {
    (seed
        .wrapping_mul(2_654_435_761)
        .wrapping_add(i.wrapping_mul(40_503))
        >> 7) as u8
}

/// `n` CIFAR-10 records: label `(first + k) % 10`; the R plane holds
/// `px(..)` values with the low two bits cleared, G the same | 1, B | 2,
/// so the channel of every pixel can be told from its value.
pub fn cifar10_records(n: usize, first: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * CIFAR10_RECORD);
    for k in 0..n {
        out.push(((first + k) % 10) as u8);
        push_planes(&mut out, first + k);
    }
    out
}

/// `n` CIFAR-100 records: coarse `(first + k) % 20`, fine `(first + k * 7) % 100`.
pub fn cifar100_records(n: usize, first: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * CIFAR100_RECORD);
    for k in 0..n {
        out.push(((first + k) % 20) as u8);
        out.push(((first + k * 7) % 100) as u8);
        push_planes(&mut out, first + k);
    }
    out
}

fn push_planes(out: &mut Vec<u8>, seed: usize) {
    for channel in 0..3u8 {
        out.extend((0..1024).map(|i| (px(seed, i) & !3) | channel));
    }
}
