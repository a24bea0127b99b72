//! The binary versions of CIFAR-10 and CIFAR-100.
//!
//! Files come from <https://www.cs.toronto.edu/~kriz/cifar.html> ("binary
//! version suitable for C programs"): `cifar-10-binary.tar.gz` holds
//! `cifar-10-batches-bin/data_batch_{1..5}.bin` and `test_batch.bin`, each
//! 10,000 records of 3,073 bytes — one label byte (0..10) then the 32x32
//! image as 1,024 red, 1,024 green and 1,024 blue bytes, rows top to bottom.
//! `cifar-100-binary.tar.gz` holds `cifar-100-binary/train.bin` (50,000
//! records) and `test.bin` (10,000) of 3,074 bytes: a coarse label (0..20), a
//! fine label (0..100), then the pixels in the same layout. The pixel layout
//! is already CHW, so records are copied as they are into NCHW storage.

use crate::dataset::{Dataset, ImageShape};
use crate::error::{Error, Result};
use crate::idx::check_labels;
use crate::io::read_maybe_gz;
use std::path::Path;

/// Shape of a CIFAR image.
pub const CIFAR_SHAPE: ImageShape = ImageShape::new(3, 32, 32);
/// Pixel bytes per CIFAR image.
pub const CIFAR_PIXELS: usize = 3 * 32 * 32;
/// Bytes per CIFAR-10 record (1 label + 3,072 pixels).
pub const CIFAR10_RECORD: usize = 1 + CIFAR_PIXELS;
/// Bytes per CIFAR-100 record (2 labels + 3,072 pixels).
pub const CIFAR100_RECORD: usize = 2 + CIFAR_PIXELS;
/// Number of CIFAR-100 coarse classes (superclasses).
pub const CIFAR100_COARSE_CLASSES: usize = 20;
/// Number of CIFAR-100 fine classes.
pub const CIFAR100_FINE_CLASSES: usize = 100;

/// Which CIFAR-100 label set a [`Dataset`] uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Cifar100Labels {
    /// The 100 fine classes (the default).
    #[default]
    Fine,
    /// The 20 coarse superclasses.
    Coarse,
}

/// A parsed CIFAR-100 file with both label sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cifar100 {
    /// Pixels, NCHW (`len * 3072` bytes).
    pub images: Vec<u8>,
    /// Coarse labels (below 20).
    pub coarse: Vec<u8>,
    /// Fine labels (below 100).
    pub fine: Vec<u8>,
}

impl Cifar100 {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.fine.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.fine.is_empty()
    }

    /// A [`Dataset`] labelled with the chosen label set.
    pub fn into_dataset(self, which: Cifar100Labels) -> Dataset {
        let (labels, classes) = match which {
            Cifar100Labels::Fine => (self.fine, CIFAR100_FINE_CLASSES),
            Cifar100Labels::Coarse => (self.coarse, CIFAR100_COARSE_CLASSES),
        };
        Dataset::from_parts_unchecked(self.images, labels, CIFAR_SHAPE, classes)
    }
}

/// Checks the length is a whole number of records; returns the count.
fn record_count(bytes: &[u8], file: &Path, record: usize, what: &'static str) -> Result<usize> {
    let n = bytes.len() / record;
    let rem = bytes.len() % record;
    if rem != 0 {
        return Err(Error::Truncated {
            file: file.into(),
            offset: (n * record) as u64,
            what,
            expected: record as u64,
            actual: rem as u64,
        });
    }
    Ok(n)
}

/// Appends the records of one CIFAR-10 file to `images` / `labels`.
pub(crate) fn append_cifar10(
    bytes: &[u8],
    file: &Path,
    images: &mut Vec<u8>,
    labels: &mut Vec<u8>,
) -> Result<()> {
    let n = record_count(bytes, file, CIFAR10_RECORD, "CIFAR-10 record")?;
    let first = labels.len();
    labels.reserve(n);
    images.reserve(n * CIFAR_PIXELS);
    for rec in bytes.chunks_exact(CIFAR10_RECORD) {
        labels.push(rec[0]);
        images.extend_from_slice(&rec[1..]);
    }
    check_labels(&labels[first..], 10, file, 0, CIFAR10_RECORD as u64)
}

/// Parses one uncompressed CIFAR-10 batch file held in memory. `file` labels
/// errors.
pub fn parse_cifar10(bytes: &[u8], file: impl AsRef<Path>) -> Result<Dataset> {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    append_cifar10(bytes, file.as_ref(), &mut images, &mut labels)?;
    Ok(Dataset::from_parts_unchecked(
        images,
        labels,
        CIFAR_SHAPE,
        10,
    ))
}

/// Reads and concatenates CIFAR-10 batch files in the order given (for the
/// train split: `data_batch_1.bin` .. `data_batch_5.bin`). Files named
/// `*.gz` are decompressed.
pub fn read_cifar10<P: AsRef<Path>>(paths: &[P]) -> Result<Dataset> {
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for p in paths {
        let p = p.as_ref();
        append_cifar10(&read_maybe_gz(p)?, p, &mut images, &mut labels)?;
    }
    Ok(Dataset::from_parts_unchecked(
        images,
        labels,
        CIFAR_SHAPE,
        10,
    ))
}

/// Parses one uncompressed CIFAR-100 file held in memory. `file` labels
/// errors.
pub fn parse_cifar100(bytes: &[u8], file: impl AsRef<Path>) -> Result<Cifar100> {
    let file = file.as_ref();
    let n = record_count(bytes, file, CIFAR100_RECORD, "CIFAR-100 record")?;
    let mut out = Cifar100 {
        images: Vec::with_capacity(n * CIFAR_PIXELS),
        coarse: Vec::with_capacity(n),
        fine: Vec::with_capacity(n),
    };
    for rec in bytes.chunks_exact(CIFAR100_RECORD) {
        out.coarse.push(rec[0]);
        out.fine.push(rec[1]);
        out.images.extend_from_slice(&rec[2..]);
    }
    let stride = CIFAR100_RECORD as u64;
    check_labels(&out.coarse, CIFAR100_COARSE_CLASSES, file, 0, stride)?;
    check_labels(&out.fine, CIFAR100_FINE_CLASSES, file, 1, stride)?;
    Ok(out)
}

/// Reads a CIFAR-100 file (`train.bin` or `test.bin`; `*.gz` is
/// decompressed).
pub fn read_cifar100(path: impl AsRef<Path>) -> Result<Cifar100> {
    let path = path.as_ref();
    parse_cifar100(&read_maybe_gz(path)?, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_offsets() {
        let mut rec = vec![0u8; CIFAR10_RECORD * 2];
        rec[CIFAR10_RECORD] = 10;
        let e = parse_cifar10(&rec, "b.bin").unwrap_err();
        assert!(
            matches!(
                e,
                Error::LabelOutOfRange {
                    offset: 3073,
                    label: 10,
                    ..
                }
            ),
            "{e}"
        );
        let e = parse_cifar10(&rec[..5000], "b.bin").unwrap_err();
        assert!(
            matches!(
                e,
                Error::Truncated {
                    offset: 3073,
                    actual: 1927,
                    ..
                }
            ),
            "{e}"
        );
        assert!(parse_cifar10(&[], "b.bin").unwrap().is_empty());

        let mut rec = vec![0u8; CIFAR100_RECORD * 2];
        rec[CIFAR100_RECORD + 1] = 100;
        let e = parse_cifar100(&rec, "t.bin").unwrap_err();
        assert!(
            matches!(
                e,
                Error::LabelOutOfRange {
                    offset: 3075,
                    classes: 100,
                    ..
                }
            ),
            "{e}"
        );
        rec[CIFAR100_RECORD + 1] = 99;
        rec[0] = 20;
        let e = parse_cifar100(&rec, "t.bin").unwrap_err();
        assert!(
            matches!(
                e,
                Error::LabelOutOfRange {
                    offset: 0,
                    classes: 20,
                    ..
                }
            ),
            "{e}"
        );
    }
}
