#!/usr/bin/env python3
"""NumPy/OpenBLAS peer of `gemm-report`: time the same float32 GEMM shapes.

Prints one JSON object per line: {"shape", "impl", "seconds", "gflops"}.
Run with the thread count under test (OPENBLAS_NUM_THREADS=2). The shapes are
read from benches/src/lib.rs so the two sides cannot drift apart.
"""
import json
import os
import re
import sys
import time

import numpy as np


def shapes():
    src = open(os.path.join(os.path.dirname(__file__), "..", "src", "lib.rs")).read()
    pat = r'GemmShape\s*\{\s*label:\s*"([^"]+)",\s*m:\s*([\d\s\*]+),\s*k:\s*(\d+),\s*n:\s*(\d+),?\s*\}'
    found = re.findall(pat, src)
    if not found:
        sys.exit("gemm_numpy.py: no GemmShape found in benches/src/lib.rs")
    for label, m, k, n in found:
        prod = 1
        for f in m.split("*"):  # m is a product like 128 * 11 * 11
            prod *= int(f)
        yield label, prod, int(k), int(n)


def median_secs(reps, f):
    """Median after warm-up: at least `reps` calls and ~0.3 s of calls in all."""
    f()
    s = time.perf_counter()
    f()
    one = max(time.perf_counter() - s, 1e-7)
    reps = min(max(reps, int(0.3 / one)), 5000)
    t = []
    for _ in range(reps):
        s = time.perf_counter()
        f()
        t.append(time.perf_counter() - s)
    t.sort()
    return t[len(t) // 2]


def main():
    reps = int(os.environ.get("GEMM_REPS", "21"))
    rng = np.random.default_rng(1)
    for label, m, k, n in shapes():
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c = np.empty((m, n), dtype=np.float32)
        secs = median_secs(reps, lambda: np.matmul(a, b, out=c))
        print(json.dumps({"shape": f"{m}x{k}x{n}", "label": label, "impl": "numpy/OpenBLAS",
                          "seconds": secs, "gflops": 2 * m * n * k / secs / 1e9}))
    try:
        from threadpoolctl import threadpool_info
        info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        print(json.dumps({"blas_info": info}), file=sys.stderr)
    except ImportError:
        pass


if __name__ == "__main__":
    main()
