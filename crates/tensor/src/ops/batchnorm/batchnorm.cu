// Batch normalisation over [N, C] or [N, C, H, W] (CPU: ops/batchnorm.rs).
// P = H·W (1 for [N, C]), M = N·P values per channel.

// One block per channel: μ = Σx/M, σ² = Σ(x − μ)²/M (biased), 1/√(σ² + ε);
// running stats r ← (1 − m)·r + m·s with the unbiased variance (PyTorch).
extern "C" __global__ void bn_stats_f32(const float* x, float* mean, float* var,
                                        float* inv_std, float* run_mean, float* run_var,
                                        unsigned int n, unsigned int c, unsigned int p,
                                        float momentum, float eps, float unbias) {
    __shared__ float sh[NP_BLOCK];
    unsigned int ci = blockIdx.x;
    unsigned int m = n * p;
    float s = 0.0f;
    for (unsigned int j = threadIdx.x; j < m; j += blockDim.x) {
        unsigned int ni = j / p, k = j % p;
        s += x[((size_t)ni * c + ci) * p + k];
    }
    float mu = np_block_sum(s, sh) / (float)m;
    float q = 0.0f;
    for (unsigned int j = threadIdx.x; j < m; j += blockDim.x) {
        unsigned int ni = j / p, k = j % p;
        float d = x[((size_t)ni * c + ci) * p + k] - mu;
        q += d * d;
    }
    float v = np_block_sum(q, sh) / (float)m;
    if (threadIdx.x == 0) {
        mean[ci] = mu;
        var[ci] = v;
        inv_std[ci] = 1.0f / sqrtf(v + eps);
        run_mean[ci] = (1.0f - momentum) * run_mean[ci] + momentum * mu;
        run_var[ci] = (1.0f - momentum) * run_var[ci] + momentum * v * unbias;
    }
}

// x̂ = (x − μ_c)/√(σ²_c + ε), y = γ_c·x̂ + β_c.
extern "C" __global__ void bn_apply_train_f32(const float* x, const float* gamma,
                                              const float* beta, const float* mean,
                                              const float* inv_std, float* y, float* x_hat,
                                              unsigned int total, unsigned int c,
                                              unsigned int p) {
    NP_FOR(i, total) {
        unsigned int ci = (i / p) % c;
        float h = (x[i] - mean[ci]) * inv_std[ci];
        x_hat[i] = h;
        y[i] = gamma[ci] * h + beta[ci];
    }
}

// Evaluation: y = (x − r_μ)·γ/√(r_σ² + ε) + β.
extern "C" __global__ void bn_eval_f32(const float* x, const float* gamma, const float* beta,
                                       const float* run_mean, const float* run_var, float* y,
                                       unsigned int total, unsigned int c, unsigned int p,
                                       float eps) {
    NP_FOR(i, total) {
        unsigned int ci = (i / p) % c;
        float scale = gamma[ci] / sqrtf(run_var[ci] + eps);
        y[i] = (x[i] - run_mean[ci]) * scale + beta[ci];
    }
}

// One block per channel: dβ = Σ dy, dγ = Σ dy·x̂.
extern "C" __global__ void bn_bwd_sums_f32(const float* dy, const float* x_hat, float* dgamma,
                                           float* dbeta, unsigned int n, unsigned int c,
                                           unsigned int p) {
    __shared__ float sh[NP_BLOCK];
    unsigned int ci = blockIdx.x;
    unsigned int m = n * p;
    float sb = 0.0f, sg = 0.0f;
    for (unsigned int j = threadIdx.x; j < m; j += blockDim.x) {
        unsigned int ni = j / p, k = j % p;
        size_t o = ((size_t)ni * c + ci) * p + k;
        sb += dy[o];
        sg += dy[o] * x_hat[o];
    }
    sb = np_block_sum(sb, sh);
    sg = np_block_sum(sg, sh);
    if (threadIdx.x == 0) {
        dbeta[ci] = sb;
        dgamma[ci] = sg;
    }
}

// dx = (γ/√(σ² + ε))·(dy − dβ/M − x̂·dγ/M).
extern "C" __global__ void bn_bwd_dx_f32(const float* dy, const float* x_hat, const float* gamma,
                                         const float* inv_std, const float* dgamma,
                                         const float* dbeta, float* dx, unsigned int total,
                                         unsigned int c, unsigned int p, float inv_m) {
    NP_FOR(i, total) {
        unsigned int ci = (i / p) % c;
        float k0 = gamma[ci] * inv_std[ci];
        dx[i] = k0 * (dy[i] - dbeta[ci] * inv_m - x_hat[i] * dgamma[ci] * inv_m);
    }
}
