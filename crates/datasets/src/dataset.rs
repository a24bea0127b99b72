//! In-memory datasets: `u8` NCHW images plus labels, statistics, subsets.

use crate::batch::{BatchOptions, Batches, SplitMix64};
use crate::error::{Error, Result};
use std::ops::Range;

/// Shape of one image: channels, height, width (the `CHW` of NCHW).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ImageShape {
    /// Number of channels (1 for MNIST, 3 for CIFAR).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl ImageShape {
    /// A shape from its three sizes.
    pub const fn new(channels: usize, height: usize, width: usize) -> Self {
        ImageShape {
            channels,
            height,
            width,
        }
    }

    /// Pixels per channel plane (`height * width`).
    pub const fn plane(&self) -> usize {
        self.height * self.width
    }

    /// Values per image (`channels * height * width`).
    pub const fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether an image of this shape holds no values.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Per-channel normalisation: `y = (x / 255 - mean[c]) / std[c]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    /// Mean of each channel, on the `[0, 1]` scale.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel, on the `[0, 1]` scale.
    pub std: Vec<f32>,
}

impl Normalization {
    /// Mean 0, std 1 for every channel: output is `x / 255` in `[0, 1]`.
    pub fn identity(channels: usize) -> Self {
        Normalization {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }
}

/// A labelled image set: `len` images of one [`ImageShape`], stored as `u8`
/// in NCHW order (image-major, then channel planes, then rows), and one label
/// per image, each below [`Dataset::num_classes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    images: Vec<u8>,
    labels: Vec<u8>,
    shape: ImageShape,
    num_classes: usize,
}

impl Dataset {
    /// Builds a dataset, checking that `images` holds exactly
    /// `labels.len()` images of `shape`, that the shape is not empty, that
    /// `1 <= num_classes <= 256` and that every label is below `num_classes`.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u8>,
        shape: ImageShape,
        num_classes: usize,
    ) -> Result<Self> {
        if shape.is_empty() {
            return Err(Error::invalid(format!("image shape {shape:?} is empty")));
        }
        if !(1..=256).contains(&num_classes) {
            return Err(Error::invalid(format!(
                "num_classes = {num_classes}, expected 1..=256 (labels are u8)"
            )));
        }
        let expected = labels.len().checked_mul(shape.len());
        if expected != Some(images.len()) {
            return Err(Error::invalid(format!(
                "{} image bytes for {} labels of shape {shape:?}: expected {}",
                images.len(),
                labels.len(),
                expected.map_or_else(|| "an overflowing size".to_string(), |e| e.to_string())
            )));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| usize::from(l) >= num_classes)
        {
            return Err(Error::invalid(format!(
                "label {l} of example {i} is not below num_classes = {num_classes}"
            )));
        }
        Ok(Dataset {
            images,
            labels,
            shape,
            num_classes,
        })
    }

    /// Internal constructor for data already validated by a parser.
    pub(crate) fn from_parts_unchecked(
        images: Vec<u8>,
        labels: Vec<u8>,
        shape: ImageShape,
        num_classes: usize,
    ) -> Self {
        debug_assert_eq!(images.len(), labels.len() * shape.len());
        Dataset {
            images,
            labels,
            shape,
            num_classes,
        }
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Shape of one image.
    pub fn shape(&self) -> ImageShape {
        self.shape
    }

    /// Number of classes; every label is below it.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// All pixels, NCHW, `len() * shape().len()` bytes.
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// The pixels of image `i` (CHW).
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.shape.len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The label of example `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    /// Splits into `(images, labels)`.
    pub fn into_parts(self) -> (Vec<u8>, Vec<u8>) {
        (self.images, self.labels)
    }

    /// Number of examples of each class (`num_classes()` entries).
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.num_classes];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    /// Per-channel mean and standard deviation (population) of the pixels on
    /// the `[0, 1]` scale. Compute it on the train split and pass it to
    /// [`BatchOptions::normalize`] for both splits. A channel with zero
    /// variance (or an empty dataset) gets std 1 so normalising never divides
    /// by zero.
    pub fn channel_stats(&self) -> Normalization {
        let c = self.shape.channels;
        let plane = self.shape.plane();
        let mut sum = vec![0u64; c];
        let mut sum_sq = vec![0u64; c];
        // u32 partial sums over chunks small enough not to overflow
        // (CHUNK * 255^2 < 2^32); these loops vectorise well.
        const CHUNK: usize = 16_384;
        for img in self.images.chunks_exact(self.shape.len()) {
            for (ch, p) in img.chunks_exact(plane).enumerate() {
                for part in p.chunks(CHUNK) {
                    let s: u32 = part.iter().map(|&b| u32::from(b)).sum();
                    let q: u32 = part.iter().map(|&b| u32::from(b) * u32::from(b)).sum();
                    sum[ch] += u64::from(s);
                    sum_sq[ch] += u64::from(q);
                }
            }
        }
        let n = (self.len() * plane) as f64;
        let mut norm = Normalization::identity(c);
        if n == 0.0 {
            return norm;
        }
        for ch in 0..c {
            let mean = sum[ch] as f64 / n / 255.0;
            let var = (sum_sq[ch] as f64 / n / (255.0 * 255.0) - mean * mean).max(0.0);
            let std = var.sqrt();
            norm.mean[ch] = mean as f32;
            norm.std[ch] = if std > 1e-12 { std as f32 } else { 1.0 };
        }
        norm
    }

    /// A new dataset holding the examples at `indices`, in that order
    /// (repeats allowed). Errors if an index is out of bounds.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::invalid(format!(
                "index {bad} out of bounds for a dataset of {} examples",
                self.len()
            )));
        }
        let n = self.shape.len();
        let mut images = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Ok(Dataset::from_parts_unchecked(
            images,
            labels,
            self.shape,
            self.num_classes,
        ))
    }

    /// A new dataset holding the contiguous examples `range`.
    pub fn slice(&self, range: Range<usize>) -> Result<Dataset> {
        if range.start > range.end || range.end > self.len() {
            return Err(Error::invalid(format!(
                "range {range:?} out of bounds for a dataset of {} examples",
                self.len()
            )));
        }
        let n = self.shape.len();
        Ok(Dataset::from_parts_unchecked(
            self.images[range.start * n..range.end * n].to_vec(),
            self.labels[range.clone()].to_vec(),
            self.shape,
            self.num_classes,
        ))
    }

    /// Splits into the first `n` examples and the rest (for instance the
    /// 8,000 / 2,000 split of the MNIST test set used by the learning tests).
    pub fn split_at(&self, n: usize) -> Result<(Dataset, Dataset)> {
        if n > self.len() {
            return Err(Error::invalid(format!(
                "split at {n} past the end of a dataset of {} examples",
                self.len()
            )));
        }
        Ok((self.slice(0..n)?, self.slice(n..self.len())?))
    }

    /// Indices of a class-balanced selection of `per_class` examples of every
    /// class, returned in increasing order. With `seed = None` the first
    /// `per_class` examples of each class are taken; with `Some(seed)` a
    /// seeded random choice (SplitMix64, stable across versions). Errors if a
    /// class has fewer than `per_class` examples.
    pub fn class_balanced_indices(
        &self,
        per_class: usize,
        seed: Option<u64>,
    ) -> Result<Vec<usize>> {
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); self.num_classes];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[usize::from(l)].push(i);
        }
        let mut out = Vec::with_capacity(per_class * self.num_classes);
        for (class, members) in by_class.iter_mut().enumerate() {
            if members.len() < per_class {
                return Err(Error::invalid(format!(
                    "class {class} has {} examples, fewer than the {per_class} requested",
                    members.len()
                )));
            }
            if let Some(seed) = seed {
                let mut rng = SplitMix64::new(SplitMix64::mix(&[seed, class as u64, 0xBA1A]));
                // Partial Fisher–Yates: the first `per_class` slots become a
                // uniform random sample.
                for k in 0..per_class {
                    let j = k + rng.below((members.len() - k) as u64) as usize;
                    members.swap(k, j);
                }
            }
            out.extend_from_slice(&members[..per_class]);
        }
        out.sort_unstable();
        Ok(out)
    }

    /// The dataset restricted to [`Dataset::class_balanced_indices`].
    pub fn class_balanced_subset(&self, per_class: usize, seed: Option<u64>) -> Result<Dataset> {
        self.subset(&self.class_balanced_indices(per_class, seed)?)
    }

    /// Mini-batches of normalised `f32` NCHW images; see [`Batches`].
    pub fn batches(&self, options: BatchOptions) -> Result<Batches<'_>> {
        Batches::new(self, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Dataset {
        // 6 images 2x1x2, labels 0,1,2,0,1,2.
        let images: Vec<u8> = (0..24).map(|v| v as u8).collect();
        Dataset::new(images, vec![0, 1, 2, 0, 1, 2], ImageShape::new(2, 1, 2), 3).unwrap()
    }

    #[test]
    fn new_validates() {
        let s = ImageShape::new(1, 2, 2);
        assert!(Dataset::new(vec![0; 8], vec![0, 1], s, 2).is_ok());
        assert!(Dataset::new(vec![0; 7], vec![0, 1], s, 2).is_err());
        assert!(Dataset::new(vec![0; 8], vec![0, 2], s, 2).is_err());
        assert!(Dataset::new(vec![0; 8], vec![0, 1], s, 0).is_err());
        assert!(Dataset::new(vec![], vec![], ImageShape::new(1, 0, 2), 2).is_err());
        assert!(Dataset::new(vec![], vec![], s, 2).unwrap().is_empty());
    }

    #[test]
    fn stats_match_naive() {
        let d = toy();
        let st = d.channel_stats();
        for ch in 0..2 {
            let vals: Vec<f64> = (0..d.len())
                .flat_map(|i| d.image(i)[ch * 2..ch * 2 + 2].to_vec())
                .map(|v| f64::from(v) / 255.0)
                .collect();
            let m = vals.iter().sum::<f64>() / vals.len() as f64;
            let v = vals.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / vals.len() as f64;
            assert!((f64::from(st.mean[ch]) - m).abs() < 1e-6);
            assert!((f64::from(st.std[ch]) - v.sqrt()).abs() < 1e-6);
        }
        let flat = Dataset::new(vec![7; 4], vec![0, 0], ImageShape::new(1, 1, 2), 1).unwrap();
        assert_eq!(flat.channel_stats().std, vec![1.0]);
    }

    #[test]
    fn subsets_and_splits() {
        let d = toy();
        let s = d.subset(&[5, 0]).unwrap();
        assert_eq!(s.labels(), &[2, 0]);
        assert_eq!(s.image(0), d.image(5));
        assert!(d.subset(&[6]).is_err());
        let (a, b) = d.split_at(4).unwrap();
        assert_eq!((a.len(), b.len()), (4, 2));
        assert_eq!(b.image(1), d.image(5));
        assert!(d.split_at(7).is_err());
        assert_eq!(d.class_counts(), vec![2, 2, 2]);
        assert_eq!(d.class_balanced_indices(1, None).unwrap(), vec![0, 1, 2]);
        let r = d.class_balanced_subset(1, Some(3)).unwrap();
        assert_eq!(r.class_counts(), vec![1, 1, 1]);
        assert_eq!(
            d.class_balanced_indices(1, Some(3)).unwrap(),
            d.class_balanced_indices(1, Some(3)).unwrap()
        );
        assert!(d.class_balanced_indices(3, None).is_err());
    }
}
