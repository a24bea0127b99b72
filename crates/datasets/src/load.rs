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
use crate::tiny_imagenet::{read_tiny_imagenet, TINY_CLASSES, TINY_SHAPE};
use crate::verify::{verify_file, FileId, FileReport, StampCache, Verification};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Number of leading MNIST test images used as the train split of
/// [`DatasetName::MnistTestSplit`]; the remaining 2,000 are its test split.
pub const MNIST_TEST_SPLIT_TRAIN: usize = 8_000;

/// Environment variable naming a data root, searched after `--data-dir` and
/// the repository's own `datasets/` folder (see [`search_locations`]).
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
    /// Tiny ImageNet (`tiny-imagenet-200`): 100,000 train / 10,000 labelled
    /// validation (the test split) JPEGs, 3x64x64, 200 classes; read by
    /// [`crate::tiny_imagenet`].
    TinyImagenet,
}

impl DatasetName {
    /// Every dataset.
    pub const ALL: [DatasetName; 6] = [
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Cifar10,
        DatasetName::Cifar100,
        DatasetName::MnistTestSplit,
        DatasetName::TinyImagenet,
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
            DatasetName::TinyImagenet => "tiny-imagenet",
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
            DatasetName::TinyImagenet => TINY_SHAPE,
            _ => ImageShape::new(1, 28, 28),
        }
    }

    /// Number of classes (CIFAR-100: fine labels).
    pub const fn num_classes(self) -> usize {
        match self {
            DatasetName::Cifar100 => 100,
            DatasetName::TinyImagenet => TINY_CLASSES,
            _ => 10,
        }
    }

    /// The files a load reads, each found as `<dir>/<file>` or
    /// `<dir>/<file>.gz` (Tiny ImageNet: the class list that marks its
    /// directory; its images are listed by [`crate::tiny_imagenet`]).
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
            DatasetName::TinyImagenet => &["wnids.txt"],
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
            DatasetName::TinyImagenet => &[
                "tiny-imagenet/tiny-imagenet-200",
                "tiny-imagenet-200",
                "tiny-imagenet",
            ],
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
            "tiny-imagenet" | "tinyimagenet" | "tiny-imagenet-200" => DatasetName::TinyImagenet,
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
    /// Also search the repository's `datasets/` folder, `./datasets`,
    /// `$NOPROP_DATA` and the system directories, in that order, after
    /// `data_dir` (see [`search_locations`]). Turn off to look in `data_dir`
    /// only.
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

/// The repository's own `datasets/` folder: `<workspace>/datasets`, found
/// from this crate's source directory at compile time. It ships the MNIST
/// test set (`datasets/mnist-test/`, see its `README.md`) and is where
/// `cargo xtask fetch-data` downloads to.
pub fn repo_datasets_dir() -> PathBuf {
    workspace_root().join("datasets")
}

/// Every directory [`locate`] examines for `name`, in order:
///
/// 1. `options.data_dir` (`--data-dir`): `<data_dir>/<name>/` and the other
///    usual sub-directories, then `<data_dir>` itself. An explicit choice
///    wins over every default.
/// 2. The repository's own `datasets/<name>/` ([`repo_datasets_dir`], from
///    the compile-time `CARGO_MANIFEST_DIR`), then `./datasets/<name>/`
///    relative to the current directory. For
///    [`DatasetName::MnistTestSplit`] the first of these is
///    `datasets/mnist-test/`, which ships with the repository, so the
///    default search always finds the MNIST test set there first.
/// 3. `$NOPROP_DATA` ([`DATA_ENV`]): `$NOPROP_DATA/<name>/` and the other
///    sub-directories, then `$NOPROP_DATA` itself. It comes after the
///    repository's copy so a stray environment variable cannot swap the
///    pinned, shipped data for another copy; use `--data-dir` to override.
/// 4. The system directories ([`SYSTEM_DATA_DIRS`]).
///
/// Steps 2–4 are skipped when `options.search_defaults` is off. Nothing
/// outside these places (in particular nothing beside the repository) is
/// searched. A directory reached two ways is listed once.
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
        for root in [repo_datasets_dir(), PathBuf::from("datasets")] {
            out.extend(name.subdirs().iter().map(|s| root.join(s)));
        }
        if let Some(env) = std::env::var_os(DATA_ENV).filter(|v| !v.is_empty()) {
            roots_with_self(Path::new(&env), &mut out);
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

/// Which of `name`'s files `dir` holds: one entry per
/// [`DatasetName::files`], the raw file preferred over `<file>.gz`. `None`
/// when `dir` is not a directory.
pub(crate) fn scan_dir(name: DatasetName, dir: &Path) -> Option<Vec<Option<PathBuf>>> {
    if !dir.is_dir() {
        return None;
    }
    Some(
        name.files()
            .iter()
            .map(|f| {
                let raw = dir.join(f);
                let gz = dir.join(format!("{f}.gz"));
                if raw.is_file() {
                    Some(raw)
                } else if gz.is_file() {
                    Some(gz)
                } else {
                    None
                }
            })
            .collect(),
    )
}

/// Finds the first directory holding every file of `name`. A miss is an
/// [`Error::NotFound`] naming each place looked and what was missing there.
pub fn locate(name: DatasetName, options: &LoadOptions) -> Result<Located> {
    let mut searched = Vec::new();
    for dir in search_locations(name, options) {
        let Some(found) = scan_dir(name, &dir) else {
            searched.push((dir, "no such directory".to_string()));
            continue;
        };
        if found.iter().all(Option::is_some) {
            return Ok(Located {
                dir,
                files: found.into_iter().flatten().collect(),
            });
        }
        let missing: Vec<String> = name
            .files()
            .iter()
            .zip(&found)
            .filter(|(_, p)| p.is_none())
            .map(|(f, _)| format!("{f}[.gz]"))
            .collect();
        searched.push((dir, format!("missing {}", missing.join(", "))));
    }
    Err(Error::NotFound {
        dataset: name.to_string(),
        searched,
        fetch_command: name.fetch_command(),
    })
}

/// The manifest entry files of `name` are verified against: from
/// `options.manifest`, else the built-in manifest when `verify` is on.
/// `Ok(None)` when verification is off or the manifest has no entry.
pub(crate) fn manifest_entry(
    name: DatasetName,
    options: &LoadOptions,
    verify: bool,
) -> Result<Option<&DatasetEntry>> {
    let manifest = match &options.manifest {
        Some(m) => Some(m),
        None if verify => Some(Manifest::builtin()?),
        None => None,
    };
    Ok(manifest.and_then(|m| m.dataset(name.manifest_name()).ok()))
}

/// Runs `f` on every item in its own scoped thread; results in input order.
/// A panic in `f` (a bug, never bad input) is resumed on the caller.
pub(crate) fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items.iter().map(|x| s.spawn(move || f(x))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
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
            verify_file(
                path,
                id,
                &payload,
                disk.as_deref(),
                entry,
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
    par_map(files, read_one).into_iter().collect()
}

fn keep<T>(r: Result<T>, problems: &mut Vec<Error>) -> Option<T> {
    r.map_err(|e| problems.push(e)).ok()
}

/// Parses an IDX image file and its label file (each when present) and
/// pairs them; every problem goes to `problems`.
fn idx_pair(
    images: Option<&[u8]>,
    labels: Option<&[u8]>,
    (ip, lp): (&Path, &Path),
    problems: &mut Vec<Error>,
) -> Option<Dataset> {
    let images = images.and_then(|b| keep(parse_idx_images(b, ip), problems));
    let labels = labels.and_then(|b| keep(parse_idx_labels(b, lp), problems));
    keep(idx_dataset(images?, labels?, 10, ip, lp), problems)
}

/// Parses the payloads of `name`'s files (one per [`DatasetName::files`],
/// in that order; `None` for a file that is absent or unreadable) into its
/// train and test splits. `paths` (same order) label errors. Every problem
/// found is pushed onto `problems` and parsing goes on with the other files,
/// so a caller can report them all; a split is `None` when one of its files
/// is absent or has a problem.
pub(crate) fn assemble(
    name: DatasetName,
    payloads: &[Option<Vec<u8>>],
    paths: &[PathBuf],
    cifar100_labels: Cifar100Labels,
    problems: &mut Vec<Error>,
) -> (Option<Dataset>, Option<Dataset>) {
    let p = |i: usize| payloads.get(i).and_then(Option::as_deref);
    let path = |i: usize| {
        paths
            .get(i)
            .map_or(Path::new(name.files()[i]), PathBuf::as_path)
    };
    match name {
        DatasetName::Mnist | DatasetName::FashionMnist => (
            idx_pair(p(0), p(1), (path(0), path(1)), problems),
            idx_pair(p(2), p(3), (path(2), path(3)), problems),
        ),
        DatasetName::MnistTestSplit => {
            let Some(all) = idx_pair(p(0), p(1), (path(0), path(1)), problems) else {
                return (None, None);
            };
            if all.len() < MNIST_TEST_SPLIT_TRAIN {
                problems.push(Error::invalid(format!(
                    "{} holds {} images, fewer than the {MNIST_TEST_SPLIT_TRAIN} of the split's train part",
                    path(0).display(),
                    all.len()
                )));
                return (None, None);
            }
            keep(all.split_at(MNIST_TEST_SPLIT_TRAIN), problems)
                .map_or((None, None), |(train, test)| (Some(train), Some(test)))
        }
        DatasetName::Cifar10 => {
            let last = name.files().len() - 1;
            let total: usize = (0..last).filter_map(p).map(<[u8]>::len).sum();
            let mut images = Vec::with_capacity(total / CIFAR10_RECORD * CIFAR_PIXELS);
            let mut labels = Vec::with_capacity(total / CIFAR10_RECORD);
            let mut complete = true;
            for i in 0..last {
                complete &= p(i).is_some_and(|bytes| {
                    keep(
                        append_cifar10(bytes, path(i), &mut images, &mut labels),
                        problems,
                    )
                    .is_some()
                });
            }
            let train =
                complete.then(|| Dataset::from_parts_unchecked(images, labels, CIFAR_SHAPE, 10));
            let test = p(last).and_then(|b| keep(parse_cifar10(b, path(last)), problems));
            (train, test)
        }
        DatasetName::Cifar100 => {
            let mut part = |i: usize| {
                p(i).and_then(|b| keep(parse_cifar100(b, path(i)), problems))
                    .map(|c| c.into_dataset(cifar100_labels))
            };
            let train = part(0);
            (train, part(1))
        }
        DatasetName::TinyImagenet => {
            problems.push(Error::invalid(
                "tiny-imagenet is a directory of JPEGs, read by tiny_imagenet::read_tiny_imagenet",
            ));
            (None, None)
        }
    }
}

/// Loads a named dataset: locates its files ([`locate`]), reads and
/// decompresses them, verifies them against the manifest unless
/// `options.verify` is off, and parses them.
pub fn load(name: DatasetName, options: &LoadOptions) -> Result<TrainTest> {
    let located = locate(name, options)?;
    if name == DatasetName::TinyImagenet {
        return load_tiny_imagenet(located);
    }
    let entry = manifest_entry(name, options, options.verify)?;
    let (payloads, files): (Vec<_>, Vec<_>) = read_all(&located.files, entry, options)?
        .into_iter()
        .map(|(payload, report)| (Some(payload), report))
        .unzip();
    let mut problems = Vec::new();
    let splits = assemble(
        name,
        &payloads,
        &located.files,
        options.cifar100_labels,
        &mut problems,
    );
    drop(payloads);
    if let Some(first) = problems.into_iter().next() {
        return Err(first);
    }
    match splits {
        (Some(train), Some(test)) => Ok(TrainTest {
            train,
            test,
            source: located.dir,
            files,
        }),
        _ => Err(Error::invalid(format!(
            "{name}: the files in {} did not yield both splits",
            located.dir.display()
        ))),
    }
}

/// Tiny ImageNet from the directory holding its `wnids.txt`: the layout is
/// checked file by file (every listed image must exist and decode); no
/// per-image checksum is published, so its files report
/// [`Verification::Unpinned`] (the manifest pins the archive's MD5, checked
/// by `cargo xtask fetch-data tiny-imagenet`).
fn load_tiny_imagenet(located: Located) -> Result<TrainTest> {
    let t = read_tiny_imagenet(&located.dir, true)?;
    Ok(TrainTest {
        train: t.train,
        test: t.test,
        files: located
            .files
            .iter()
            .map(|p| FileReport {
                path: p.clone(),
                verification: Verification::Unpinned,
            })
            .collect(),
        source: located.dir,
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
        // --data-dir first, then the repository's shipped copy before any
        // other default; nothing beside the repository is searched.
        assert_eq!(mnist[0], Path::new("/nonexistent/root/mnist-test"));
        let shipped = repo_datasets_dir().join("mnist-test");
        let first_default = mnist
            .iter()
            .position(|p| !p.starts_with("/nonexistent/root"))
            .unwrap();
        assert_eq!(mnist[first_default], shipped);
        assert!(!mnist.iter().any(|p| p.ends_with("shared/data/mnist-test")));
        let defaults = search_locations(DatasetName::MnistTestSplit, &LoadOptions::default());
        assert_eq!(defaults[0], shipped);
        let only = LoadOptions {
            search_defaults: false,
            ..opts
        };
        assert_eq!(search_locations(DatasetName::Cifar100, &only).len(), 4);
    }
}
