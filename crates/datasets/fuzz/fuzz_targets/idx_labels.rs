//! Fuzzes the `idx1-ubyte` label parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use noprop_datasets::idx::parse_idx_labels;

fuzz_target!(|data: &[u8]| {
    if let Ok(labels) = parse_idx_labels(data, "fuzz") {
        assert_eq!(data.len(), 8 + labels.len());
    }
});
