// expect: refused device symbol
#include <torch/extension.h>

__constant__ float c_weights[64];

__global__ void conv1d(const float* x, float* y, int n, int k) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i + k > n) return;
    float s = 0.f;
    for (int j = 0; j < k; ++j) s += x[i + j] * c_weights[j];
    y[i] = s;
}

torch::Tensor conv(torch::Tensor x, torch::Tensor w) {
    auto wc = w.contiguous().cpu();
    cudaMemcpyToSymbol(c_weights, wc.data_ptr<float>(), wc.numel() * sizeof(float));
    int n = x.numel(), k = w.numel();
    auto y = torch::zeros({n - k + 1}, x.options());
    conv1d<<<(n + 255) / 256, 256>>>(x.data_ptr<float>(), y.data_ptr<float>(), n, k);
    return y;
}
