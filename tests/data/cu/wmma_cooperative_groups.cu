// expect: split
#include <torch/extension.h>
#include <mma.h>
#include <cooperative_groups.h>
#include <cuda_fp16.h>

using namespace nvcuda;
namespace cg = cooperative_groups;

constexpr int WM = 16, WN = 16, WK = 16;

// One warp per 16x16 output tile; A is MxK row-major, B is KxN column-major (fp16 in, fp32 out).
__global__ void wmma_gemm(const half* a, const half* b, float* c, int M, int N, int K) {
    cg::thread_block block = cg::this_thread_block();
    int warp_m = (blockIdx.x * blockDim.x + threadIdx.x) / warpSize;
    int warp_n = blockIdx.y;
    wmma::fragment<wmma::matrix_a, WM, WN, WK, half, wmma::row_major> fa;
    wmma::fragment<wmma::matrix_b, WM, WN, WK, half, wmma::col_major> fb;
    wmma::fragment<wmma::accumulator, WM, WN, WK, float> acc;
    wmma::fill_fragment(acc, 0.0f);
    for (int k = 0; k < K; k += WK) {
        if (warp_m * WM < M && warp_n * WN < N) {
            wmma::load_matrix_sync(fa, a + warp_m * WM * K + k, K);
            wmma::load_matrix_sync(fb, b + warp_n * WN * K + k, K);
            wmma::mma_sync(acc, fa, fb, acc);
        }
    }
    block.sync();
    if (warp_m * WM < M && warp_n * WN < N)
        wmma::store_matrix_sync(c + warp_m * WM * N + warp_n * WN, acc, N, wmma::mem_row_major);
}

torch::Tensor gemm(torch::Tensor a, torch::Tensor bt) {
    int M = a.size(0), K = a.size(1), N = bt.size(0);
    auto c = torch::empty({M, N}, a.options().dtype(torch::kFloat32));
    dim3 block(128), grid((M + WM * 4 - 1) / (WM * 4), (N + WN - 1) / WN);
    wmma_gemm<<<grid, block>>>(reinterpret_cast<const half*>(a.data_ptr<at::Half>()),
                               reinterpret_cast<const half*>(bt.data_ptr<at::Half>()),
                               c.data_ptr<float>(), M, N, K);
    return c;
}
