//! Tiny ImageNet (`tiny-imagenet-200`, the v2 experiment of arXiv 2503.24322,
//! Table 2): 200 classes of 64×64 colour JPEGs, 500 training and 50
//! validation images per class.
//!
//! The published layout (`tiny-imagenet-200.zip`, unpacked):
//!
//! ```text
//! tiny-imagenet-200/
//!   wnids.txt                          the 200 WordNet ids, one a line (label = line index)
//!   train/<wnid>/images/<wnid>_<k>.JPEG
//!   val/images/val_<k>.JPEG
//!   val/val_annotations.txt            <file>\t<wnid>\t<x0>\t<y0>\t<x1>\t<y1>, one a line
//!   test/images/…                      unlabelled: not read
//! ```
//!
//! The labelled `val` split is the test split (as in the paper). JPEGs are
//! decoded with `zune-jpeg` to RGB (the set has a few greyscale JPEGs,
//! expanded to three channels) and stored CHW. The first load writes the
//! decoded splits to [`CACHE_FILE`] in the dataset directory (raw labels and
//! pixels after a small header, about 1.35 GB for the full set); later loads
//! read it instead of decoding ~110,000 JPEGs, as long as its fingerprint —
//! SHA-256 over `wnids.txt`, `val_annotations.txt` and every image's path and
//! size — still matches the directory. A stale, truncated or foreign cache is
//! ignored and rewritten; an unwritable directory only costs the next load a
//! decode.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::dataset::{Dataset, ImageShape};
use crate::error::{Error, Result};

/// Shape of a Tiny ImageNet image.
pub const TINY_SHAPE: ImageShape = ImageShape::new(3, 64, 64);
/// Number of classes of the published set.
pub const TINY_CLASSES: usize = 200;
/// The decoded-splits cache written in the dataset directory.
pub const CACHE_FILE: &str = "noprop-decoded-v1.bin";
const MAGIC: &[u8; 16] = b"NOPROP-TINYIMG01";

/// One labelled image file.
struct Item {
    path: PathBuf,
    label: u8,
    size: u64,
}

/// The labelled files of the layout under `root`.
struct Listing {
    classes: usize,
    train: Vec<Item>,
    val: Vec<Item>,
    fingerprint: [u8; 32],
}

fn layout(path: &Path, message: impl Into<String>) -> Error {
    Error::Layout {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read_text(path: &Path, what: &str) -> Result<String> {
    match std::fs::read(path) {
        Ok(b) => {
            String::from_utf8(b).map_err(|_| layout(path, format!("{what} is not UTF-8 text")))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(layout(
            path,
            format!("missing: the published tiny-imagenet-200 layout has {what} here"),
        )),
        Err(e) => Err(Error::io(path, e)),
    }
}

fn size_of(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| Error::io(path, e))
}

/// Lists the labelled images under `root` and fingerprints them.
fn list(root: &Path) -> Result<Listing> {
    let mut hash = Sha256::new();
    let wnids_path = root.join("wnids.txt");
    let wnids_text = read_text(&wnids_path, "wnids.txt (the class ids)")?;
    hash.update(wnids_text.as_bytes());
    let wnids: Vec<&str> = wnids_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if wnids.is_empty() || wnids.len() > 256 {
        return Err(layout(
            &wnids_path,
            format!(
                "{} class ids: expected 1 to 256 (the published set has {TINY_CLASSES})",
                wnids.len()
            ),
        ));
    }
    for (i, w) in wnids.iter().enumerate() {
        if wnids[..i].contains(w) {
            return Err(layout(&wnids_path, format!("class id {w} is listed twice")));
        }
    }
    let label_of = |w: &str| wnids.iter().position(|x| *x == w).map(|i| i as u8);

    let mut train = Vec::new();
    for (label, wnid) in wnids.iter().enumerate() {
        let dir = root.join("train").join(wnid).join("images");
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                layout(
                    &dir,
                    format!("missing: the training images of class {wnid}"),
                )
            } else {
                Error::io(&dir, e)
            }
        })?;
        let mut files: Vec<PathBuf> = Vec::new();
        for e in entries {
            let p = e.map_err(|e| Error::io(&dir, e))?.path();
            if p.extension()
                .is_some_and(|x| x.eq_ignore_ascii_case("jpeg"))
            {
                files.push(p);
            }
        }
        if files.is_empty() {
            return Err(layout(&dir, format!("no .JPEG image of class {wnid}")));
        }
        files.sort();
        for path in files {
            let size = size_of(&path)?;
            hash.update(
                path.strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .as_bytes(),
            );
            hash.update(size.to_le_bytes());
            train.push(Item {
                path,
                label: label as u8,
                size,
            });
        }
    }

    let ann_path = root.join("val").join("val_annotations.txt");
    let ann = read_text(&ann_path, "val/val_annotations.txt (the validation labels)")?;
    hash.update(ann.as_bytes());
    let mut val = Vec::new();
    for (n, line) in ann
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let mut fields = line.split('\t');
        let (Some(file), Some(wnid)) = (fields.next(), fields.next()) else {
            return Err(layout(
                &ann_path,
                format!("line {}: expected <file>\\t<wnid>\\t<box>", n + 1),
            ));
        };
        let Some(label) = label_of(wnid.trim()) else {
            return Err(layout(
                &ann_path,
                format!("line {}: class id {wnid} is not in wnids.txt", n + 1),
            ));
        };
        let file = file.trim();
        if file.is_empty() || file.contains(['/', '\\']) || file == ".." {
            return Err(layout(
                &ann_path,
                format!("line {}: bad file name {file:?}", n + 1),
            ));
        }
        let path = root.join("val").join("images").join(file);
        let size = size_of(&path).map_err(|_| {
            layout(
                &path,
                format!(
                    "missing: listed on line {} of {}",
                    n + 1,
                    ann_path.display()
                ),
            )
        })?;
        hash.update(file.as_bytes());
        hash.update(size.to_le_bytes());
        val.push(Item { path, label, size });
    }
    if val.is_empty() {
        return Err(layout(&ann_path, "no validation image is listed"));
    }
    Ok(Listing {
        classes: wnids.len(),
        train,
        val,
        fingerprint: hash.finalize().into(),
    })
}

/// Decodes one 64×64 JPEG into `out` (CHW, 3 × 64 × 64 bytes).
pub fn decode_jpeg(bytes: &[u8], file: &Path, out: &mut [u8]) -> Result<()> {
    let bad = |message: String| Error::Image {
        file: file.to_path_buf(),
        message,
    };
    let opts = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(4096)
        .set_max_height(4096);
    let mut dec = JpegDecoder::new_with_options(bytes, opts);
    let rgb = dec
        .decode()
        .map_err(|e| bad(format!("not a decodable JPEG ({e:?})")))?;
    let (w, h) = dec.dimensions().unwrap_or((0, 0));
    let (eh, ew) = (TINY_SHAPE.height, TINY_SHAPE.width);
    let plane = eh * ew;
    // Greyscale JPEGs decode to one channel whatever the requested colour
    // space: it is copied to all three.
    let channels = if (w, h) == (ew, eh) && rgb.len() % plane == 0 {
        rgb.len() / plane
    } else {
        0
    };
    if !(channels == 1 || channels == 3) {
        return Err(bad(format!(
            "{w}×{h} pixels ({} bytes decoded): expected {ew}×{eh} RGB or greyscale",
            rgb.len()
        )));
    }
    for (i, px) in rgb.chunks_exact(channels).enumerate() {
        for ch in 0..3 {
            out[ch * plane + i] = px[ch % channels];
        }
    }
    Ok(())
}

/// Decodes every item, in parallel, into one `[n, 3, 64, 64]` buffer.
fn decode_all(items: &[Item]) -> Result<Vec<u8>> {
    let per = TINY_SHAPE.len();
    let mut pixels = vec![0u8; items.len() * per];
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 16);
    let chunk = items.len().div_ceil(threads).max(1);
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .zip(pixels.chunks_mut(chunk * per))
            .map(|(its, out)| {
                s.spawn(move || -> Result<()> {
                    for (it, o) in its.iter().zip(out.chunks_exact_mut(per)) {
                        let bytes = std::fs::read(&it.path).map_err(|e| Error::io(&it.path, e))?;
                        decode_jpeg(&bytes, &it.path, o)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    results.into_iter().collect::<Result<()>>()?;
    Ok(pixels)
}

/// Train labels, train pixels, val labels, val pixels.
type Splits = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

/// Reads `root`'s cache if it is complete and matches `listing`.
fn read_cache(path: &Path, listing: &Listing) -> Option<Splits> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut header = [0u8; 16 + 32 + 4 + 8 + 8];
    f.read_exact(&mut header).ok()?;
    let u64_at = |o: usize| u64::from_le_bytes(header[o..o + 8].try_into().unwrap_or([0; 8]));
    if &header[..16] != MAGIC
        || header[16..48] != listing.fingerprint
        || u32::from_le_bytes(header[48..52].try_into().ok()?) as usize != listing.classes
        || u64_at(52) != listing.train.len() as u64
        || u64_at(60) != listing.val.len() as u64
    {
        return None;
    }
    let per = TINY_SHAPE.len();
    let (nt, nv) = (listing.train.len(), listing.val.len());
    let expected = header.len() as u64 + ((nt + nv) * (1 + per)) as u64;
    if f.metadata().ok()?.len() != expected {
        return None;
    }
    let mut take = |n: usize| -> Option<Vec<u8>> {
        let mut v = vec![0u8; n];
        f.read_exact(&mut v).ok()?;
        Some(v)
    };
    Some((take(nt)?, take(nt * per)?, take(nv)?, take(nv * per)?))
}

/// Writes the cache atomically; failures are ignored (the cache is only a
/// shortcut).
fn write_cache(path: &Path, listing: &Listing, parts: [&[u8]; 4]) {
    let tmp = path.with_extension("bin.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(MAGIC)?;
        f.write_all(&listing.fingerprint)?;
        f.write_all(&(listing.classes as u32).to_le_bytes())?;
        f.write_all(&(listing.train.len() as u64).to_le_bytes())?;
        f.write_all(&(listing.val.len() as u64).to_le_bytes())?;
        for p in parts {
            f.write_all(p)?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    if write().is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// What [`read_tiny_imagenet`] read.
#[derive(Clone, Debug)]
pub struct TinyImagenet {
    /// The `train/` split.
    pub train: Dataset,
    /// The labelled `val/` split (the test split).
    pub test: Dataset,
    /// Whether the splits came from [`CACHE_FILE`] rather than the JPEGs.
    pub from_cache: bool,
    /// Bytes of JPEG listed (train and val).
    pub jpeg_bytes: u64,
}

/// Reads the `tiny-imagenet-200` directory `root` (see the module docs):
/// from its decoded cache when that matches, else by decoding every JPEG
/// (and then writing the cache when `write_cache_file` is set). Every
/// problem is a typed error naming the file: a missing `wnids.txt`,
/// `val/val_annotations.txt` or class directory ([`Error::Layout`]), a
/// JPEG that does not decode or is not 64×64 ([`Error::Image`]).
pub fn read_tiny_imagenet(root: &Path, write_cache_file: bool) -> Result<TinyImagenet> {
    let listing = list(root)?;
    let jpeg_bytes = listing
        .train
        .iter()
        .chain(&listing.val)
        .map(|i| i.size)
        .sum();
    let cache = root.join(CACHE_FILE);
    let classes = listing.classes;
    let labels = |items: &[Item]| items.iter().map(|i| i.label).collect::<Vec<u8>>();
    let (tl, tp, vl, vp, from_cache) = match read_cache(&cache, &listing) {
        Some((tl, tp, vl, vp)) => (tl, tp, vl, vp, true),
        None => {
            let (tl, vl) = (labels(&listing.train), labels(&listing.val));
            let tp = decode_all(&listing.train)?;
            let vp = decode_all(&listing.val)?;
            if write_cache_file {
                write_cache(&cache, &listing, [&tl, &tp, &vl, &vp]);
            }
            (tl, tp, vl, vp, false)
        }
    };
    Ok(TinyImagenet {
        train: Dataset::new(tp, tl, TINY_SHAPE, classes)?,
        test: Dataset::new(vp, vl, TINY_SHAPE, classes)?,
        from_cache,
        jpeg_bytes,
    })
}
