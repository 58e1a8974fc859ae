// expect: split
#include <torch/extension.h>
#include <cuda_runtime.h>
#include <cfloat>

#define WARP 32
constexpr int THREADS = 256;

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = WARP / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}

__global__ void __launch_bounds__(THREADS) row_max(const float* x, float* m, int cols) {
    __shared__ float part[THREADS / WARP];
    float v = -FLT_MAX;
    for (int j = threadIdx.x; j < cols; j += THREADS) v = fmaxf(v, x[blockIdx.x * cols + j]);
    v = warp_max(v);
    if (threadIdx.x % WARP == 0) part[threadIdx.x / WARP] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        float r = part[0];
        for (int k = 1; k < THREADS / WARP; ++k) r = fmaxf(r, part[k]);
        m[blockIdx.x] = r;
    }
}

__global__ void __launch_bounds__(THREADS) exp_norm(const float* x, const float* m, float* y, int cols) {
    float s = 0.f;
    for (int j = threadIdx.x; j < cols; j += THREADS) s += __expf(x[blockIdx.x * cols + j] - m[blockIdx.x]);
    __shared__ float total;
    if (threadIdx.x == 0) total = 0.f;
    __syncthreads();
    atomicAdd(&total, s);
    __syncthreads();
    for (int j = threadIdx.x; j < cols; j += THREADS)
        y[blockIdx.x * cols + j] = __expf(x[blockIdx.x * cols + j] - m[blockIdx.x]) / total;
}

static int rows_of(const torch::Tensor& x) { return (int)x.size(0); }

torch::Tensor softmax(torch::Tensor x) {
    auto y = torch::empty_like(x);
    auto m = torch::empty({x.size(0)}, x.options());
    int rows = rows_of(x), cols = (int)x.size(1);
    row_max<<<rows, THREADS>>>(x.data_ptr<float>(), m.data_ptr<float>(), cols);
    exp_norm<<<rows, THREADS>>>(x.data_ptr<float>(), m.data_ptr<float>(), y.data_ptr<float>(), cols);
    return y;
}
