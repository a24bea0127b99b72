// Shape manipulation (CPU: ops/shape.rs).

// dst[r, dst_off + j] = src[r, src_off + j] for j < width: one part of a
// column concatenation (src_off = 0) or split (dst_off = 0).
extern "C" __global__ void copy_cols_f32(const float* src, float* dst, unsigned int rows,
                                         unsigned int src_cols, unsigned int dst_cols,
                                         unsigned int src_off, unsigned int dst_off,
                                         unsigned int width) {
    unsigned int total = rows * width;
    NP_FOR(i, total) {
        unsigned int r = i / width, j = i % width;
        dst[(size_t)r * dst_cols + dst_off + j] = src[(size_t)r * src_cols + src_off + j];
    }
}

// out[i, :] = table[idx[i], :].
extern "C" __global__ void gather_rows_f32(const float* table, const unsigned int* idx,
                                           float* out, unsigned int rows, unsigned int d) {
    unsigned int total = rows * d;
    NP_FOR(i, total) {
        unsigned int r = i / d, j = i % d;
        out[i] = table[(size_t)idx[r] * d + j];
    }
}

// out[k, :] = Σ_{i: idx[i] = k} src[i, :], rows added in batch order (as the
// CPU does); one thread per output element, no atomics.
extern "C" __global__ void scatter_add_rows_f32(const float* src, const unsigned int* idx,
                                                float* out, unsigned int b, unsigned int m,
                                                unsigned int d) {
    unsigned int total = m * d;
    NP_FOR(o, total) {
        unsigned int k = o / d, j = o % d;
        float acc = 0.0f;
        for (unsigned int i = 0; i < b; ++i)
            if (idx[i] == k) acc += src[(size_t)i * d + j];
        out[o] = acc;
    }
}

// out[j, i] = x[i, j] for a [R, C] matrix, through a 32×33 shared tile
// (coalesced reads and writes). Grid (ceil(C/32), ceil(R/32)), block (32, 8).
extern "C" __global__ void transpose2d_f32(const float* x, float* out, unsigned int r,
                                           unsigned int c) {
    __shared__ float tile[32][33];
    unsigned int bx = blockIdx.x * 32, by = blockIdx.y * 32;
    for (unsigned int k = threadIdx.y; k < 32; k += 8) {
        unsigned int i = by + k, j = bx + threadIdx.x;
        if (i < r && j < c) tile[k][threadIdx.x] = x[(size_t)i * c + j];
    }
    __syncthreads();
    for (unsigned int k = threadIdx.y; k < 32; k += 8) {
        unsigned int j = bx + k, i = by + threadIdx.x;
        if (i < r && j < c) out[(size_t)j * r + i] = tile[threadIdx.x][k];
    }
}
