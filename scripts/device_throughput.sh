#!/usr/bin/env bash
# Issue 10 figures on a lent GPU machine: the split-build unit tests with real nvcc, the
# throughput benchmark (plain serial load_inline vs the harness pipeline, one run), and the
# samples' CUDA responses built the fast way and checked for correctness.
# Usage there: bash scripts/device_throughput.sh "$OUT"
set -uo pipefail
out=${1:-/tmp/hk-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
{ nvidia-smi -L; nproc; python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))"; nvcc --version | tail -1; } 2>&1 | tee "$out/env.txt"
python3 -m pytest -p no:cacheprovider -q tests/test_splitcu.py 2>&1 | tail -5 | tee "$out/splitcu_tests.txt"
python3 benchmarks/throughput.py --backend cuda --count 16 --jobs "${HK_TP_JOBS:-16,8}" --serial 2 \
  --json "$out/throughput.json" 2>&1 | tee "$out/throughput.log"
python3 benchmarks/samples.py --backend cuda --jobs 16 --build-cache /tmp/hk-samples \
  --json "$out/samples.json" 2>&1 | tee "$out/samples.log"
find /tmp/hk-samples -name hk_nvcc.log -exec cat {} + > "$out/samples_nvcc.txt" 2>/dev/null
