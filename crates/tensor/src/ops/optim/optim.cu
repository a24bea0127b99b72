// Fused optimiser steps: one kernel, one pass per parameter tensor
// (CPU: ops/optim.rs).

// Adam / AdamW (PyTorch's formulation), host-side constants:
// step = lr/(1 − β₁ᵗ), sqrt_bc2 = √(1 − β₂ᵗ), decay = 1 − lr·λ.
// AdamW: θ ← θ·decay; Adam: g ← g + λθ. Then m ← β₁m + (1−β₁)g,
// v ← β₂v + (1−β₂)g², θ ← θ − step·m/(√v/sqrt_bc2 + ε).
extern "C" __global__ void adam_f32(float* param, const float* grad, float* m, float* v,
                                    unsigned int n, float b1, float b2, float eps, float step,
                                    float sqrt_bc2, float wd, float decay, int decoupled) {
    NP_FOR(i, n) {
        float g = grad[i];
        float p = param[i];
        if (decoupled) {
            p *= decay;
        } else {
            g += wd * p;
        }
        float mm = b1 * m[i] + (1.0f - b1) * g;
        float vv = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mm;
        v[i] = vv;
        param[i] = p - step * mm / (sqrtf(vv) / sqrt_bc2 + eps);
    }
}

// SGD with momentum μ and coupled weight decay λ (no dampening):
// g ← g + λθ, b ← μb + g, θ ← θ − lr·b.
extern "C" __global__ void sgd_momentum_f32(float* param, const float* grad, float* buf,
                                            unsigned int n, float lr, float mu, float wd) {
    NP_FOR(i, n) {
        float g = grad[i] + wd * param[i];
        float b = mu * buf[i] + g;
        buf[i] = b;
        param[i] -= lr * b;
    }
}
