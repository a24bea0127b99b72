// Shared helpers, prepended to every kernel file before NVRTC compiles it.
// All kernels work on f32, contiguous row-major (NCHW) buffers; sizes are
// 32-bit: the Rust side refuses more than 2^31 - 1 elements
// (MAX_KERNEL_ELEMS in cuda/tensor.rs), so `i + stride` in NP_FOR and
// `(n + 3) / 4` in the Philox kernels never wrap.

#define NP_BLOCK 256

// −∞ without <math.h> (NVRTC has no standard headers).
#define NP_NEG_INF __int_as_float(0xff800000)

// Grid-stride loop over [0, n).
#define NP_FOR(i, n) \
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += blockDim.x * gridDim.x)

// Sum over the block in a fixed tree order (deterministic for a fixed
// launch). `sh` has NP_BLOCK floats; blockDim.x must be NP_BLOCK. Every
// thread receives the total.
__device__ __forceinline__ float np_block_sum(float v, float* sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned int s = NP_BLOCK / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    float r = sh[0];
    __syncthreads();
    return r;
}

// Maximum over the block (NaN-ignoring like fmaxf); every thread gets it.
__device__ __forceinline__ float np_block_max(float v, float* sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned int s = NP_BLOCK / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = fmaxf(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    float r = sh[0];
    __syncthreads();
    return r;
}
