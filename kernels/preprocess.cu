// GPU preprocessing for vggedge: uint8 3-channel frame (H x W x 3 interleaved, any row pitch in bytes;
// BGR from OpenCV or RGB from nvImageCodec) -> bilinear resize (direct, or shorter side + centre crop)
// -> optional R/B swap -> x * gain - offset -> one image of an NCHW or NHWC tensor (float or half),
// written straight into the runner's device input buffer.
//
// The resize follows OpenCV's INTER_LINEAR convention (half-pixel centres):
//   src = (dst + offset + 0.5) * scale - 0.5,
// with scale = src_size / resized_size and offset = the crop's first row/column in the
// resized image (0 for a direct resize), so a shorter-side resize followed by a centre
// crop reads exactly the source pixels OpenCV's resize-then-slice reads;
// a source index below 0 is clamped to 0 and one at or past the last pixel to the
// last pixel, both with weight 0 on the neighbour. OpenCV interpolates 8-bit images
// in 11-bit fixed point and rounds to uint8; this kernel interpolates in float, so
// the two differ by at most 1.0 in pixel units before normalisation.
//
// Entry points are extern "C" so pycuda's Module.get_function finds them by name:
//   vggedge_preprocess_f32 (float output), vggedge_preprocess_f16 (__half output).
// Launch: block (32, 8), grid (ceil(dst_w / 32), ceil(dst_h / 8)); one thread per
// output pixel writes its three channels (three planes for NCHW, three neighbours for
// NHWC). gain/offset are given in the OUTPUT channel order (after the optional swap).

#include <cuda_fp16.h>
#include <stdint.h>

namespace {

struct Tap {
    int i0;     // first source index
    int i1;     // second source index (clamped)
    float w;    // weight of i1; i0 gets 1 - w
};

__device__ __forceinline__ Tap source_tap(int dst, float offset, float scale, int size) {
    const float f = (static_cast<float>(dst) + offset + 0.5f) * scale - 0.5f;
    int i = static_cast<int>(floorf(f));
    float w = f - static_cast<float>(i);
    if (i < 0) {
        i = 0;
        w = 0.0f;
    }
    if (i >= size - 1) {
        i = size - 1;
        w = 0.0f;
    }
    Tap tap;
    tap.i0 = i;
    tap.i1 = min(i + 1, size - 1);
    tap.w = w;
    return tap;
}

template <typename T>
__device__ __forceinline__ T to_output(float v);

template <>
__device__ __forceinline__ float to_output<float>(float v) { return v; }

template <>
__device__ __forceinline__ __half to_output<__half>(float v) { return __float2half_rn(v); }

template <typename T>
__device__ __forceinline__ void preprocess_pixel(
    const uint8_t* __restrict__ src, int src_h, int src_w, int src_step,
    T* __restrict__ dst, int dst_h, int dst_w, float scale_y, float scale_x, float off_y, float off_x,
    int swap_rb, int nhwc, float g0, float g1, float g2, float o0, float o1, float o2) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= dst_w || y >= dst_h) {
        return;
    }
    const Tap tx = source_tap(x, off_x, scale_x, src_w);
    const Tap ty = source_tap(y, off_y, scale_y, src_h);
    const uint8_t* row0 = src + static_cast<size_t>(ty.i0) * src_step;
    const uint8_t* row1 = src + static_cast<size_t>(ty.i1) * src_step;
    float px[3];  // in the source's channel order
#pragma unroll
    for (int c = 0; c < 3; ++c) {
        const float top = row0[tx.i0 * 3 + c] * (1.0f - tx.w) + row0[tx.i1 * 3 + c] * tx.w;
        const float bottom = row1[tx.i0 * 3 + c] * (1.0f - tx.w) + row1[tx.i1 * 3 + c] * tx.w;
        px[c] = top * (1.0f - ty.w) + bottom * ty.w;
    }
    const float c0 = swap_rb ? px[2] : px[0];
    const float c2 = swap_rb ? px[0] : px[2];
    const size_t idx = static_cast<size_t>(y) * dst_w + x;
    const size_t step = nhwc ? 1 : static_cast<size_t>(dst_h) * dst_w;  // between channels
    T* out = dst + (nhwc ? idx * 3 : idx);
    out[0] = to_output<T>(c0 * g0 - o0);
    out[step] = to_output<T>(px[1] * g1 - o1);
    out[2 * step] = to_output<T>(c2 * g2 - o2);
}

}  // namespace

extern "C" __global__ void vggedge_preprocess_f32(
    const uint8_t* __restrict__ src, int src_h, int src_w, int src_step,
    float* __restrict__ dst, int dst_h, int dst_w, float scale_y, float scale_x, float off_y, float off_x,
    int swap_rb, int nhwc, float g0, float g1, float g2, float o0, float o1, float o2) {
    preprocess_pixel<float>(src, src_h, src_w, src_step, dst, dst_h, dst_w, scale_y, scale_x, off_y, off_x,
                            swap_rb, nhwc, g0, g1, g2, o0, o1, o2);
}

extern "C" __global__ void vggedge_preprocess_f16(
    const uint8_t* __restrict__ src, int src_h, int src_w, int src_step,
    __half* __restrict__ dst, int dst_h, int dst_w, float scale_y, float scale_x, float off_y, float off_x,
    int swap_rb, int nhwc, float g0, float g1, float g2, float o0, float o1, float o2) {
    preprocess_pixel<__half>(src, src_h, src_w, src_step, dst, dst_h, dst_w, scale_y, scale_x, off_y, off_x,
                             swap_rb, nhwc, g0, g1, g2, o0, o1, o2);
}
