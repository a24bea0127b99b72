//! The full Fashion-MNIST set from Debian's `dataset-fashion-mnist` package
//! (`/usr/share/datasets/fashion-mnist`, installed by `.ci/run`).

use noprop_datasets::{load, DatasetName, LoadOptions, StampCache, Verification};
use std::path::Path;

const SYSTEM_DIR: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn full_fashion_mnist_from_debian_package() {
    if !Path::new(SYSTEM_DIR).is_dir() {
        eprintln!(
            "SKIPPED full_fashion_mnist_from_debian_package: {SYSTEM_DIR} does not exist \
             (install it with `apt-get install dataset-fashion-mnist`; .ci/run does)"
        );
        return;
    }
    let options = LoadOptions {
        stamps: StampCache::Off,
        search_defaults: false,
        ..LoadOptions::with_data_dir(SYSTEM_DIR)
    };
    let data = load(DatasetName::FashionMnist, &options).unwrap();
    assert_eq!(data.source, Path::new(SYSTEM_DIR));
    // Debian's .gz files differ byte-wise from upstream; the payload SHA-256
    // still verifies.
    for f in &data.files {
        assert_eq!(f.verification, Verification::Sha256, "{}", f.path.display());
    }
    assert_eq!((data.train.len(), data.test.len()), (60_000, 10_000));
    assert_eq!(data.train.shape(), DatasetName::FashionMnist.shape());
    assert_eq!(data.train.class_counts(), vec![6_000; 10]);
    assert_eq!(data.test.class_counts(), vec![1_000; 10]);
    // First labels of the train set: ankle boot, T-shirt, T-shirt, dress, T-shirt.
    assert_eq!(&data.train.labels()[..5], &[9, 0, 0, 3, 0]);
    let norm = data.normalization();
    // The well-known Fashion-MNIST statistics: mean 0.2860, std 0.3530.
    assert!((norm.mean[0] - 0.2860).abs() < 5e-4, "{norm:?}");
    assert!((norm.std[0] - 0.3530).abs() < 5e-4, "{norm:?}");
    // The default search path finds the system copy too (unless a local
    // copy shadows it).
    let found =
        noprop_datasets::locate(DatasetName::FashionMnist, &LoadOptions::default()).unwrap();
    assert!(found.files.len() == 4);
}
