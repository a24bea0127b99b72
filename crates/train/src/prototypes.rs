//! The class embeddings of an image-dimension embedding (the prototype one,
//! or `dimN` with N = C·H·W) drawn as images: the initial ones above the
//! learned ones, as in Figure 3 of arXiv 2503.24322 v2 (Figure 2 of v1),
//! so a reader sees what the blocks denoise towards.
//!
//! Each embedding `u_y ∈ R^{C·H·W}` lives in the network's input space
//! (normalised pixels); it is drawn with its own min–max scaling to 0–255,
//! since learned embeddings drift from the pixel range.

use std::path::Path;

use crate::error::{Error, Result};

/// Classes per row pair of the grid (the paper shows CIFAR-10's ten in one).
pub const PER_ROW: usize = 10;

/// The grid as 8-bit RGB: `(width, height, pixels)`. Classes run left to
/// right, [`PER_ROW`] at a time; each row pair is the initial embeddings
/// above the learned ones; images are separated by 2 white pixels.
/// `initial` and `learned` are `[m, C·H·W]` row-major with `C` 1 or 3.
pub fn grid(
    initial: &[f32],
    learned: &[f32],
    classes: usize,
    image: (usize, usize, usize),
) -> Result<(u32, u32, Vec<u8>)> {
    let (c, h, w) = image;
    let d = c * h * w;
    if !(c == 1 || c == 3) || initial.len() != classes * d || learned.len() != classes * d {
        return Err(Error::config(format!(
            "prototype grid: expected two [{classes}, {d}] embeddings of {c}×{h}×{w} images \
             (1 or 3 channels), got {} and {} values",
            initial.len(),
            learned.len()
        )));
    }
    const GAP: usize = 2;
    let cols = classes.clamp(1, PER_ROW);
    let pairs = classes.div_ceil(PER_ROW).max(1);
    let (gw, gh) = (cols * (w + GAP) + GAP, pairs * 2 * (h + GAP) + GAP);
    let mut px = vec![255u8; gw * gh * 3];
    for (row_kind, weights) in [initial, learned].into_iter().enumerate() {
        for k in 0..classes {
            let u = &weights[k * d..(k + 1) * d];
            let (lo, hi) = u
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
            let x0 = GAP + (k % PER_ROW) * (w + GAP);
            let y0 = GAP + ((k / PER_ROW) * 2 + row_kind) * (h + GAP);
            for y in 0..h {
                for x in 0..w {
                    let o = ((y0 + y) * gw + x0 + x) * 3;
                    for ch in 0..3 {
                        let v = u[(ch % c) * h * w + y * w + x];
                        px[o + ch] = ((v - lo) * scale).round().clamp(0.0, 255.0) as u8;
                    }
                }
            }
        }
    }
    Ok((gw as u32, gh as u32, px))
}

/// Writes [`grid`] as a PNG at `path`.
pub fn write_png(
    path: &Path,
    initial: &[f32],
    learned: &[f32],
    classes: usize,
    image: (usize, usize, usize),
) -> Result<()> {
    let (w, h, px) = grid(initial, learned, classes, image)?;
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let as_io = |e: png::EncodingError| Error::io(path, std::io::Error::other(e.to_string()));
    let mut writer = enc.write_header().map_err(as_io)?;
    writer.write_image_data(&px).map_err(as_io)?;
    writer.finish().map_err(as_io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_places_initial_above_learned_with_min_max_scaling() {
        // 12 classes of 1×2×3 images: two row pairs of up to ten.
        let (m, img) = (12, (1, 2, 3));
        let initial: Vec<f32> = (0..m * 6).map(|i| (i % 6) as f32).collect();
        let learned: Vec<f32> = (0..m * 6).map(|i| -((i % 6) as f32)).collect();
        let (w, h, px) = grid(&initial, &learned, m, img).unwrap();
        assert_eq!((w, h), (10 * 5 + 2, 2 * 2 * 4 + 2));
        let at = |x: usize, y: usize| px[(y * w as usize + x) * 3];
        // Class 0, initial: 0 → black, 5 → white (pixel (2, 1) is value 5).
        assert_eq!((at(2, 2), at(4, 3)), (0, 255));
        // Class 0, learned, one image lower: reversed.
        assert_eq!((at(2, 6), at(4, 7)), (255, 0));
        // Class 10 starts the second row pair; the gaps stay white.
        assert_eq!(at(2, 10), 0);
        assert_eq!(at(0, 0), 255);
        // Grey images: the three channels agree.
        assert_eq!(px[(3 * w as usize + 4) * 3..][..3], [255, 255, 255]);
    }

    #[test]
    fn png_is_written_and_bad_shapes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        let u: Vec<f32> = (0..2 * 3 * 4 * 4).map(|i| i as f32).collect();
        write_png(&path, &u, &u, 2, (3, 4, 4)).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let e = grid(&u, &u[1..], 2, (3, 4, 4)).unwrap_err().to_string();
        assert!(e.contains("prototype grid"), "{e}");
    }
}
