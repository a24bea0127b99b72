//! Named datasets: where to find them and how to load them.

use crate::cifar::{
    append_cifar10, parse_cifar10, parse_cifar100, Cifar100Labels, CIFAR10_RECORD, CIFAR_PIXELS,
    CIFAR_SHAPE,
};
use crate::dataset::{Dataset, ImageShape, Normalization};
use crate::error::{Error, Result};
use crate::idx::{idx_dataset, parse_idx_images, parse_idx_labels};
use crate::io::read_payload;
use crate::manifest::{DatasetEntry, Manifest};
use crate::verify::{verify_member, FileId, FileReport, StampCache, Verification};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Number of leading MNIST test images used as the train split of
/// [`DatasetName::MnistTestSplit`]; the remaining 2,000 are its test split.
pub const MNIST_TEST_SPLIT_TRAIN: usize = 8_000;

/// Environment variable naming a data root searched after `--data-dir`.
pub const DATA_ENV: &str = "NOPROP_DATA";

/// System directories searched last (Debian's `dataset-fashion-mnist`
/// installs `/usr/share/datasets/fashion-mnist/`).
pub const SYSTEM_DATA_DIRS: [&str; 2] = ["/usr/share/datasets", "/usr/local/share/datasets"];

/// The datasets this crate can load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DatasetName {
    /// MNIST digits: 60,000 train / 10,000 test, 1x28x28, 10 classes.
    Mnist,
    /// Fashion-MNIST: 60,000 train / 10,000 test, 1x28x28, 10 classes.
    FashionMnist,
    /// CIFAR-10: 50,000 train / 10,000 test, 3x32x32, 10 classes.
    Cifar10,
    /// CIFAR-100: 50,000 train / 10,000 test, 3x32x32, 100 fine (default) or
    /// 20 coarse classes.
    Cifar100,
    /// The MNIST *test* set split in two: train = its first 8,000 images,
    /// test = its last 2,000. Needs only the `t10k-*` files; used by the
    /// learning tests.
    MnistTestSplit,
}

impl DatasetName {
    /// Every dataset.
    pub const ALL: [DatasetName; 5] = [
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Cifar10,
        DatasetName::Cifar100,
        DatasetName::MnistTestSplit,
    ];

    /// The canonical name (`mnist`, `fashion-mnist`, `cifar10`, `cifar100`,
    /// `mnist-test-split`).
    pub const fn as_str(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Cifar100 => "cifar100",
            DatasetName::MnistTestSplit => "mnist-test-split",
        }
    }

    /// The manifest entry and download directory holding its files
    /// (`mnist` for [`DatasetName::MnistTestSplit`]).
    pub const fn manifest_name(self) -> &'static str {
        match self {
            DatasetName::MnistTestSplit => "mnist",
            other => other.as_str(),
        }
    }

    /// The command that downloads it.
    pub fn fetch_command(self) -> String {
        format!("cargo xtask fetch-data {}", self.manifest_name())
    }

    /// Image shape.
    pub const fn shape(self) -> ImageShape {
        match self {
            DatasetName::Cifar10 | DatasetName::Cifar100 => CIFAR_SHAPE,
            _ => ImageShape::new(1, 28, 28),
        }
    }

    /// Number of classes (CIFAR-100: fine labels).
    pub const fn num_classes(self) -> usize {
        match self {
            DatasetName::Cifar100 => 100,
            _ => 10,
        }
    }

    /// The files a load reads, each found as `<dir>/<file>` or
    /// `<dir>/<file>.gz`.
    pub const fn files(self) -> &'static [&'static str] {
        match self {
            DatasetName::Mnist | DatasetName::FashionMnist => &[
                "train-images-idx3-ubyte",
                "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte",
            ],
            DatasetName::MnistTestSplit => &["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
            DatasetName::Cifar10 => &[
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
                "test_batch.bin",
            ],
            DatasetName::Cifar100 => &["train.bin", "test.bin"],
        }
    }

    /// Sub-directories of a data root that may hold the files, most usual
    /// first (`cargo xtask fetch-data` writes the first).
    const fn subdirs(self) -> &'static [&'static str] {
        match self {
            DatasetName::Mnist => &["mnist", "MNIST/raw"],
            DatasetName::FashionMnist => &["fashion-mnist", "FashionMNIST/raw"],
            DatasetName::Cifar10 => &[
                "cifar10/cifar-10-batches-bin",
                "cifar10",
                "cifar-10-batches-bin",
            ],
            DatasetName::Cifar100 => &["cifar100/cifar-100-binary", "cifar100", "cifar-100-binary"],
            DatasetName::MnistTestSplit => &["mnist-test", "mnist", "MNIST/raw"],
        }
    }
}

impl fmt::Display for DatasetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DatasetName {
    type Err = Error;

    /// Accepts the canonical names case-insensitively, with `_` for `-`, and
    /// `cifar-10` / `cifar-100` / `fashionmnist` / `mnist-test`.
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        Ok(match norm.as_str() {
            "mnist" => DatasetName::Mnist,
            "fashion-mnist" | "fashionmnist" => DatasetName::FashionMnist,
            "cifar10" | "cifar-10" => DatasetName::Cifar10,
            "cifar100" | "cifar-100" => DatasetName::Cifar100,
            "mnist-test-split" | "mnist-test" => DatasetName::MnistTestSplit,
            _ => {
                return Err(Error::UnknownDataset {
                    name: s.to_string(),
                    expected: DatasetName::ALL
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        })
    }
}

/// How [`load`] finds and checks files.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// A data root searched first: `<data_dir>/<name>/` (and the other usual
    /// sub-directories), then `<data_dir>` itself.
    pub data_dir: Option<PathBuf>,
    /// Verify files against the manifest (on by default; cached, see
    /// [`StampCache`]).
    pub verify: bool,
    /// Also search `$NOPROP_DATA`, `./datasets`, the workspace's
    /// `datasets/`, `../shared/data` (MNIST test files) and the system
    /// directories. Turn off to look in `data_dir` only.
    pub search_defaults: bool,
    /// CIFAR-100 label set.
    pub cifar100_labels: Cifar100Labels,
    /// Where verification stamps are cached.
    pub stamps: StampCache,
    /// Manifest to verify against; `None` for the built-in one.
    pub manifest: Option<Manifest>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            data_dir: None,
            verify: true,
            search_defaults: true,
            cifar100_labels: Cifar100Labels::Fine,
            stamps: StampCache::Default,
            manifest: None,
        }
    }
}

impl LoadOptions {
    /// Default options searching `data_dir` first.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        LoadOptions {
            data_dir: Some(data_dir.into()),
            ..LoadOptions::default()
        }
    }
}

/// A loaded dataset: both splits and where they came from.
#[derive(Clone, Debug)]
pub struct TrainTest {
    /// The train split.
    pub train: Dataset,
    /// The test split.
    pub test: Dataset,
    /// The directory the files were read from.
    pub source: PathBuf,
    /// Each file read and how it was verified.
    pub files: Vec<FileReport>,
}

impl TrainTest {
    /// Per-channel mean/std of the train split, to normalise both splits.
    pub fn normalization(&self) -> Normalization {
        self.train.channel_stats()
    }
}

/// Where a dataset's files were found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The directory.
    pub dir: PathBuf,
    /// One path per entry of [`DatasetName::files`], raw or `.gz`.
    pub files: Vec<PathBuf>,
}

/// The workspace root this crate was built in (`crates/datasets/../..`).
fn workspace_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("..");
    std::fs::canonicalize(&root).unwrap_or(root)
}

/// Every directory [`locate`] examines for `name`, in order.
pub fn search_locations(name: DatasetName, options: &LoadOptions) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    let roots_with_self = |root: &Path, out: &mut Vec<PathBuf>| {
        out.extend(name.subdirs().iter().map(|s| root.join(s)));
        out.push(root.to_path_buf());
    };
    if let Some(d) = &options.data_dir {
        roots_with_self(d, &mut out);
    }
    if options.search_defaults {
        if let Some(env) = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
            roots_with_self(Path::new(&env), &mut out);
        }
        let ws = workspace_root();
        for root in [PathBuf::from("datasets"), ws.join("datasets")] {
            out.extend(name.subdirs().iter().map(|s| root.join(s)));
        }
        if matches!(name, DatasetName::Mnist | DatasetName::MnistTestSplit) {
            let beside_ws = ws.parent().map_or_else(|| ws.join(".."), Path::to_path_buf);
            for root in [
                PathBuf::from("../shared/data"),
                beside_ws.join("shared/data"),
            ] {
                out.push(root.join("mnist-test"));
            }
        }
        for sys in SYSTEM_DATA_DIRS {
            out.extend(name.subdirs().iter().map(|s| Path::new(sys).join(s)));
        }
    }
    // Drop duplicates (the same directory reached two ways).
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    out
}

/// Finds the first directory holding every file of `name`. A miss is an
/// [`Error::NotFound`] naming each place looked and what was missing there.
pub fn locate(name: DatasetName, options: &LoadOptions) -> Result<Located> {
    let mut searched = Vec::new();
    for dir in search_locations(name, options) {
        if !dir.is_dir() {
            searched.push((dir, "no such directory".to_string()));
            continue;
        }
        let mut files = Vec::new();
        let mut missing = Vec::new();
        for f in name.files() {
            let raw = dir.join(f);
            let gz = dir.join(format!("{f}.gz"));
            if raw.is_file() {
                files.push(raw);
            } else if gz.is_file() {
                files.push(gz);
            } else {
                missing.push(format!("{f}[.gz]"));
            }
        }
        if missing.is_empty() {
            return Ok(Located { dir, files });
        }
        searched.push((dir, format!("missing {}", missing.join(", "))));
    }
    Err(Error::NotFound {
        dataset: name.to_string(),
        searched,
        fetch_command: name.fetch_command(),
    })
}

/// Reads, decompresses and (optionally) verifies every file, in parallel.
fn read_all(
    files: &[PathBuf],
    entry: Option<&DatasetEntry>,
    options: &LoadOptions,
) -> Result<Vec<(Vec<u8>, FileReport)>> {
    let stamps = if options.verify {
        options.stamps.dir()
    } else {
        None
    };
    let read_one = |path: &PathBuf| -> Result<(Vec<u8>, FileReport)> {
        let id = FileId::of(path)?;
        let (payload, disk) = read_payload(path)?;
        let verification = if options.verify {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let member = entry.zip(name).and_then(|(e, n)| e.member(&n));
            verify_member(
                path,
                id,
                &payload,
                disk.as_deref(),
                member,
                stamps.as_deref(),
            )?
        } else {
            Verification::Skipped
        };
        Ok((
            payload,
            FileReport {
                path: path.clone(),
                verification,
            },
        ))
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = files.iter().map(|p| s.spawn(move || read_one(p))).collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Loads a named dataset: locates its files ([`locate`]), reads and
/// decompresses them, verifies them against the manifest unless
/// `options.verify` is off, and parses them.
pub fn load(name: DatasetName, options: &LoadOptions) -> Result<TrainTest> {
    let located = locate(name, options)?;
    let manifest = match &options.manifest {
        Some(m) => Some(m),
        None if options.verify => Some(Manifest::builtin()?),
        None => None,
    };
    let entry = manifest.and_then(|m| m.dataset(name.manifest_name()).ok());
    let read = read_all(&located.files, entry, options)?;
    let files: Vec<FileReport> = read.iter().map(|(_, r)| r.clone()).collect();
    let mut payloads: Vec<Vec<u8>> = read.into_iter().map(|(p, _)| p).collect();
    let paths = &located.files;
    let idx_pair = |images: &[u8], labels: &[u8], ip: &Path, lp: &Path| -> Result<Dataset> {
        idx_dataset(
            parse_idx_images(images, ip)?,
            parse_idx_labels(labels, lp)?,
            10,
            ip,
            lp,
        )
    };
    let (train, test) = match name {
        DatasetName::Mnist | DatasetName::FashionMnist => (
            idx_pair(&payloads[0], &payloads[1], &paths[0], &paths[1])?,
            idx_pair(&payloads[2], &payloads[3], &paths[2], &paths[3])?,
        ),
        DatasetName::MnistTestSplit => {
            let all = idx_pair(&payloads[0], &payloads[1], &paths[0], &paths[1])?;
            if all.len() < MNIST_TEST_SPLIT_TRAIN {
                return Err(Error::invalid(format!(
                    "{} holds {} images, fewer than the {MNIST_TEST_SPLIT_TRAIN} of the split's train part",
                    paths[0].display(),
                    all.len()
                )));
            }
            all.split_at(MNIST_TEST_SPLIT_TRAIN)?
        }
        DatasetName::Cifar10 => {
            let test_bytes = payloads.pop().unwrap_or_default();
            let test_path = &paths[paths.len() - 1];
            let total: usize = payloads.iter().map(Vec::len).sum();
            let mut images = Vec::with_capacity(total / CIFAR10_RECORD * CIFAR_PIXELS);
            let mut labels = Vec::with_capacity(total / CIFAR10_RECORD);
            for (bytes, path) in payloads.iter().zip(paths) {
                append_cifar10(bytes, path, &mut images, &mut labels)?;
            }
            (
                Dataset::from_parts_unchecked(images, labels, CIFAR_SHAPE, 10),
                parse_cifar10(&test_bytes, test_path)?,
            )
        }
        DatasetName::Cifar100 => (
            parse_cifar100(&payloads[0], &paths[0])?.into_dataset(options.cifar100_labels),
            parse_cifar100(&payloads[1], &paths[1])?.into_dataset(options.cifar100_labels),
        ),
    };
    Ok(TrainTest {
        train,
        test,
        source: located.dir,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        for d in DatasetName::ALL {
            assert_eq!(d.as_str().parse::<DatasetName>().unwrap(), d);
            assert_eq!(d.to_string(), d.as_str());
        }
        assert_eq!(
            "CIFAR-10".parse::<DatasetName>().unwrap(),
            DatasetName::Cifar10
        );
        assert_eq!(
            "fashion_mnist".parse::<DatasetName>().unwrap(),
            DatasetName::FashionMnist
        );
        let e = "imagenet".parse::<DatasetName>().unwrap_err();
        assert!(e.to_string().contains("mnist-test-split"), "{e}");
    }

    #[test]
    fn search_order() {
        let opts = LoadOptions::with_data_dir("/nonexistent/root");
        let locs = search_locations(DatasetName::FashionMnist, &opts);
        assert_eq!(locs[0], Path::new("/nonexistent/root/fashion-mnist"));
        assert!(locs.contains(&PathBuf::from("/usr/share/datasets/fashion-mnist")));
        let mnist = search_locations(DatasetName::MnistTestSplit, &opts);
        assert!(mnist.iter().any(|p| p.ends_with("shared/data/mnist-test")));
        let only = LoadOptions {
            search_defaults: false,
            ..opts
        };
        assert_eq!(search_locations(DatasetName::Cifar100, &only).len(), 4);
    }
}
