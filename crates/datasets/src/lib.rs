//! MNIST, Fashion-MNIST, CIFAR-10, CIFAR-100 and Tiny ImageNet for noprop-rs: readers,
//! checksummed downloads, seeded batching, normalisation and augmentation.
//!
//! # Where the files come from and which format is read
//!
//! | dataset | source | format read |
//! |---|---|---|
//! | `mnist` | <http://yann.lecun.com/exdb/mnist/> (torchvision's mirror `ossci-datasets.s3.amazonaws.com/mnist/`) | IDX: `{train,t10k}-images-idx3-ubyte` and `-labels-idx1-ubyte`, raw or `.gz` ([`idx`]) |
//! | `fashion-mnist` | <https://github.com/zalandoresearch/fashion-mnist> (files on `fashion-mnist.s3-website.eu-central-1.amazonaws.com`; Debian package `dataset-fashion-mnist`) | IDX, same names |
//! | `cifar10` | <https://www.cs.toronto.edu/~kriz/cifar.html>, `cifar-10-binary.tar.gz` | CIFAR *binary* version: `data_batch_{1..5}.bin`, `test_batch.bin`, 3,073-byte records ([`cifar`]) |
//! | `cifar100` | same page, `cifar-100-binary.tar.gz` | `train.bin`, `test.bin`, 3,074-byte records (coarse label, fine label, pixels) |
//! | `mnist-test-split` | MNIST's `t10k-*` files | train = first 8,000 test images, test = last 2,000 |
//! | `tiny-imagenet` | <http://cs231n.stanford.edu/tiny-imagenet-200.zip> | the unpacked `tiny-imagenet-200/` JPEG tree, decoded once and cached ([`tiny_imagenet`]) |
//!
//! `datasets/manifest.json` (built in: [`Manifest::builtin`]) pins for every
//! file its URLs, its size and MD5 as published, and the SHA-256 of the
//! decompressed payload where known, so a re-compressed copy still verifies.
//!
//! # Finding the files
//!
//! [`load`] looks, in order, in `LoadOptions::data_dir` (`--data-dir`), the
//! repository's own `datasets/<name>/` ([`repo_datasets_dir`]) and
//! `./datasets/<name>/`, `$NOPROP_DATA` and `/usr/share/datasets/<name>/`;
//! see [`search_locations`]. The MNIST test set ships with the repository in
//! `datasets/mnist-test/` (see its `README.md`), so
//! [`DatasetName::MnistTestSplit`] needs nothing outside the repository. A
//! miss is an [`Error::NotFound`] listing every place looked and the
//! `cargo xtask fetch-data <name>` command to run. Files are verified against
//! the manifest by default; the result is cached per file by size and mtime
//! ([`StampCache`]).
//!
//! [`check()`] reports on a dataset without stopping at the first problem:
//! every file's verification status, parse problems, image counts per split
//! and per class ([`DataCheck`]).
//!
//! # Bad input
//!
//! Parsers never panic on malformed input and never allocate from a header
//! size before checking it against the real byte length; every problem is a
//! typed [`Error`] naming the file, the byte offset and what was expected.
//!
//! # Example
//!
//! Build a dataset from in-memory IDX bytes, normalise it with its own
//! statistics and iterate over shuffled mini-batches:
//!
//! ```
//! use noprop_datasets::{idx, BatchBuf, BatchOptions};
//!
//! // Four 2x2 grey images and their labels, in IDX format.
//! let pixels: Vec<u8> = (0..16).map(|v| v * 16).collect();
//! let images = idx::encode_idx_images(4, 2, 2, &pixels);
//! let labels = idx::encode_idx_labels(&[0, 1, 2, 1]);
//! let data = idx::parse_idx_dataset(&images, &labels, 3, "images", "labels")?;
//! assert_eq!((data.len(), data.shape().len(), data.num_classes()), (4, 4, 3));
//!
//! let norm = data.channel_stats();
//! let mut batches = data.batches(BatchOptions::new(3).shuffle(7).normalize(norm))?;
//! assert_eq!(batches.num_batches(), 2); // 3 + a partial batch of 1
//! let mut buf = BatchBuf::new();
//! let mut seen = 0;
//! while batches.next_into(&mut buf) {
//!     assert_eq!(buf.shape()[1..], [1, 2, 2]);
//!     assert_eq!(buf.images().len(), buf.len() * 4);
//!     seen += buf.len();
//! }
//! assert_eq!(seen, 4);
//!
//! // Malformed input is an error, never a panic.
//! assert!(idx::parse_idx_images(&images[..20], "images").is_err());
//! # Ok::<(), noprop_datasets::Error>(())
//! ```
//!
//! Loading a named dataset from disk:
//!
//! ```no_run
//! use noprop_datasets::{load, DatasetName, LoadOptions};
//! let data = load(DatasetName::MnistTestSplit, &LoadOptions::default())?;
//! println!("{} train / {} test from {}", data.train.len(), data.test.len(), data.source.display());
//! # Ok::<(), noprop_datasets::Error>(())
//! ```

#![deny(missing_docs)]

pub mod batch;
pub mod check;
pub mod cifar;
pub mod dataset;
mod error;
pub mod fetch;
pub mod idx;
pub mod io;
mod load;
pub mod manifest;
pub mod tiny_imagenet;
pub mod verify;

pub use batch::{Augment, BatchBuf, BatchOptions, Batches, SplitMix64};
pub use check::{check, check_all, DataCheck, FileCheck, FileStatus, SplitCheck};
pub use cifar::{read_cifar10, read_cifar100, Cifar100, Cifar100Labels};
pub use dataset::{Dataset, ImageShape, Normalization};
pub use error::{Error, Result};
pub use fetch::{fetch, fetch_entry, FetchOptions};
pub use idx::{read_idx_images, read_idx_labels, IdxImages};
pub use load::{
    load, locate, repo_datasets_dir, search_locations, DatasetName, LoadOptions, Located,
    TrainTest, DATA_ENV, MNIST_TEST_SPLIT_TRAIN, SYSTEM_DATA_DIRS,
};
pub use manifest::Manifest;
pub use verify::{FileReport, StampCache, Verification};
