#!/usr/bin/env bash
# GPU check: run the prebuilt CUDA test binaries of noprop-tensor and
# noprop-models on a GPU machine — no Rust toolchain needed there — then time
# one NoProp-DT epoch on Fashion-MNIST (60k images, T = 10, batch 128,
# one-hot) with the release `noprop` binary built `--features cuda` and with
# the PyTorch peer (benches/peers/noprop_dt_torch.py --device cuda, skipped
# when python3 has no CUDA-enabled torch), and write GPU.md (docs/GPU.md in a
# checkout) with both times, their ratio and the peak device memory.
#
# Build (on any machine with Rust; no GPU or CUDA toolkit needed):
#     cargo test --release -p noprop-tensor -p noprop-models -p noprop-train --features noprop-models/cuda,noprop-train/cuda --no-run
#     cargo build --release -p noprop --features cuda
#     benches/gpu/gpu_check.sh --bundle /tmp/gpu-check   # script, binaries, peer, data
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
# `ops` runs every op test body on the CPU and on the GPU (`<body>::cpu`,
# `<body>::cuda`: values against naive references, and GPU against CPU).
# Every GPU test prints "SKIPPED" when it finds no usable GPU; here that
# is a failure (set GPU_CHECK_ALLOW_SKIP=1 to accept it, e.g. to test the
# script itself on a machine without a GPU).
set -euo pipefail

# The prebuilt test binaries this script runs (cargo names them NAME-HASH).
BINARIES=(cuda_nvrtc ops rows cuda_alloc_steady cuda_dispatch cuda_dt cuda_methods cuda_distributed)
# Fashion-MNIST (Debian's dataset-fashion-mnist), or FASHION_DIR.
FASHION_FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

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
    nb="$target/release/noprop"
    [ -x "$nb" ] || { echo "no $nb: run cargo build --release -p noprop --features cuda" >&2; exit 1; }
    cp "$nb" "$out/bin/noprop"
    echo "bundled $nb (must be built with --features cuda)"
    cp "$here/../peers/noprop_dt_torch.py" "$out/noprop_dt_torch.py"
    src_data="${FASHION_DIR:-/usr/share/datasets/fashion-mnist}"
    mkdir -p "$out/data/fashion-mnist"
    for f in "${FASHION_FILES[@]}"; do
        cp "$src_data/$f" "$out/data/fashion-mnist/$f" || { echo "no $src_data/$f (apt-get install dataset-fashion-mnist)" >&2; exit 1; }
    done
    echo "bundled Fashion-MNIST from $src_data"
    # cuda_distributed trains on the repository's MNIST test set.
    mkdir -p "$out/data/mnist-test"
    cp -r "$here/../../datasets/mnist-test/." "$out/data/mnist-test/"
    echo "bundled datasets/mnist-test"
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

# The bundle's datasets (cuda_distributed reads mnist-test) for the test binaries.
if [ -d "$here/data/mnist-test" ]; then export NOPROP_DATA="$here/data"; fi

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

# ---- one NoProp-DT epoch on Fashion-MNIST: noprop (CUDA) vs the PyTorch peer
if [ -d "$here/data/fashion-mnist" ]; then data="$here/data/fashion-mnist"; else data="${FASHION_DIR:-/usr/share/datasets/fashion-mnist}"; fi
if [ -x "$here/bin/noprop" ]; then noprop="$here/bin/noprop"; else noprop="$target/release/noprop"; fi
if [ -f "$here/noprop_dt_torch.py" ]; then peer="$here/noprop_dt_torch.py"; else peer="$here/../peers/noprop_dt_torch.py"; fi
if [ -d "$here/../../docs" ]; then report="$here/../../docs/GPU.md"; else report="$here/GPU.md"; fi
work=$(mktemp -d)
ours_json="" ; peer_json=""
if [ "${GPU_CHECK_SKIP_EPOCH:-0}" = 1 ]; then
    echo "==> epoch timings skipped (GPU_CHECK_SKIP_EPOCH=1)"
elif [ ! -x "$noprop" ]; then
    echo "FAIL: no noprop binary ($noprop)" >&2; status=1
else
    echo "==> noprop train --method noprop-dt --dataset fashion-mnist --device cuda (1 epoch, T = 10, batch 128)"
    if timeout 420 "$noprop" train --method noprop-dt --dataset fashion-mnist --data-dir "$data" \
        --embedding one-hot --epochs 1 --batch-size 128 --device cuda --seed 0 \
        --train-eval-limit 1000 --results-dir "$work" --name gpu-check 2>&1 | tee "$work/ours.log"; then
        ours_json=$(grep '^RESULT ' "$work/ours.log" | tail -1 | cut -c8-)
    fi
    [ -n "$ours_json" ] || { echo "FAIL: noprop produced no RESULT" >&2; status=1; }
    if python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        echo "==> PyTorch peer: noprop_dt_torch.py epoch --device cuda"
        peer_json=$(timeout 300 python3 "$peer" epoch --epochs 1 --batch 128 --device cuda --data-dir "$data" | tail -1) || peer_json=""
        echo "$peer_json"
    else
        echo "==> PyTorch peer skipped: python3 has no CUDA-enabled torch"
    fi
fi
OURS="$ours_json" PEER="$peer_json" REPORT="$report" python3 - <<'PY' || true
import json, os, datetime
ours = json.loads(os.environ["OURS"]) if os.environ.get("OURS") else None
peer = json.loads(os.environ["PEER"]) if os.environ.get("PEER") else None
gb = lambda b: f"{b / 1e9:.2f} GB" if b else "n/a"
lines = ["# NoProp-DT on the GPU", "",
         f"Written by `benches/gpu/gpu_check.sh` on {datetime.date.today()}: one epoch of NoProp-DT on",
         "Fashion-MNIST (60 000 images, T = 10, batch 128, one-hot embedding, `--order batch`),",
         "training time only (the per-epoch evaluation is excluded on both sides).", "",
         "| implementation | train seconds | images/s | peak device memory | test accuracy |",
         "|---|---|---|---|---|"]
if ours:
    e = ours["per_epoch"][-1]
    lines.append(f"| noprop (Rust, CUDA, {ours.get('device')}) | {e['train_seconds']:.1f} | {e['images_per_second']:.0f} | "
                 f"{gb(ours.get('peak_device_memory_bytes'))} | {ours['test_accuracy']:.4f} |")
if peer:
    lines.append(f"| PyTorch peer ({peer.get('gpu', 'cuda')}) | {peer['train_seconds']:.1f} | {peer['images_per_second']:.0f} | "
                 f"{gb(peer.get('peak_device_memory_bytes'))} | {peer['test_accuracy']:.4f} |")
lines.append("")
if ours and peer:
    r = ours["per_epoch"][-1]["train_seconds"] / peer["train_seconds"]
    lines.append(f"Ratio noprop / PyTorch train time: **{r:.2f}×** (below 1 means noprop is faster).")
elif not ours:
    lines.append("The noprop run failed or was skipped: see the script's output.")
else:
    lines.append("The PyTorch peer was skipped (no CUDA-enabled torch on the machine).")
lines += ["", "Paper, Table 3 (NoProp-DT, MNIST): 0.49 GB of GPU memory. The caching allocator's",
          "high-water mark above (`peak_device_memory_bytes`) excludes the CUDA context and cuBLAS workspace;",
          "PyTorch's figure is `torch.cuda.max_memory_reserved()`.", ""]
open(os.environ["REPORT"], "w").write("\n".join(lines))
print("\n".join(lines))
print(f"==> wrote {os.environ['REPORT']}")
PY
rm -rf "$work"

[ "$status" -eq 0 ] && echo "==> GPU check passed" || echo "==> GPU check FAILED" >&2
exit "$status"
