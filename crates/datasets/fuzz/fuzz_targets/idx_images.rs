//! Fuzzes the `idx3-ubyte` image parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use noprop_datasets::idx::parse_idx_images;

fuzz_target!(|data: &[u8]| {
    if let Ok(images) = parse_idx_images(data, "fuzz") {
        assert_eq!(
            images.pixels.len(),
            images.count * images.rows * images.cols
        );
        assert_eq!(data.len(), 16 + images.pixels.len());
    }
});
