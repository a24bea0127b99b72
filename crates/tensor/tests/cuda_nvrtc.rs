//! The CUDA compile check that CI runs without a GPU: every kernel file is
//! compiled by NVRTC for sm_90 (`compute_90` PTX), and every `launch!` in
//! the op families' `src/ops/<family>/cuda.rs` is checked against the
//! kernel it names (the kernel exists in the file the launch names, is an
//! entry of the PTX, and takes as many arguments, pointers where pointers
//! are passed). The families are read from `src/ops/*/cuda.rs`, and each
//! must launch at least one kernel.
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
    let families = families();
    assert_eq!(
        kernel_sources().len(),
        families.len(),
        "one .cu file per op family ({families:?})"
    );
    for (family, _) in &families {
        let file = format!("{family}.cu");
        assert!(
            kernel_sources().iter().any(|(f, _)| *f == file),
            "src/ops/{family}/{file} is not among the compiled kernel files"
        );
    }
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

/// Every op family that has a CUDA twin: `(name, source of src/ops/NAME/cuda.rs)`,
/// read from the source tree (so a new family is checked without editing this test).
fn families() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ops");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("cuda.rs").is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let src = std::fs::read_to_string(p.join("cuda.rs")).unwrap();
            (name, src)
        })
        .collect();
    out.sort();
    assert!(
        out.len() >= 10,
        "only {} op families with a cuda.rs",
        out.len()
    );
    out
}

#[test]
fn nvrtc_launch_arguments_match_kernel_signatures() {
    let mut sigs = std::collections::HashMap::new();
    for (file, _) in kernel_sources() {
        for (name, params) in signatures(&full_source(file).unwrap()) {
            sigs.insert(name, (file.to_string(), params));
        }
    }
    let mut checked = 0;
    for (family, src) in families() {
        let n = check_launches(&family, &src, &sigs);
        assert!(n > 0, "src/ops/{family}/cuda.rs: no launch! found");
        checked += n;
    }
    assert!(checked > 30, "only {checked} launches found");
    eprintln!("nvrtc: {checked} launches match their kernel signatures");
}

/// Check every `launch!(dev, "file", "kernel", cfg; args)` of `family`'s
/// `cuda.rs` against the signatures; the number of launches checked.
fn check_launches(
    family: &str,
    src: &str,
    sigs: &std::collections::HashMap<String, (String, Vec<String>)>,
) -> usize {
    let mut checked = 0;
    let mut rest = src;
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
            .unwrap_or_else(|| panic!("{family}: launch of unknown kernel {name}"));
        assert_eq!(
            kfile, file,
            "{family}: {name} is launched from the wrong file"
        );

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
    checked
}
