#!/usr/bin/env bash
# Issue 20 on a lent GPU machine: the build-route tests with real nvcc, then three ReLU
# candidates through hk-eval — one that splits, one the splitter refuses (a kernel template
# launched with deduced arguments: the lean header), one with a typo in its kernel (the
# candidate's own error: compiled once) — printing each result's status and build_route.
# With HK_BR_THROUGHPUT=1 also the throughput benchmark, whose summary counts the routes.
# Usage there: bash scripts/device_build_route.sh "$OUT"
set -uo pipefail
out=${1:-/tmp/hk-out}
mkdir -p "$out/cands"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD HK_BUILD_CACHE=${HK_BUILD_CACHE:-/tmp/hk-cache}
{ nvidia-smi -L; nproc; python3 -c "import torch; print(torch.__version__, torch.version.cuda)"; nvcc --version | tail -1; } 2>&1 | tee "$out/env.txt"
python3 -m pytest -p no:cacheprovider -q -rs tests/test_build_route.py tests/test_splitcu.py 2>&1 \
  | tail -8 | tee "$out/tests.txt"
python3 - "$out/cands" <<'PY'
import sys
from pathlib import Path

head = '''
import torch
import torch.nn as nn
from torch.utils.cpp_extension import load_inline

SOURCE = r"""
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
'''
tail = '''
"""
ext = load_inline(name="hk_br_{tag}", cpp_sources="torch::Tensor relu(torch::Tensor x);",
                  cuda_sources=SOURCE, functions=["relu"], extra_cuda_cflags=["-O3"])


class ModelNew(nn.Module):
    def forward(self, x):
        return ext.relu(x)
'''
plain = '''
__global__ void relu_kernel(const float* __restrict__ x, float* __restrict__ y, long n) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i < n) y[i] = fmaxf(x[i], ZERO);
}
torch::Tensor relu(torch::Tensor x) {
    auto y = torch::empty_like(x);
    long n = x.numel();
    relu_kernel<<<(n + 255) / 256, 256, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<float>(), y.data_ptr<float>(), n);
    return y;
}
'''
template = '''
template <typename T>
__global__ void relu_kernel(const T* __restrict__ x, T* __restrict__ y, long n) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i < n) y[i] = x[i] > T(0) ? x[i] : T(0);
}
torch::Tensor relu(torch::Tensor x) {
    auto y = torch::empty_like(x);
    long n = x.numel();
    relu_kernel<<<(n + 255) / 256, 256, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<float>(), y.data_ptr<float>(), n);
    return y;
}
'''
out = Path(sys.argv[1])
for tag, body in {
    "split": plain.replace("ZERO", "0.0f"),
    "lean": template,
    "typo": plain.replace("ZERO", "zeroo"),
}.items():
    (out / f"{tag}.py").write_text(head + body + tail.replace("{tag}", tag))
PY
for tag in split lean typo; do
  python3 -m pytest_hipkittens.cli.eval --backend cuda --code "$out/cands/$tag.py" \
    --problem pytest_hipkittens/samples/level1/1_ReLU.py --timing-trials 30 \
    --output "$out/$tag.json" > "$out/$tag.log" 2>&1 &
done
wait
python3 - "$out" <<'PY' | tee "$out/routes.txt"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for tag in ("split", "lean", "typo"):
    r = json.loads((out / f"{tag}.json").read_text())
    print(f"{tag}: {r['status']} build {r['build_seconds']} s: {r['message'][:120]!r}")
    print(json.dumps(r.get("build_route"), indent=2))
PY
find "$HK_BUILD_CACHE" -name hk_nvcc.log -exec sh -c 'echo "== $1"; cat "$1"' _ {} \; > "$out/nvcc_notes.txt"
if [ "${HK_BR_THROUGHPUT:-0}" = 1 ]; then
  python3 benchmarks/throughput.py --backend cuda --count 16 --jobs 16 --serial 1 \
    --correctness-trials 3 --timing-trials 30 --json "$out/throughput.json" 2>&1 | tail -14 \
    | tee "$out/throughput.txt"
fi
