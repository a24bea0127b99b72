// Reductions (CPU: ops/reduce.rs). Whole-tensor sums are two-stage: a fixed
// grid writes one partial per block (fixed tree order), the host adds the
// partials in index order — deterministic for a given size.

// mode 0: Σ a, 1: Σ a², 2: Σ a·b (b is ignored unless mode is 2).
extern "C" __global__ void reduce_partials_f32(const float* a, const float* b, float* partials,
                                               unsigned int n, int mode) {
    __shared__ float sh[NP_BLOCK];
    float s = 0.0f;
    NP_FOR(i, n) {
        float v = a[i];
        s += mode == 0 ? v : (mode == 1 ? v * v : v * b[i]);
    }
    s = np_block_sum(s, sh);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

// Column sums of a [M, N] matrix, rows added in order (as the CPU does):
// out[j] = Σ_i x[i, j].
extern "C" __global__ void col_sums_f32(const float* x, float* out, unsigned int m,
                                        unsigned int n) {
    NP_FOR(j, n) {
        float s = 0.0f;
        for (unsigned int i = 0; i < m; ++i) s += x[(size_t)i * n + j];
        out[j] = s;
    }
}

// Row sums of a [R, K] matrix, one block per row: out[r] = Σ_k x[r, k].
extern "C" __global__ void row_sums_f32(const float* x, float* out, unsigned int k) {
    __shared__ float sh[NP_BLOCK];
    size_t base = (size_t)blockIdx.x * k;
    float s = 0.0f;
    for (unsigned int j = threadIdx.x; j < k; j += blockDim.x) s += x[base + j];
    s = np_block_sum(s, sh);
    if (threadIdx.x == 0) out[blockIdx.x] = s;
}
