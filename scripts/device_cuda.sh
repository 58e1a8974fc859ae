#!/usr/bin/env bash
# Verify the cuda backend on a lent GPU machine: samples benchmark (raw CUDA + ThunderKittens,
# with ncu cross-check) then the benchmark job itself under pytest with the HTML report.
# Usage there: THUNDERKITTENS_ROOT=$PWD/.tk bash scripts/device_cuda.sh "$OUT"
set -uo pipefail
out=${1:-/tmp/hk-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD HK_BUILD_CACHE=/tmp/hk-cache
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
fi
{ nvidia-smi -L; python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))"; nvcc --version | tail -1; which ncu; } 2>&1 | tee "$out/env.txt"
python3 benchmarks/samples.py --backend cuda --jobs 16 ${HK_BENCH_ARGS:-} --json "$out/bench.json" 2>&1 | tee "$out/bench.log"
python3 -m pytest -p pytest_hipkittens.plugin kernelbench_tests --backend cuda --llm replay \
  --hk-results "$out/results" --html "$out/report.html" --self-contained-html ${HK_PYTEST_ARGS:-} \
  -p no:cacheprovider --durations=0 -o log_cli=true --log-cli-level=INFO \
  -o "log_cli_format=%(asctime)s %(message)s" 2>&1 | tee "$out/pytest.log"
tar czf "$out/results.tgz" -C "$out" results && rm -rf "$out/results"
