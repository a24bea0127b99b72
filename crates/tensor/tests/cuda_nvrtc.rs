//! The CUDA compile check that CI runs without a GPU: every kernel file is
//! compiled by NVRTC for sm_90 (`compute_90` PTX), and every launch in
//! `src/cuda/ops.rs` is checked against the kernel it names (the kernel
//! exists, is an entry of the PTX, and takes as many arguments, pointers
//! where pointers are passed).
//!
//! Needs only `libnvrtc.so.13` (not the driver): `pip install
//! nvidia-cuda-nvrtc==13.0.88` and put `site-packages/nvidia/cu13/lib` on
//! `LD_LIBRARY_PATH` (`.ci/run` does both). Without NVRTC the test FAILS:
//! it is the check that keeps the `.cu` files compiling.
#![cfg(feature = "cuda")]

use noprop_tensor::cuda::module::{compile_ptx, full_source, kernel_sources, nvrtc_available};

const ARCH: &str = "compute_90";

#[test]
fn nvrtc_compiles_every_kernel_for_sm_90() {
    assert!(
        nvrtc_available(),
        "libnvrtc.so.13 cannot be loaded, so the CUDA kernels cannot be compile-checked.\n\
         Install it with `pip install nvidia-cuda-nvrtc==13.0.88` and add the folder holding \
         libnvrtc.so.13 to LD_LIBRARY_PATH, e.g.\n  export LD_LIBRARY_PATH=$(python3 -c \
         'import nvidia, os; print(os.path.join(nvidia.__path__[0], \"cu13\", \"lib\"))'):$LD_LIBRARY_PATH"
    );
    assert_eq!(kernel_sources().len(), 11, "one .cu file per op family");
    let mut failures = Vec::new();
    for (file, _) in kernel_sources() {
        match compile_ptx(file, Some(ARCH)) {
            Ok(ptx) => {
                let text = ptx.to_src();
                assert!(text.contains(".target sm_90"), "{file}: not sm_90 PTX");
                for name in kernels_in(full_source(file).as_deref().unwrap_or("")) {
                    assert!(
                        text.contains(&format!(".entry {name}(")),
                        "{file}: kernel {name} missing from the PTX"
                    );
                }
                eprintln!(
                    "nvrtc: {file} compiled for sm_90 ({} bytes of PTX)",
                    text.len()
                );
            }
            Err(e) => failures.push(format!("{e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "NVRTC failures:\n{}",
        failures.join("\n")
    );
}

/// `extern "C" __global__ void NAME(PARAMS)` → (NAME, PARAMS) for each kernel.
fn signatures(src: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let key = "__global__ void ";
    let mut rest = src;
    while let Some(i) = rest.find(key) {
        let after = &rest[i + key.len()..];
        let open = after.find('(').unwrap();
        let close = after.find(')').unwrap();
        let name = after[..open].trim().to_string();
        let params = after[open + 1..close]
            .split(',')
            .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|p| !p.is_empty())
            .collect();
        out.push((name, params));
        rest = &after[close..];
    }
    out
}

fn kernels_in(src: &str) -> Vec<String> {
    signatures(src).into_iter().map(|(n, _)| n).collect()
}

/// Split at top-level commas (outside parentheses).
fn split_top(s: &str) -> Vec<String> {
    let (mut depth, mut cur, mut out) = (0i32, String::new(), Vec::new());
    for ch in s.chars() {
        match ch {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

#[test]
fn nvrtc_launch_arguments_match_kernel_signatures() {
    // Launches live in `src/cuda/ops.rs` and in the op families' `cuda.rs`.
    let ops = concat!(
        include_str!("../src/cuda/ops.rs"),
        include_str!("../src/ops/rows/cuda.rs")
    );
    let mut sigs = std::collections::HashMap::new();
    for (file, _) in kernel_sources() {
        for (name, params) in signatures(&full_source(file).unwrap()) {
            sigs.insert(name, (file.to_string(), params));
        }
    }
    let mut checked = 0;
    let mut rest = ops;
    while let Some(i) = rest.find("launch!(") {
        let body_start = i + "launch!(".len();
        // Find the matching parenthesis.
        let mut depth = 1;
        let mut end = body_start;
        for (j, ch) in rest[body_start..].char_indices() {
            match ch {
                '(' => depth += 1,
                ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = body_start + j;
                break;
            }
        }
        let body = &rest[body_start..end];
        rest = &rest[end..];
        if body.contains("$file") {
            continue; // the macro definition itself
        }
        let (head, args) = body
            .split_once(';')
            .expect("launch!(dev, file, name, cfg; args)");
        let head = split_top(head);
        let file = head[1].trim_matches('"');
        let name = head[2].trim_matches('"');
        let (kfile, params) = sigs
            .get(name)
            .unwrap_or_else(|| panic!("launch of unknown kernel {name}"));
        assert_eq!(kfile, file, "{name} is launched from the wrong file");
        let args = split_top(args);
        assert_eq!(
            args.len(),
            params.len(),
            "{name}: {} arguments for {} parameters ({args:?} vs {params:?})",
            args.len(),
            params.len()
        );
        for (a, p) in args.iter().zip(params) {
            let is_ptr = p.contains('*');
            let passes_value = a.starts_with('&');
            assert_eq!(
                is_ptr, !passes_value,
                "{name}: argument `{a}` for parameter `{p}`"
            );
        }
        checked += 1;
    }
    assert!(checked > 30, "only {checked} launches found");
    eprintln!("nvrtc: {checked} launches match their kernel signatures");
}
