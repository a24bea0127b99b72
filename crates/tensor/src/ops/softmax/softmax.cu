// Row-wise softmax, log-softmax, softmax backward and the fused softmax
// cross-entropy (CPU: ops/softmax.rs). One block of NP_BLOCK threads per row.

// softmax(x)_ij = exp(x_ij − max_k x_ik) / Σ_k exp(x_ik − max_k x_ik).
extern "C" __global__ void softmax_rows_f32(const float* x, float* y, unsigned int cols) {
    __shared__ float sh[NP_BLOCK];
    const float* r = x + (size_t)blockIdx.x * cols;
    float* o = y + (size_t)blockIdx.x * cols;
    float mx = NP_NEG_INF;
    for (unsigned int j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, r[j]);
    mx = np_block_max(mx, sh);
    float s = 0.0f;
    for (unsigned int j = threadIdx.x; j < cols; j += blockDim.x) s += expf(r[j] - mx);
    s = np_block_sum(s, sh);
    float inv = 1.0f / s;
    for (unsigned int j = threadIdx.x; j < cols; j += blockDim.x) o[j] = expf(r[j] - mx) * inv;
}

// log_softmax(x)_ij = x_ij − max − ln Σ_k exp(x_ik − max).
extern "C" __global__ void log_softmax_rows_f32(const float* x, float* y, unsigned int cols) {
    __shared__ float sh[NP_BLOCK];
    const float* r = x + (size_t)blockIdx.x * cols;
    float* o = y + (size_t)blockIdx.x * cols;
    float mx = NP_NEG_INF;
    for (unsigned int j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, r[j]);
    mx = np_block_max(mx, sh);
    float s = 0.0f;
    for (unsigned int j = threadIdx.x; j < cols; j += blockDim.x) s += expf(r[j] - mx);
    s = np_block_sum(s, sh);
    float lse = mx + logf(s);
    for (unsigned int j = threadIdx.x; j < cols; j += blockDim.x) o[j] = r[j] - lse;
}

// dx_ij = p_ij·(dp_ij − Σ_k dp_ik·p_ik).
extern "C" __global__ void softmax_backward_rows_f32(const float* p, const float* dp, float* dx,
                                                     unsigned int cols) {
    __shared__ float sh[NP_BLOCK];
    size_t base = (size_t)blockIdx.x * cols;
    float s = 0.0f;
    for (unsigned int j = threadIdx.x; j < cols; j += blockDim.x) s += p[base + j] * dp[base + j];
    s = np_block_sum(s, sh);
    for (unsigned int j = threadIdx.x; j < cols; j += blockDim.x)
        dx[base + j] = p[base + j] * (dp[base + j] - s);
}

// Per row i with label y_i: loss[i] = lse_i − x_i[y_i] and
// grad_ij = (softmax(x_i)_j − [j = y_i]) / B  (inv_b = 1/B).
extern "C" __global__ void softmax_xent_rows_f32(const float* x, const unsigned int* labels,
                                                 float* grad, float* loss, unsigned int cols,
                                                 float inv_b) {
    __shared__ float sh[NP_BLOCK];
    size_t base = (size_t)blockIdx.x * cols;
    unsigned int label = labels[blockIdx.x];
    float mx = NP_NEG_INF;
    for (unsigned int j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, x[base + j]);
    mx = np_block_max(mx, sh);
    float s = 0.0f;
    for (unsigned int j = threadIdx.x; j < cols; j += blockDim.x) s += expf(x[base + j] - mx);
    s = np_block_sum(s, sh);
    float lse = mx + logf(s);
    for (unsigned int j = threadIdx.x; j < cols; j += blockDim.x) {
        float g = expf(x[base + j] - lse) * inv_b;
        if (j == label) g -= inv_b;
        grad[base + j] = g;
    }
    if (threadIdx.x == 0) loss[blockIdx.x] = lse - x[base + label];
}
