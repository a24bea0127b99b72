//! Fuzzes the CIFAR-100 binary parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use noprop_datasets::cifar::parse_cifar100;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = parse_cifar100(data, "fuzz") {
        assert_eq!(c.images.len(), c.len() * 3072);
        assert!(c.coarse.iter().all(|&l| l < 20));
        assert!(c.fine.iter().all(|&l| l < 100));
    }
});
