//! Fuzzes gzip decompression followed by the IDX image parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use noprop_datasets::idx::parse_idx_images;
use noprop_datasets::io::gunzip;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(payload) = gunzip(data, Path::new("fuzz.gz"), 1 << 24) {
        let _ = parse_idx_images(&payload, "fuzz.gz");
    }
});
