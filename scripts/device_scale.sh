#!/usr/bin/env bash
# On a lent 2-GPU machine: build the cuda samples once (parallel), then run the benchmark job
# with -n 2 and with -n 1 on the same machine, and print which GPU each problem ran on.
set -uo pipefail
out=${1:-/tmp/hk-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD HK_BUILD_CACHE=/tmp/hk-cache
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>/dev/null
nvidia-smi -L | tee "$out/env.txt"
python3 benchmarks/samples.py --backend cuda --jobs 32 --json "$out/bench.json" > "$out/bench.log" 2>&1
tail -3 "$out/bench.log"
for n in 2 1; do
  start=$(date +%s.%N)
  python3 -m pytest -p pytest_hipkittens.plugin kernelbench_tests --backend cuda --llm replay -n $n \
    --hk-results "$out/results-n$n" -p no:cacheprovider -q > "$out/pytest-n$n.log" 2>&1
  end=$(date +%s.%N)
  echo "-n $n: exit $? wall $(python3 -c "print(round($end-$start,1))") s" | tee -a "$out/walls.txt"
  tail -12 "$out/pytest-n$n.log"
  python3 - "$out/results-n$n" <<'PY'
import json, pathlib, sys
for f in sorted(pathlib.Path(sys.argv[1]).glob("level1/*/best_result.json")):
    r = json.loads(f.read_text()); h = r["hardware"]
    print(f"{r['problem']:<26} {r['status']:<8} visible={h.get('visible_devices')} bus={h.get('pci_bus_id')} {h.get('gpu')}")
PY
done
tar czf "$out/results.tgz" -C "$out" results-n2 results-n1 && rm -rf "$out/results-n2" "$out/results-n1"
