//! Fuzzes an image file and a label file together (count and range checks).
//! The input is split at a position given by its first two bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use noprop_datasets::idx::parse_idx_dataset;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let split = usize::from(u16::from_le_bytes([data[0], data[1]])).min(data.len() - 2);
    let (images, labels) = data[2..].split_at(split);
    if let Ok(d) = parse_idx_dataset(images, labels, 10, "images", "labels") {
        assert_eq!(d.images().len(), d.len() * d.shape().len());
        assert!(d.labels().iter().all(|&l| l < 10));
    }
});
