// Per-row ops (CPU: ops/rows/cpu.rs). All buffers are f32, row-major; per-row
// coefficients are [B] vectors. Reductions add a row's columns in index
// order in double (one thread per row), as the host does; the products and
// sums of the element-wise kernels are rounded as on the host
// (compiled with --fmad=false).

// out[i, j] = x[i, j] * k[i]; n = rows * d.
extern "C" __global__ void scale_rows_f32(const float* x, const float* k, float* out,
                                          unsigned int n, unsigned int d) {
    NP_FOR(i, n) out[i] = x[i] * k[i / d];
}

// out[i, j] = alpha[i] * a[i, j] + beta[i] * b[i, j]; n = rows * d.
extern "C" __global__ void combine_rows_f32(const float* alpha, const float* a,
                                            const float* beta, const float* b, float* out,
                                            unsigned int n, unsigned int d) {
    NP_FOR(i, n) {
        unsigned int r = i / d;
        out[i] = alpha[r] * a[i] + beta[r] * b[i];
    }
}

// out[r] = sum_j a[r, j] * b[r, j] (mode 0) or sum_j a[r, j] (mode 1), in
// double, j in order; b is ignored in mode 1.
extern "C" __global__ void row_reduce_f32(const float* a, const float* b, float* out,
                                          unsigned int rows, unsigned int d, int mode) {
    NP_FOR(r, rows) {
        size_t base = (size_t)r * d;
        double s = 0.0;
        for (unsigned int j = 0; j < d; ++j) {
            double v = (double)a[base + j];
            s += mode == 0 ? v * (double)b[base + j] : v;
        }
        out[r] = (float)s;
    }
}

// out[r] = max(0, max_j |a[r, j]|); fmaxf skips NaN as the host's f64::max does.
extern "C" __global__ void row_max_abs_f32(const float* a, float* out, unsigned int rows,
                                           unsigned int d) {
    NP_FOR(r, rows) {
        size_t base = (size_t)r * d;
        float m = 0.0f;
        for (unsigned int j = 0; j < d; ++j) m = fmaxf(m, fabsf(a[base + j]));
        out[r] = m;
    }
}

// out[r] = the first j maximising x[r, j] (comparisons with NaN are false), as a float.
extern "C" __global__ void argmax_rows_f32(const float* x, float* out, unsigned int rows,
                                           unsigned int m) {
    NP_FOR(r, rows) {
        size_t base = (size_t)r * m;
        unsigned int best = 0;
        for (unsigned int j = 1; j < m; ++j) {
            if (x[base + j] > x[base + best]) best = j;
        }
        out[r] = (float)best;
    }
}

// out[i, y] = -(an[i] + wn[y] - 2 cross[i, y]) * k in double; n = rows * m.
extern "C" __global__ void sq_dist_scores_f32(const float* cross, const float* an,
                                              const float* wn, float* out, unsigned int n,
                                              unsigned int m, double k) {
    NP_FOR(i, n) {
        unsigned int r = i / m, y = i % m;
        double s = -((double)an[r] + (double)wn[y] - 2.0 * (double)cross[i]) * k;
        out[i] = (float)s;
    }
}

// omega_k = exp(-ln(10000) k / h).
__device__ __forceinline__ double np_time_freq(unsigned int k, unsigned int h) {
    return exp(-log(10000.0) * (double)k / (double)h);
}

// out[i, k] = sin(t_i w_k), out[i, h + k] = cos(t_i w_k); n = rows * h.
extern "C" __global__ void time_embedding_f32(const float* t, float* out, unsigned int n,
                                              unsigned int h) {
    NP_FOR(i, n) {
        unsigned int r = i / h, k = i % h;
        double a = (double)t[r] * np_time_freq(k, h);
        size_t base = (size_t)r * 2 * h;
        out[base + k] = (float)sin(a);
        out[base + h + k] = (float)cos(a);
    }
}

// dt[r] = sum_k w_k (cos(t_r w_k) dy[r, k] - sin(t_r w_k) dy[r, h + k]), k in order.
extern "C" __global__ void time_embedding_backward_f32(const float* t, const float* dy,
                                                       float* dt, unsigned int rows,
                                                       unsigned int h) {
    NP_FOR(r, rows) {
        double tv = (double)t[r], s = 0.0;
        size_t base = (size_t)r * 2 * h;
        for (unsigned int k = 0; k < h; ++k) {
            double w = np_time_freq(k, h);
            double a = tv * w;
            s += w * (cos(a) * (double)dy[base + k] - sin(a) * (double)dy[base + h + k]);
        }
        dt[r] = (float)s;
    }
}
