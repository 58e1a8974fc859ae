#!/usr/bin/env bash
# Real KernelBench sizes on a lent GPU machine: single candidates on level 1's 19_ReLU
# (6.4 GB tensors) and a 256 MB ReLU through hk-eval, next to the one-process floor, then
# the level sweep (benchmarks/level1_sweep.py).
# Needs, in git-ignored folders that travel with the run: .kb/KernelBench (a KernelBench
# checkout's problem folders), .kb/tools (the one-process floor scripts), .kb/p256 (19_ReLU
# with dim 16384), .kb/relu_ref_as_new.py (19_ReLU's Model renamed ModelNew).
# Usage there: bash scripts/device_sizes.sh "$OUT" [sweep range] [sweep timeout s]
set -uo pipefail
out=${1:-/tmp/hk-out}
range=${2:-1-100}
budget=${3:-420}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD HK_BUILD_CACHE=/tmp/hk-cache HK_TRACE=1
kb=.kb/KernelBench/level1
{ nvidia-smi -L; nproc; python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"; } 2>&1 | tee "$out/env.txt"

if [ "${HK_BOOT_BENCH:-1}" = 1 ]; then  # what a worker's start-up costs on this machine
  cat > /tmp/hk-boot.py <<'PY'
import os, subprocess, sys, time
def wall(cmd, n=2):
    out = []
    for _ in range(n):
        t = time.time(); subprocess.run(cmd, check=False, timeout=60); out.append(round(time.time() - t, 2))
    return out
for code in ["pass", "import torch", "import torch; torch.empty(1, device='cuda')",
             "import torch.utils.cpp_extension; from pytest_hipkittens.evaluate.audit import warm_mode; warm_mode()"]:
    print(f"{code[:72]:72} {wall([sys.executable, '-c', code])}", flush=True)
t = time.time()
ps = [subprocess.Popen([sys.executable, "-c", "import torch; torch.empty(1, device='cuda')"]) for _ in range(4)]
[p.wait(timeout=60) for p in ps]
print("4 at once: import torch + context", round(time.time() - t, 2), flush=True)
import torch
if sys.argv[1:] == ["pool"]:
    x = torch.randn(4096, 4096); (x @ x).sum().item()  # the parent's CPU thread pool is up
t = time.time(); pid = os.fork()
if pid == 0:
    torch.empty(1, device="cuda"); y = torch.randn(4096, 4096, device="cuda"); (y @ y).sum().item()
    t1 = time.time()
    print("forked child", sys.argv[1:], "context+matmul", round(t1 - t, 2), flush=True)
    x = torch.randn(4096, 4096); (x @ x).sum().item()
    print("forked child cpu matmul", round(time.time() - t1, 2), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
PY
  timeout 60 python3 /tmp/hk-boot.py 2>&1 | tee "$out/boot.txt"
  timeout 30 python3 /tmp/hk-boot.py pool 2>&1 | tail -2 | tee -a "$out/boot.txt"
fi

timed() {  # timed NAME CMD...: run, keep the log, print the wall seconds and the verdict
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  timeout 150 "$@" > "$out/$name.log" 2>&1; local rc=$?
  local t1; t1=$(date +%s.%N)
  printf '%-28s rc=%s wall=%6.2f s  %s\n' "$name" "$rc" "$(awk "BEGIN{print $t1 - $t0}")" \
    "$(grep -o '"message": "[^"]*"' "$out/$name.log" | head -1)" | tee -a "$out/single.txt"
}
eval_cmd=(python3 -m pytest_hipkittens.cli.eval --backend cuda --timing-trials 100 --correctness-trials 5)
[ "${HK_SINGLES:-1}" = 1 ] && {
timed relu_ref_2 "${eval_cmd[@]}" --problem $kb/19_ReLU.py --code .kb/relu_ref_as_new.py --allow-torch-ops
timed relu_cuda_cold "${eval_cmd[@]}" --problem $kb/19_ReLU.py --code tests/exploits/cuda/two_launches.py
timed relu_cuda_cached "${eval_cmd[@]}" --problem $kb/19_ReLU.py --code tests/exploits/cuda/two_launches.py
timed relu256_cuda_cached "${eval_cmd[@]}" --problem .kb/p256/1_ReLU256.py --code tests/exploits/cuda/two_launches.py
timed floor_relu_ref python3 .kb/tools/gpu_floor_eval.py $kb/19_ReLU.py .kb/relu_ref_as_new.py 5 100
[ -n "${HK_FLOOR_BUILD:-}" ] && timed floor_relu_cuda python3 .kb/tools/gpu_floor_eval.py $kb/19_ReLU.py tests/exploits/cuda/two_launches.py 5 100
[ -n "${HK_FLOOR_BUILD:-}" ] && timed floor_relu256_cuda python3 .kb/tools/gpu_floor_eval.py .kb/p256/1_ReLU256.py tests/exploits/cuda/two_launches.py 5 100
for f in relu_ref_2 relu_cuda_cached relu256_cuda_cached; do
  grep -E '^\[hk-trace\] .*(boot|close|evaluate)' "$out/$f.log" | tee -a "$out/single.txt"
  grep '^\[hk-trace\]' "$out/$f.log" | grep -vE 'boot|close|evaluate' | awk '{a[$2" "$3]+=$4; n[$2" "$3]++} END {for (k in a) printf "  %-22s %3d %7.3f\n", k, n[k], a[k]}' | sort -k3 -n -r | head -8
  python3 - "$out/$f.log" <<'PY' | tee -a "$out/single.txt"
import json, re, sys
text = open(sys.argv[1]).read()
try:  # the result: from the first line that opens a JSON object (after the trace lines)
    r = json.JSONDecoder().raw_decode(text[re.search(r"^\{", text, re.M).start():])[0]
except (AttributeError, ValueError):
    print(sys.argv[1], "no result"); sys.exit()
t = r.get("timing") or {}
print(sys.argv[1].split("/")[-1], r["status"], "ref_ms", t.get("ref_ms"), "new_ms", t.get("new_ms"),
      "speedup", t.get("speedup"), "phases", r.get("eval_phases"), "mem", r.get("memory_gb"),
      "build_s", r.get("build_seconds"), "eval_s", r.get("eval_seconds"), "wall_check", t.get("wall_check"))
PY
done
cat "$out"/floor_*.log | tee -a "$out/single.txt"
}
[ "$range" = none ] && exit 0
timeout $((budget + 30)) python3 benchmarks/level1_sweep.py --kernelbench-dir .kb/KernelBench \
  --backend cuda --range "$range" --timeout "$budget" --json "$out/sweep.json" \
  > "$out/sweep.txt" 2>&1
grep -vE '^\[hk\]' "$out/sweep.txt" | tail -120
