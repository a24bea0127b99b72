// GEMM epilogues and a fallback GEMM (CPU: ops/gemm.rs, ops/elementwise.rs).
// The main GEMM runs in cuBLAS; `gemm_tiled_f32` is only used when the
// cuBLAS library cannot be loaded.

#define TILE 16

// c[m, n] (+)= op(A)[m, k] · op(B)[k, n] with arbitrary element strides:
// op(A)[i, l] = a[i * a_rs + l * a_cs], op(B)[l, j] = b[l * b_rs + j * b_cs].
// 16×16 shared-memory tiles; grid (ceil(n/16), ceil(m/16)).
extern "C" __global__ void gemm_tiled_f32(const float* a, const float* b, float* c,
                                          unsigned int m, unsigned int n, unsigned int k,
                                          unsigned int a_rs, unsigned int a_cs,
                                          unsigned int b_rs, unsigned int b_cs,
                                          int accumulate) {
    __shared__ float ta[TILE][TILE + 1];
    __shared__ float tb[TILE][TILE + 1];
    unsigned int row = blockIdx.y * TILE + threadIdx.y;
    unsigned int col = blockIdx.x * TILE + threadIdx.x;
    float acc = 0.0f;
    for (unsigned int l0 = 0; l0 < k; l0 += TILE) {
        unsigned int la = l0 + threadIdx.x;
        unsigned int lb = l0 + threadIdx.y;
        ta[threadIdx.y][threadIdx.x] =
            (row < m && la < k) ? a[(size_t)row * a_rs + (size_t)la * a_cs] : 0.0f;
        tb[threadIdx.y][threadIdx.x] =
            (lb < k && col < n) ? b[(size_t)lb * b_rs + (size_t)col * b_cs] : 0.0f;
        __syncthreads();
#pragma unroll
        for (int l = 0; l < TILE; ++l) acc += ta[threadIdx.y][l] * tb[l][threadIdx.x];
        __syncthreads();
    }
    if (row < m && col < n) {
        size_t o = (size_t)row * n + col;
        c[o] = accumulate ? c[o] + acc : acc;
    }
}

// Linear epilogue: y[i, j] = y[i, j] + bias[j], then ReLU when `relu`.
extern "C" __global__ void bias_rows_f32(float* y, const float* bias, unsigned int rows,
                                         unsigned int cols, int relu) {
    unsigned int total = rows * cols;
    NP_FOR(i, total) {
        float s = y[i] + bias[i % cols];
        y[i] = (relu && s < 0.0f) ? 0.0f : s;
    }
}
