export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD HK_BUILD_CACHE=/tmp/hk-cache MAX_JOBS=4; nvidia-smi -L > $OUT/env.txt
kb=/tmp/kb; r=/tmp/resp; mkdir -p $kb/level1; i=0
for n in cheats_when_timed rewrites_trial_loop reports_own_times two_launches side_stream_joined; do i=$((i+1)); f=tests/exploits/cuda/$n.py; c=$(echo $n | sed -E 's/(^|_)([a-z])/\U\2/g'); cp pytest_hipkittens/samples/level1/1_ReLU.py $kb/level1/${i}_$c.py; d=$r/cuda/level1/${i}_$c; mkdir -p $d; { echo '```python'; cat $f; echo '```'; } > $d/1.md; done
timeout 170 python3 -m pytest -p pytest_hipkittens.plugin kernelbench_tests --backend cuda --llm replay --kernelbench-dir $kb --hk-responses $r --hk-attempts 1 --hk-samples 1 --hk-run-timeout 60 --hk-results /tmp/res -p no:cacheprovider -q 2>&1 | tail -25 > $OUT/batch.log
python3 -c "
import json,glob
for f in sorted(glob.glob('/tmp/res/level1/*/best_result.json')):
    b=json.load(open(f)); t=b.get('timing') or {}
    print(f.split('/')[-2], b['status'], b['message'][:260], t.get('wall_check'))
" > $OUT/verdicts.txt; cat $OUT/verdicts.txt $OUT/batch.log
