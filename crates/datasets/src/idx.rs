//! The IDX format of MNIST and Fashion-MNIST.
//!
//! MNIST comes from <http://yann.lecun.com/exdb/mnist/> (torchvision mirrors
//! it at `https://ossci-datasets.s3.amazonaws.com/mnist/`), Fashion-MNIST from
//! <https://github.com/zalandoresearch/fashion-mnist> (Debian packages it as
//! `dataset-fashion-mnist`). Both ship `train-images-idx3-ubyte.gz`,
//! `train-labels-idx1-ubyte.gz`, `t10k-images-idx3-ubyte.gz` and
//! `t10k-labels-idx1-ubyte.gz` (60,000 train / 10,000 test 28x28 images).
//!
//! An IDX file is a big-endian header — two zero bytes, an element-type byte
//! (`0x08` = unsigned byte, the only type these datasets use), the number of
//! dimensions, then one `u32` per dimension — followed by the elements in
//! row-major order. Images are `idx3-ubyte` (`[count, rows, cols]`, magic
//! `0x00000803`), labels `idx1-ubyte` (`[count]`, magic `0x00000801`). Files
//! may be gzip-compressed (`*.gz`), as distributed.
//!
//! Every header field is checked against the actual byte length before
//! anything is allocated from it.

use crate::dataset::{Dataset, ImageShape};
use crate::error::{Error, Result};
use crate::io::read_maybe_gz;
use std::path::Path;

/// Magic number of an `idx3-ubyte` image file.
pub const IDX3_UBYTE_MAGIC: u32 = 0x0000_0803;
/// Magic number of an `idx1-ubyte` label file.
pub const IDX1_UBYTE_MAGIC: u32 = 0x0000_0801;

/// The contents of an `idx3-ubyte` image file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count * rows * cols` pixels, row-major.
    pub pixels: Vec<u8>,
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Checks magic and header length; returns the dimension sizes.
fn parse_header(bytes: &[u8], file: &Path, magic: u32, dims: usize) -> Result<Vec<usize>> {
    let header = 4 + 4 * dims;
    if bytes.len() < 4 {
        return Err(Error::Truncated {
            file: file.into(),
            offset: 0,
            what: "IDX magic number",
            expected: 4,
            actual: bytes.len() as u64,
        });
    }
    let found = be_u32(bytes, 0);
    if found != magic {
        let hint = if bytes[..2] == [0x1f, 0x8b] {
            " (gzip data: name the file *.gz)"
        } else {
            ""
        };
        return Err(Error::BadMagic {
            file: file.into(),
            offset: 0,
            expected: format!("{magic:#010x} (idx{dims}-ubyte)"),
            found: format!("{found:#010x}{hint}"),
        });
    }
    if bytes.len() < header {
        return Err(Error::Truncated {
            file: file.into(),
            offset: 4,
            what: "IDX dimension sizes",
            expected: 4 * dims as u64,
            actual: bytes.len() as u64 - 4,
        });
    }
    Ok((0..dims)
        .map(|d| be_u32(bytes, 4 + 4 * d) as usize)
        .collect())
}

/// Checks that exactly `needed` bytes follow the header at `offset`.
fn check_body(
    bytes: &[u8],
    file: &Path,
    offset: usize,
    needed: usize,
    what: &'static str,
) -> Result<()> {
    let actual = bytes.len() - offset;
    if actual < needed {
        return Err(Error::Truncated {
            file: file.into(),
            offset: offset as u64,
            what,
            expected: needed as u64,
            actual: actual as u64,
        });
    }
    if actual > needed {
        return Err(Error::TrailingBytes {
            file: file.into(),
            offset: (offset + needed) as u64,
            extra: (actual - needed) as u64,
        });
    }
    Ok(())
}

/// Parses an uncompressed `idx3-ubyte` image file held in memory. `file`
/// labels errors.
pub fn parse_idx_images(bytes: &[u8], file: impl AsRef<Path>) -> Result<IdxImages> {
    let file = file.as_ref();
    let d = parse_header(bytes, file, IDX3_UBYTE_MAGIC, 3)?;
    let (count, rows, cols) = (d[0], d[1], d[2]);
    for (i, (name, v)) in [("rows", rows), ("cols", cols)].into_iter().enumerate() {
        if v == 0 {
            return Err(Error::BadHeader {
                file: file.into(),
                offset: 8 + 4 * i as u64,
                message: format!("{name} = 0, expected at least 1"),
            });
        }
    }
    let needed = count
        .checked_mul(rows)
        .and_then(|v| v.checked_mul(cols))
        .ok_or_else(|| Error::BadHeader {
            file: file.into(),
            offset: 4,
            message: format!("{count} x {rows} x {cols} pixels overflows"),
        })?;
    check_body(bytes, file, 16, needed, "pixel data")?;
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels: bytes[16..].to_vec(),
    })
}

/// Parses an uncompressed `idx1-ubyte` label file held in memory. `file`
/// labels errors. Label values are checked against a class count by
/// [`idx_dataset`].
pub fn parse_idx_labels(bytes: &[u8], file: impl AsRef<Path>) -> Result<Vec<u8>> {
    let file = file.as_ref();
    let d = parse_header(bytes, file, IDX1_UBYTE_MAGIC, 1)?;
    check_body(bytes, file, 8, d[0], "label data")?;
    Ok(bytes[8..].to_vec())
}

/// Reads an `idx3-ubyte` image file (raw, or gzip when named `*.gz`).
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<IdxImages> {
    let path = path.as_ref();
    parse_idx_images(&read_maybe_gz(path)?, path)
}

/// Reads an `idx1-ubyte` label file (raw, or gzip when named `*.gz`).
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    parse_idx_labels(&read_maybe_gz(path)?, path)
}

/// Pairs parsed images and labels into a one-channel [`Dataset`], checking
/// the counts agree and every label is below `num_classes`. The file names
/// label errors (a bad label is reported at its byte offset in the label
/// file).
pub fn idx_dataset(
    images: IdxImages,
    labels: Vec<u8>,
    num_classes: usize,
    images_file: impl AsRef<Path>,
    labels_file: impl AsRef<Path>,
) -> Result<Dataset> {
    if images.count != labels.len() {
        return Err(Error::CountMismatch {
            images_file: images_file.as_ref().into(),
            labels_file: labels_file.as_ref().into(),
            images: images.count,
            labels: labels.len(),
        });
    }
    check_labels(&labels, num_classes, labels_file.as_ref(), 8, 1)?;
    let shape = ImageShape::new(1, images.rows, images.cols);
    Ok(Dataset::from_parts_unchecked(
        images.pixels,
        labels,
        shape,
        num_classes,
    ))
}

/// Parses an image file and a label file held in memory (both
/// uncompressed) into a [`Dataset`] — the entry point for fuzzing the whole
/// IDX path.
pub fn parse_idx_dataset(
    images: &[u8],
    labels: &[u8],
    num_classes: usize,
    images_file: impl AsRef<Path>,
    labels_file: impl AsRef<Path>,
) -> Result<Dataset> {
    let i = parse_idx_images(images, images_file.as_ref())?;
    let l = parse_idx_labels(labels, labels_file.as_ref())?;
    idx_dataset(i, l, num_classes, images_file, labels_file)
}

/// Errors with the first label `>= classes`, reporting its byte offset
/// (`base + index * stride`).
pub(crate) fn check_labels(
    labels: &[u8],
    classes: usize,
    file: &Path,
    base: u64,
    stride: u64,
) -> Result<()> {
    match labels.iter().position(|&l| usize::from(l) >= classes) {
        None => Ok(()),
        Some(i) => Err(Error::LabelOutOfRange {
            file: file.into(),
            offset: base + i as u64 * stride,
            label: u32::from(labels[i]),
            classes,
        }),
    }
}

/// Serialises images in `idx3-ubyte` format (uncompressed); handy for tests
/// and for exporting subsets.
pub fn encode_idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + pixels.len());
    for v in [IDX3_UBYTE_MAGIC, count, rows, cols] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// Serialises labels in `idx1-ubyte` format (uncompressed).
pub fn encode_idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    out.extend_from_slice(&IDX1_UBYTE_MAGIC.to_be_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let px: Vec<u8> = (0..2 * 3 * 4).map(|v| v as u8).collect();
        let img = parse_idx_images(&encode_idx_images(2, 3, 4, &px), "i").unwrap();
        assert_eq!((img.count, img.rows, img.cols), (2, 3, 4));
        assert_eq!(img.pixels, px);
        let lab = parse_idx_labels(&encode_idx_labels(&[3, 9]), "l").unwrap();
        let d = idx_dataset(img, lab, 10, "i", "l").unwrap();
        assert_eq!(d.shape(), ImageShape::new(1, 3, 4));
        assert_eq!(d.labels(), &[3, 9]);
    }

    #[test]
    fn typed_errors() {
        let px = vec![0u8; 24];
        let good = encode_idx_images(2, 3, 4, &px);
        let e = |b: &[u8]| parse_idx_images(b, "f").unwrap_err();
        assert!(matches!(e(&good[..2]), Error::Truncated { offset: 0, .. }));
        assert!(matches!(e(&good[..10]), Error::Truncated { offset: 4, .. }));
        assert!(matches!(
            e(&good[..30]),
            Error::Truncated {
                offset: 16,
                expected: 24,
                actual: 14,
                ..
            }
        ));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            e(&long),
            Error::TrailingBytes {
                offset: 40,
                extra: 1,
                ..
            }
        ));
        let mut magic = good.clone();
        magic[3] = 1;
        assert!(matches!(e(&magic), Error::BadMagic { .. }));
        let huge = encode_idx_images(u32::MAX, u32::MAX, u32::MAX, &px);
        assert!(matches!(
            e(&huge),
            Error::BadHeader { .. } | Error::Truncated { .. }
        ));
        let zero = encode_idx_images(2, 0, 4, &[]);
        assert!(matches!(e(&zero), Error::BadHeader { offset: 8, .. }));
        // Labels: count mismatch and range.
        let img = parse_idx_images(&good, "i").unwrap();
        let lab = parse_idx_labels(&encode_idx_labels(&[1]), "l").unwrap();
        assert!(matches!(
            idx_dataset(img.clone(), lab, 10, "i", "l"),
            Err(Error::CountMismatch {
                images: 2,
                labels: 1,
                ..
            })
        ));
        let lab = parse_idx_labels(&encode_idx_labels(&[1, 10]), "l").unwrap();
        let err = idx_dataset(img, lab, 10, "i", "l").unwrap_err();
        assert!(matches!(
            err,
            Error::LabelOutOfRange {
                offset: 9,
                label: 10,
                classes: 10,
                ..
            }
        ));
        assert!(err.to_string().contains("byte 9"), "{err}");
    }
}
