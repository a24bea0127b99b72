//! Fuzzes the CIFAR-10 binary parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use noprop_datasets::cifar::parse_cifar10;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = parse_cifar10(data, "fuzz") {
        assert_eq!(d.images().len(), d.len() * 3072);
        assert!(d.labels().iter().all(|&l| l < 10));
    }
});
