// Counter-based random numbers, Philox 4x32-10 (Salmon et al., SC'11), and
// dropout (CPU: philox.rs, ops/random.rs). The same function of
// (seed, stream, offset) as the CPU: counter = [block_lo, block_hi,
// stream_lo, stream_hi], key = [seed_lo, seed_hi]; element i of a fill that
// starts at block `offset` is lane i % 4 of block offset + i / 4.

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

__device__ __forceinline__ uint4 philox4x32_10(uint4 c, uint2 k) {
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k.x += PHILOX_W0;
            k.y += PHILOX_W1;
        }
        unsigned int hi0 = __umulhi(PHILOX_M0, c.x), lo0 = PHILOX_M0 * c.x;
        unsigned int hi1 = __umulhi(PHILOX_M1, c.z), lo1 = PHILOX_M1 * c.z;
        c = make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    }
    return c;
}

__device__ __forceinline__ uint4 philox_block(unsigned long long seed, unsigned long long stream,
                                              unsigned long long block) {
    uint4 c = make_uint4((unsigned int)block, (unsigned int)(block >> 32), (unsigned int)stream,
                         (unsigned int)(stream >> 32));
    uint2 k = make_uint2((unsigned int)seed, (unsigned int)(seed >> 32));
    return philox4x32_10(c, k);
}

// ((w >> 8) + 0.5) / 2^24, in (0, 1); exact in double.
__device__ __forceinline__ double open01(unsigned int w) {
    return ((double)(w >> 8) + 0.5) * (1.0 / 16777216.0);
}

__device__ __forceinline__ unsigned int lane(uint4 w, unsigned int j) {
    return j == 0 ? w.x : (j == 1 ? w.y : (j == 2 ? w.z : w.w));
}

// One thread per Philox block: uniforms in (0, 1).
extern "C" __global__ void philox_uniform_f32(float* out, unsigned int n,
                                              unsigned long long seed,
                                              unsigned long long stream,
                                              unsigned long long offset) {
    unsigned int blocks = (n + 3) / 4;
    NP_FOR(bi, blocks) {
        uint4 w = philox_block(seed, stream, offset + bi);
        for (unsigned int j = 0; j < 4; ++j) {
            unsigned int e = 4 * bi + j;
            if (e < n) out[e] = (float)open01(lane(w, j));
        }
    }
}

// One thread per Philox block: standard normals by Box–Muller on lanes
// (0, 1) and (2, 3), in double as on the CPU: r = √(−2 ln u₁), θ = 2π·u₂,
// (r cos θ, r sin θ). Here with CUDA's log/sin/cos; the CPU evaluates its
// own polynomial kernels (philox.rs, box_muller); the two agree to ~1e-15.
extern "C" __global__ void philox_normal_f32(float* out, unsigned int n,
                                             unsigned long long seed,
                                             unsigned long long stream,
                                             unsigned long long offset) {
    const double tau = 6.283185307179586;
    unsigned int blocks = (n + 3) / 4;
    NP_FOR(bi, blocks) {
        uint4 w = philox_block(seed, stream, offset + bi);
        double r0 = sqrt(-2.0 * log(open01(w.x)));
        double t0 = tau * open01(w.y);
        double r1 = sqrt(-2.0 * log(open01(w.z)));
        double t1 = tau * open01(w.w);
        double v[4] = {r0 * cos(t0), r0 * sin(t0), r1 * cos(t1), r1 * sin(t1)};
        for (unsigned int j = 0; j < 4; ++j) {
            unsigned int e = 4 * bi + j;
            if (e < n) out[e] = (float)v[j];
        }
    }
}

// Inverted dropout: mask_i = keep (= 1/(1 − p)) when (w_i >> 8) ≥ thr, else 0
// (thr = ⌈p·2²⁴ − 0.5⌉: exactly "uniform ≥ p"); y_i = x_i·mask_i when has_x.
extern "C" __global__ void dropout_f32(const float* x, float* y, float* mask, unsigned int n,
                                       unsigned long long seed, unsigned long long stream,
                                       unsigned long long offset, unsigned int thr, float keep,
                                       int has_x) {
    unsigned int blocks = (n + 3) / 4;
    NP_FOR(bi, blocks) {
        uint4 w = philox_block(seed, stream, offset + bi);
        for (unsigned int j = 0; j < 4; ++j) {
            unsigned int e = 4 * bi + j;
            if (e < n) {
                float mv = (lane(w, j) >> 8) >= thr ? keep : 0.0f;
                mask[e] = mv;
                if (has_x) y[e] = x[e] * mv;
            }
        }
    }
}
