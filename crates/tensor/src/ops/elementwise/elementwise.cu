// Element-wise arithmetic and ReLU (CPU: ops/elementwise.rs).

// out = a (op) b; op: 0 add, 1 sub, 2 mul.
extern "C" __global__ void binary_f32(const float* a, const float* b, float* out,
                                      unsigned int n, int op) {
    NP_FOR(i, n) {
        float x = a[i], y = b[i];
        out[i] = op == 0 ? x + y : (op == 1 ? x - y : x * y);
    }
}

// out = alpha * a + beta * b.
extern "C" __global__ void add_scaled_f32(const float* a, const float* b, float* out,
                                          unsigned int n, float alpha, float beta) {
    NP_FOR(i, n) { out[i] = alpha * a[i] + beta * b[i]; }
}

// y += alpha * x (BLAS axpy).
extern "C" __global__ void axpy_f32(float* y, const float* x, unsigned int n, float alpha) {
    NP_FOR(i, n) { y[i] += alpha * x[i]; }
}

// y *= x.
extern "C" __global__ void mul_assign_f32(float* y, const float* x, unsigned int n) {
    NP_FOR(i, n) { y[i] *= x[i]; }
}

// x *= alpha.
extern "C" __global__ void scale_f32(float* x, unsigned int n, float alpha) {
    NP_FOR(i, n) { x[i] *= alpha; }
}

// x = value.
extern "C" __global__ void fill_f32(float* x, unsigned int n, float value) {
    NP_FOR(i, n) { x[i] = value; }
}

// x = max(x, 0); NaN stays NaN (as the CPU's `if x < 0`).
extern "C" __global__ void relu_f32(float* x, unsigned int n) {
    NP_FOR(i, n) {
        if (x[i] < 0.0f) x[i] = 0.0f;
    }
}

// dy *= [y > 0] (ReLU backward from its output; a NaN y keeps dy, as on the CPU).
extern "C" __global__ void relu_backward_f32(float* dy, const float* y, unsigned int n) {
    NP_FOR(i, n) {
        if (y[i] <= 0.0f) dy[i] = 0.0f;
    }
}
