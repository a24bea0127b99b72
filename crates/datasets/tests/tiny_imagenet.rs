//! Tiny ImageNet on small trees in the exact published layout, written by
//! the tests (the real archive cannot be downloaded here): found by the
//! default search under `<data dir>/tiny-imagenet-200`, decoded, cached,
//! re-decoded when the tree changes, and every bad input a named error.

use std::path::{Path, PathBuf};

use jpeg_encoder::{ColorType, Encoder};
use noprop_datasets::tiny_imagenet::{read_tiny_imagenet, CACHE_FILE};
use noprop_datasets::{check, load, DatasetName, Error, LoadOptions};

const WNIDS: [&str; 3] = ["n01443537", "n01629819", "n01641577"];

/// A solid 64×64 JPEG of colour `rgb` (grey when `grey`).
fn jpeg(rgb: [u8; 3], grey: bool, side: u16) -> Vec<u8> {
    let mut out = Vec::new();
    let n = side as usize * side as usize;
    if grey {
        Encoder::new(&mut out, 95)
            .encode(&vec![rgb[0]; n], side, side, ColorType::Luma)
            .unwrap();
    } else {
        let px: Vec<u8> = (0..n).flat_map(|_| rgb).collect();
        Encoder::new(&mut out, 95)
            .encode(&px, side, side, ColorType::Rgb)
            .unwrap();
    }
    out
}

/// The colour of image `k` of class `c`.
fn colour(c: usize, k: usize) -> [u8; 3] {
    [40 + 80 * c as u8, 200 - 30 * k as u8, 100]
}

/// `<root>/tiny-imagenet-200/` with two training images per class and one
/// validation image per class (listed in reverse class order); returns it.
fn write_tree(root: &Path) -> PathBuf {
    let dir = root.join("tiny-imagenet-200");
    std::fs::create_dir_all(dir.join("val/images")).unwrap();
    std::fs::write(dir.join("wnids.txt"), WNIDS.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("words.txt"), "n01443537\tgoldfish\n").unwrap();
    let mut ann = String::new();
    for (c, w) in WNIDS.iter().enumerate() {
        let images = dir.join("train").join(w).join("images");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::write(dir.join("train").join(w).join(format!("{w}_boxes.txt")), "").unwrap();
        for k in 0..2 {
            std::fs::write(
                images.join(format!("{w}_{k}.JPEG")),
                jpeg(colour(c, k), false, 64),
            )
            .unwrap();
        }
    }
    for (c, w) in WNIDS.iter().enumerate().rev() {
        let file = format!("val_{c}.JPEG");
        std::fs::write(
            dir.join("val/images").join(&file),
            jpeg(colour(c, 5), false, 64),
        )
        .unwrap();
        ann.push_str(&format!("{file}\t{w}\t0\t0\t63\t63\n"));
    }
    std::fs::write(dir.join("val/val_annotations.txt"), ann).unwrap();
    dir
}

fn opts(root: &Path) -> LoadOptions {
    LoadOptions {
        search_defaults: false,
        ..LoadOptions::with_data_dir(root)
    }
}

/// Mean of channel `ch` of image `i` (CHW bytes).
fn mean(images: &[u8], i: usize, ch: usize) -> f64 {
    let plane = 64 * 64;
    let o = i * 3 * plane + ch * plane;
    images[o..o + plane].iter().map(|&v| v as f64).sum::<f64>() / plane as f64
}

#[test]
fn the_published_layout_is_found_decoded_and_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tree(tmp.path());
    let data = load(DatasetName::TinyImagenet, &opts(tmp.path())).unwrap();
    assert_eq!(data.source, dir);
    assert_eq!((data.train.len(), data.test.len()), (6, 3));
    assert_eq!(data.train.num_classes(), 3);
    assert_eq!(data.train.shape().len(), 3 * 64 * 64);
    assert_eq!(data.train.labels(), [0, 0, 1, 1, 2, 2]);
    // Validation labels follow val_annotations.txt (reverse class order).
    assert_eq!(data.test.labels(), [2, 1, 0]);
    // Solid colours survive JPEG (q 95) to within a few levels, channels in RGB order.
    for (i, (c, k)) in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0), (2, 1)]
        .into_iter()
        .enumerate()
    {
        for ch in 0..3 {
            let want = colour(c, k)[ch] as f64;
            let got = mean(data.train.images(), i, ch);
            assert!(
                (got - want).abs() < 4.0,
                "image {i} channel {ch}: {got} vs {want}"
            );
        }
    }
    assert!(
        dir.join(CACHE_FILE).is_file(),
        "the first load writes the cache"
    );
    // `noprop data check` counts the splits without a spurious problem.
    let report = check(DatasetName::TinyImagenet, &opts(tmp.path()));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(
        report.splits.iter().map(|s| s.images).collect::<Vec<_>>(),
        [6, 3]
    );

    // The second read comes from the cache, with the same bytes.
    let again = read_tiny_imagenet(&dir, true).unwrap();
    assert!(again.from_cache);
    assert_eq!(again.train.images(), data.train.images());
    assert_eq!(again.test.labels(), data.test.labels());

    // A changed tree (one more training image) is decoded again.
    let extra = dir
        .join("train")
        .join(WNIDS[1])
        .join("images/n01629819_2.JPEG");
    std::fs::write(&extra, jpeg([1, 2, 3], true, 64)).unwrap();
    let changed = read_tiny_imagenet(&dir, true).unwrap();
    assert!(!changed.from_cache);
    assert_eq!(changed.train.len(), 7);
    // A greyscale JPEG becomes three equal channels.
    let grey = 4; // sorted: class 1's images 0, 1, 2 are items 2, 3, 4
    let (r, g, b) = (
        mean(changed.train.images(), grey, 0),
        mean(changed.train.images(), grey, 1),
        mean(changed.train.images(), grey, 2),
    );
    assert!((r - 1.0).abs() < 3.0 && r == g && g == b, "{r} {g} {b}");
    // A truncated cache is ignored, not trusted.
    let cache = dir.join(CACHE_FILE);
    let bytes = std::fs::read(&cache).unwrap();
    std::fs::write(&cache, &bytes[..bytes.len() - 10]).unwrap();
    assert!(!read_tiny_imagenet(&dir, false).unwrap().from_cache);
}

#[test]
fn bad_trees_are_named_errors() {
    // A corrupt JPEG: named, as a decoding error.
    let tmp = tempfile::tempdir().unwrap();
    let dir = write_tree(tmp.path());
    let bad = dir
        .join("train")
        .join(WNIDS[2])
        .join("images/n01641577_1.JPEG");
    let mut bytes = std::fs::read(&bad).unwrap();
    bytes.truncate(bytes.len() / 3);
    bytes[2..40].fill(0x5a);
    std::fs::write(&bad, &bytes).unwrap();
    let e = load(DatasetName::TinyImagenet, &opts(tmp.path())).unwrap_err();
    assert!(
        matches!(&e, Error::Image { file, .. } if *file == bad),
        "{e}"
    );
    assert!(e.to_string().contains("n01641577_1.JPEG"), "{e}");

    // Not an image at all.
    std::fs::write(&bad, b"GIF89a not a jpeg").unwrap();
    let e = read_tiny_imagenet(&dir, false).unwrap_err();
    assert!(
        matches!(&e, Error::Image { file, .. } if *file == bad),
        "{e}"
    );

    // The wrong size.
    std::fs::write(&bad, jpeg([9, 9, 9], false, 32)).unwrap();
    let e = read_tiny_imagenet(&dir, false).unwrap_err().to_string();
    assert!(e.contains("32×32") && e.contains("expected 64×64"), "{e}");
    std::fs::write(&bad, jpeg([9, 9, 9], false, 64)).unwrap();
    read_tiny_imagenet(&dir, false).unwrap();

    // The missing annotation file.
    let ann = dir.join("val/val_annotations.txt");
    let text = std::fs::read_to_string(&ann).unwrap();
    std::fs::remove_file(&ann).unwrap();
    let e = read_tiny_imagenet(&dir, false).unwrap_err();
    assert!(
        matches!(&e, Error::Layout { path, .. } if *path == ann),
        "{e}"
    );
    assert!(e.to_string().contains("missing"), "{e}");

    // An annotation naming an unknown class, or a file that is not there.
    std::fs::write(&ann, text.replace("n01443537", "n99999999")).unwrap();
    let e = read_tiny_imagenet(&dir, false).unwrap_err().to_string();
    assert!(e.contains("n99999999 is not in wnids.txt"), "{e}");
    std::fs::write(&ann, text.replace("val_0.JPEG", "val_7.JPEG")).unwrap();
    let e = read_tiny_imagenet(&dir, false).unwrap_err().to_string();
    assert!(e.contains("val_7.JPEG") && e.contains("missing"), "{e}");
    std::fs::write(&ann, &text).unwrap();

    // A class folder missing.
    let class_dir = dir.join("train").join(WNIDS[1]);
    std::fs::remove_dir_all(&class_dir).unwrap();
    let e = read_tiny_imagenet(&dir, false).unwrap_err().to_string();
    assert!(e.contains("n01629819") && e.contains("missing"), "{e}");

    // No wnids.txt: the directory is not found by the search at all.
    let e = load(
        DatasetName::TinyImagenet,
        &opts(tempfile::tempdir().unwrap().path()),
    )
    .unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("wnids.txt"), "{e}");
}
