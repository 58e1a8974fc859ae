// expect: split
#include <torch/types.h>
#include <cuda.h>
#include <cuda_runtime.h>

#include <torch/extension.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>

__host__ __device__ inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

__global__ void gelu_vec4(const float4* __restrict__ x, float4* __restrict__ y, int n4) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n4) return;
    float4 v = x[i];
    auto g = [](float t) { return 0.5f * t * (1.0f + tanhf(0.7978845608f * (t + 0.044715f * t * t * t))); };
    y[i] = make_float4(g(v.x), g(v.y), g(v.z), g(v.w));
}

torch::Tensor gelu(torch::Tensor x) {
    TORCH_CHECK(x.is_cuda() && x.is_contiguous() && x.numel() % 4 == 0, "bad input");
    auto y = torch::empty_like(x);
    int n4 = x.numel() / 4;
    const int threads = 256;
    gelu_vec4<<<ceil_div(n4, threads), threads, 0, at::cuda::getCurrentCUDAStream()>>>(
        reinterpret_cast<const float4*>(x.data_ptr<float>()),
        reinterpret_cast<float4*>(y.data_ptr<float>()), n4);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return y;
}
