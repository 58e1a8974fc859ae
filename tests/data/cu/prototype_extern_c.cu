// expect: split
#include <torch/extension.h>
#include <cuda_fp16.h>

extern "C" __global__ void half_scale(const __half* x, __half* y, float s, int n);

namespace ops {
struct Shape { int rows; int cols; };
__host__ __device__ __forceinline__ int cdiv(int a, int b) { return (a + b - 1) / b; }
template <int N> __device__ float unrolled_sum(const float* p) {
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < N; ++i) s += p[i];
    return s;
}
__global__ void sum8(const float* x, float* y, Shape shape) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r < shape.rows) y[r] = unrolled_sum<8>(x + r * 8);
}
}  // namespace ops

extern "C" __global__ void half_scale(const __half* x, __half* y, float s, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = __float2half(__half2float(x[i]) * s);
}

torch::Tensor run(torch::Tensor x, torch::Tensor h) {
    auto y = torch::empty({x.size(0)}, x.options());
    ops::Shape shape{(int)x.size(0), 8};
    ops::sum8<<<ops::cdiv(shape.rows, 128), 128>>>(x.data_ptr<float>(), y.data_ptr<float>(), shape);
    auto out = torch::empty_like(h);
    int n = h.numel();
    half_scale<<<(n + 255) / 256, 256>>>(reinterpret_cast<const __half*>(h.data_ptr<at::Half>()),
                                        reinterpret_cast<__half*>(out.data_ptr<at::Half>()), 2.0f, n);
    return y;
}
