#!/usr/bin/env bash
# GPU check: run the prebuilt CUDA test binaries of noprop-tensor on a GPU
# machine — no Rust toolchain needed there.
#
# Build (on any machine with Rust; no GPU or CUDA toolkit needed):
#     cargo test --release -p noprop-tensor --features cuda --no-run
#     benches/gpu/gpu_check.sh --bundle /tmp/gpu-check   # script + binaries
# Run (on the GPU machine, driver 580 / CUDA 13.0):
#     /tmp/gpu-check/gpu_check.sh
# or in a checkout whose target/ holds the build: benches/gpu/gpu_check.sh
# (`cargo xtask gpu-check` builds, then runs this script).
#
# The binaries need libcuda.so.1 (the driver), libnvrtc.so.13 and, for GEMM
# through cuBLAS, libcublas.so.13 (without it a tiled fallback kernel runs).
# NVRTC/cuBLAS from PyPI are found automatically:
#     pip install nvidia-cuda-nvrtc==13.0.88 nvidia-cublas
#
# Every parity test prints "SKIPPED" when it finds no usable GPU; here that
# is a failure (set GPU_CHECK_ALLOW_SKIP=1 to accept it, e.g. to test the
# script itself on a machine without a GPU).
set -euo pipefail

# The prebuilt test binaries this script runs (cargo names them NAME-HASH).
BINARIES=(cuda_nvrtc cuda_parity)

here="$(cd "$(dirname "$0")" && pwd)"

find_bin() { # newest executable NAME-<hash> in the given folders
    local name=$1; shift
    local d f best="" best_t=0
    for d in "$@"; do
        [ -d "$d" ] || continue
        for f in "$d/$name" "$d/$name"-*; do
            [ -f "$f" ] && [ -x "$f" ] || continue
            case "$f" in *.d) continue ;; esac
            local t; t=$(stat -c %Y "$f")
            if [ "$t" -ge "$best_t" ]; then best=$f; best_t=$t; fi
        done
    done
    [ -n "$best" ] && echo "$best"
}

target="${CARGO_TARGET_DIR:-$here/../../target}"
search=("$here/bin" "$target/release/deps")

if [ "${1:-}" = "--bundle" ]; then
    out=${2:?usage: gpu_check.sh --bundle DIR}
    mkdir -p "$out/bin"
    cp "$0" "$out/gpu_check.sh"
    for b in "${BINARIES[@]}"; do
        f=$(find_bin "$b" "${search[@]}") || { echo "no prebuilt $b: run cargo test --release -p noprop-tensor --features cuda --no-run" >&2; exit 1; }
        cp "$f" "$out/bin/$b"
        echo "bundled $f"
    done
    echo "bundle ready: $out (run $out/gpu_check.sh on the GPU machine)"
    exit 0
fi

# NVRTC / cuBLAS from pip wheels, when present.
libs=$(python3 - <<'PY' 2>/dev/null || true
import glob, os
try:
    import nvidia
except ImportError:
    raise SystemExit(0)
dirs = set()
for p in nvidia.__path__:
    for pat in ("libnvrtc.so.13", "libcublas.so.13"):
        for h in glob.glob(os.path.join(p, "**", pat), recursive=True):
            dirs.add(os.path.dirname(h))
print(":".join(sorted(dirs)))
PY
)
if [ -n "$libs" ]; then
    export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true

status=0
log=$(mktemp)
for b in "${BINARIES[@]}"; do
    f=$(find_bin "$b" "${search[@]}") || { echo "FAIL: no prebuilt $b in ${search[*]}" >&2; status=1; continue; }
    echo "==> $f"
    if ! "$f" --test-threads=1 --nocapture 2>&1 | tee "$log"; then
        echo "FAIL: $b" >&2
        status=1
    fi
    if grep -q "SKIPPED" "$log" && [ "${GPU_CHECK_ALLOW_SKIP:-0}" != 1 ]; then
        echo "FAIL: $b skipped tests (no usable GPU?)" >&2
        status=1
    fi
done
rm -f "$log"
[ "$status" -eq 0 ] && echo "==> GPU check passed" || echo "==> GPU check FAILED" >&2
exit "$status"
