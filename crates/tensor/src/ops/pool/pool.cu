// 2×2 max-pooling, stride 2, floor rounding, with argmax indices
// (CPU: ops/pool.rs).

// One thread per output. Window order (0,0), (0,1), (1,0), (1,1); the first
// maximum wins and a NaN wins over numbers, exactly as on the CPU. idx holds
// iy·W + ix inside the H×W plane.
extern "C" __global__ void max_pool2_fwd_f32(const float* x, float* y, unsigned int* idx,
                                             unsigned int planes, unsigned int h,
                                             unsigned int w) {
    unsigned int oh = h / 2, ow = w / 2;
    unsigned int total = planes * oh * ow;
    NP_FOR(i, total) {
        unsigned int ox = i % ow, oy = (i / ow) % oh, pl = i / (ow * oh);
        const float* plane = x + (size_t)pl * h * w;
        unsigned int base = 2 * oy * w + 2 * ox;
        unsigned int off[4] = {0u, 1u, w, w + 1u};
        float bv = plane[base];
        unsigned int bi = 0;
        for (int k = 1; k < 4; ++k) {
            float v = plane[base + off[k]];
            if (v > bv || (isnan(v) && !isnan(bv))) {
                bv = v;
                bi = off[k];
            }
        }
        y[i] = bv;
        idx[i] = base + bi;
    }
}

// dx must be zeroed; windows do not overlap, so each input receives at most
// one gradient: plain stores, no atomics.
extern "C" __global__ void max_pool2_bwd_f32(const float* dy, const unsigned int* idx,
                                             float* dx, unsigned int planes, unsigned int h,
                                             unsigned int w) {
    unsigned int p = (h / 2) * (w / 2);
    unsigned int total = planes * p;
    NP_FOR(i, total) {
        unsigned int pl = i / p;
        unsigned int k = idx[i];
        if (k < h * w) dx[(size_t)pl * h * w + k] += dy[i];
    }
}
