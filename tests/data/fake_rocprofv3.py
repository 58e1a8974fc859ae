"""A stand-in for rocprofv3 (no AMD GPU here): runs the command after ``--`` and writes a
kernel trace in rocprofv3's documented CSV format, one dispatch of ``probe_kernel`` per timed
run inside the window the probe printed, plus one warm-up dispatch before it."""

import csv
import re
import subprocess
import sys
from pathlib import Path

args = sys.argv[1:]
cmd = args[args.index("--") + 1 :]
out_dir = Path(args[args.index("--output-directory") + 1])
name = args[args.index("--output-file") + 1]
proc = subprocess.run(cmd, capture_output=True, text=True)
sys.stdout.write(proc.stdout)
sys.stderr.write(proc.stderr)
m = re.search(r"HK_PROBE_WINDOW (\d+) (\d+) (\d+)", proc.stdout)
if proc.returncode or not m:
    sys.exit(proc.returncode or 1)
start, end, runs = (int(x) for x in m.groups())
columns = [
    "Kind",
    "Agent_Id",
    "Queue_Id",
    "Stream_Id",
    "Thread_Id",
    "Dispatch_Id",
    "Kernel_Id",
    "Kernel_Name",
    "Correlation_Id",
    "Start_Timestamp",
    "End_Timestamp",
    "LDS_Block_Size",
    "Scratch_Size",
    "VGPR_Count",
    "Accum_VGPR_Count",
    "SGPR_Count",
    "Workgroup_Size_X",
    "Workgroup_Size_Y",
    "Workgroup_Size_Z",
    "Grid_Size_X",
    "Grid_Size_Y",
    "Grid_Size_Z",
]
target = out_dir / "host" / "4242"
target.mkdir(parents=True, exist_ok=True)
with open(target / f"{name}_kernel_trace.csv", "w", newline="") as f:
    w = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)
    w.writerow(columns)
    step = max(1, (end - start) // (runs + 1))
    stamps = [start - 5000] + [start + i * step for i in range(runs)]
    for i, t0 in enumerate(stamps):
        w.writerow(
            [
                "KERNEL_DISPATCH",
                "Agent 4",
                1,
                1,
                4242,
                i + 1,
                7,
                "probe_kernel(float const*, float*)",
                i + 1,
                t0,
                t0 + 2000,
                0,
                0,
                32,
                0,
                16,
                256,
                1,
                1,
                4096,
                1,
                1,
            ]
        )
