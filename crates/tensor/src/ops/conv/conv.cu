// 2-D convolution pieces around the GEMMs (CPU: ops/conv.rs): im2col, its
// adjoint col2im, and the [OC, N·P] <-> [N, OC, P] reshuffles with the fused
// bias/ReLU epilogue and ReLU-mask gather. Stride 1, square zero padding.
// col is [C·KH·KW, N·OH·OW]: row r = (c, ky, kx), column = (n, oy, ox).

// col[r, n·P + oy·OW + ox] = x[n, c, oy + ky − pad, ox + kx − pad] (0 outside).
extern "C" __global__ void im2col_f32(const float* x, float* col, unsigned int n,
                                      unsigned int c, unsigned int h, unsigned int w,
                                      unsigned int kh, unsigned int kw, unsigned int pad,
                                      unsigned int oh, unsigned int ow) {
    unsigned int p = oh * ow;
    unsigned int np = n * p;
    unsigned int total = c * kh * kw * np;
    NP_FOR(i, total) {
        unsigned int r = i / np, q = i % np;
        unsigned int ci = r / (kh * kw), ky = (r / kw) % kh, kx = r % kw;
        unsigned int ni = q / p, pix = q % p;
        unsigned int oy = pix / ow, ox = pix % ow;
        int iy = (int)(oy + ky) - (int)pad;
        int ix = (int)(ox + kx) - (int)pad;
        float v = 0.0f;
        if (iy >= 0 && iy < (int)h && ix >= 0 && ix < (int)w)
            v = x[((size_t)(ni * c + ci) * h + iy) * w + ix];
        col[i] = v;
    }
}

// dx[n, c, iy, ix] = Σ_(ky, kx) col[(c, ky, kx), n·P + (iy + pad − ky)·OW + (ix + pad − kx)],
// taps added ky outer, kx inner, one thread per input pixel: no atomics,
// deterministic. This is the CPU's generic order, but not the order of the
// CPU's fused path for 3-row kernels without padding (ops/conv.rs sums the
// three row taps of an input row in one pass), so the two may differ by an
// ulp per sum there: cuda_parity compares col2im at a tolerance of 1e-6
// relative, not bit for bit.
extern "C" __global__ void col2im_f32(const float* col, float* dx, unsigned int n,
                                      unsigned int c, unsigned int h, unsigned int w,
                                      unsigned int kh, unsigned int kw, unsigned int pad,
                                      unsigned int oh, unsigned int ow) {
    unsigned int p = oh * ow;
    unsigned int np = n * p;
    unsigned int total = n * c * h * w;
    NP_FOR(i, total) {
        unsigned int ix = i % w, iy = (i / w) % h, ci = (i / (w * h)) % c, ni = i / (w * h * c);
        float acc = 0.0f;
        for (unsigned int ky = 0; ky < kh; ++ky) {
            int oy = (int)(iy + pad) - (int)ky;
            if (oy < 0 || oy >= (int)oh) continue;
            for (unsigned int kx = 0; kx < kw; ++kx) {
                int ox = (int)(ix + pad) - (int)kx;
                if (ox < 0 || ox >= (int)ow) continue;
                unsigned int r = (ci * kh + ky) * kw + kx;
                acc += col[(size_t)r * np + ni * p + oy * ow + ox];
            }
        }
        dx[i] = acc;
    }
}

// y[n, oc, j] = t[oc, n·P + j] + bias[oc] (bias may be absent: has_bias = 0),
// then ReLU when `relu`.
extern "C" __global__ void rows_to_nchw_f32(const float* t, const float* bias, float* y,
                                            unsigned int n, unsigned int oc, unsigned int p,
                                            int has_bias, int relu) {
    unsigned int total = n * oc * p;
    unsigned int np = n * p;
    NP_FOR(i, total) {
        unsigned int j = i % p, c = (i / p) % oc, ni = i / (p * oc);
        float v = t[(size_t)c * np + ni * p + j] + (has_bias ? bias[c] : 0.0f);
        y[i] = (relu && v < 0.0f) ? 0.0f : v;
    }
}

// t[oc, n·P + j] = dy[n, oc, j] · [mask[n, oc, j] > 0] (no mask: has_mask = 0).
extern "C" __global__ void nchw_to_rows_f32(const float* dy, const float* mask, float* t,
                                            unsigned int n, unsigned int oc, unsigned int p,
                                            int has_mask) {
    unsigned int total = n * oc * p;
    unsigned int np = n * p;
    NP_FOR(i, total) {
        unsigned int j = i % p, c = (i / p) % oc, ni = i / (p * oc);
        float v = dy[i];
        if (has_mask && !(mask[i] > 0.0f)) v = 0.0f;
        t[(size_t)c * np + ni * p + j] = v;
    }
}
