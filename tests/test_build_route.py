"""Which way each ``.cu`` compiled (``build_route``), and the rule that stops a compile at the
first route showing the candidate's own error (own_error.py).

The rule, the records and their reading run everywhere (fake compilers, written files).
The real compiles — a file that splits, one the splitter refuses, a valid file whose split
fails, genuine errors in a kernel, in host code and in a refused file — need nvcc and no
GPU; where nvcc is missing they are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_hipkittens.evaluate import nvcc, routes
from pytest_hipkittens.evaluate.own_error import Lookups, lookups, proven
from pytest_hipkittens.report import record_from_best, summarize

from .conftest import SCALE_PROBLEM, python_candidate, write_problem

NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(
    NVCC is None,
    reason="needs nvcc (compile only, no GPU): real split, lean-header and as-written compiles",
)

SRC = Path("/b/ext/cuda.cu")


# -- the rule's reading of compiler output ------------------------------------------------
@pytest.mark.parametrize(
    ("log", "expected"),
    [
        (  # nvcc, as it prints an undefined name (source line echoed, closing count)
            '/b/ext/cuda.cu(5): error: identifier "zeroo" is undefined\n'
            "      if (i < n) y[i] = fmaxf(x[i], zeroo);\n"
            "                                    ^\n\n"
            '1 error detected in the compilation of "/b/ext/cuda.cuda.o.hk-split/device.cu".\n',
            {"zeroo": {5: 1}},
        ),
        ('/b/ext/cuda.cu(7): error: namespace "torch" has no member "nnn"\n', {"nnn": {7: 1}}),
        (
            '/b/ext/cuda.cu(9): error: class "at::Tensor" has no member "numelx"\n',
            {"numelx": {9: 1}},
        ),
        (  # gcc in a UTF-8 locale, with its context and suggestion
            "/b/ext/cuda.cu: In function \u2018at::Tensor relu(at::Tensor)\u2019:\n"
            "/b/ext/cuda.cu:9:16: error: \u2018class at::Tensor\u2019 has no member named "
            "\u2018numelx\u2019; did you mean \u2018numel\u2019?\n"
            "    9 |     long n = x.numelx();\n",
            {"numelx": {9: 1}},
        ),
        (  # gcc in the C locale
            "/b/ext/cuda.cu:4:5: error: 'zeroo' was not declared in this scope\n"
            "/b/ext/cuda.cu:6:5: error: 'zeroo' was not declared in this scope\n",
            {"zeroo": {4: 1, 6: 1}},
        ),
        ("/b/ext/cuda.cu:3:8: error: 'nnn' is not a member of 'torch'\n", {"nnn": {3: 1}}),
    ],
)
def test_failed_lookups_are_read_from_both_compilers(log: str, expected: dict) -> None:
    found = lookups(log, SRC)
    assert found is not None and found.lines == expected
    assert "error" in found.first


@pytest.mark.parametrize(
    "log",
    [
        # any error that is not a failed lookup
        '/b/ext/cuda.cu(5): error: name followed by "::" must be a class or namespace name\n',
        '/b/ext/cuda.cu(5): error: identifier "zeroo" is undefined\n'
        '/b/ext/cuda.cu(6): error: a value of type "int *" cannot be used to initialize\n',
        # a lookup, but in a header, or a host name used in device code (it is declared)
        '/usr/include/x.h(5): error: identifier "zeroo" is undefined\n',
        '/b/ext/cuda.cu(5): error: identifier "h" is undefined in device code\n',
        # met while instantiating a template
        '/b/ext/cuda.cu(5): error: identifier "zeroo" is undefined\n'
        '          detected during instantiation of "void k<T>(T *) [with T=float]" at line 9\n',
        # no located error at all: ptxas, nvcc itself, nothing
        "ptxas error   : Entry function uses too much shared data\n",
        "nvcc fatal   : Unknown option '-foo'\n",
        "",
    ],
)
def test_anything_else_is_not_a_candidates_own_error(log: str) -> None:
    assert lookups(log, SRC) is None


def _preprocessed(source: Path, header: Path, body: str) -> str:
    """What ``nvcc -E`` gives for ``source``: its lines after line markers, a header's
    included at line 1."""
    return f'# 1 "{source}"\n# 1 "{header}" 1\n# 2 "{source}" 2\n{body}'


def test_proof_needs_a_name_nothing_as_written_declares(tmp_path: Path) -> None:
    """The rule on its own: the name is on the error line of the file as written, on no
    other line of it (comments aside), and in no header it reaches."""
    header = tmp_path / "h.h"
    header.write_text("#define ONE 1\nstatic inline int one() { return ONE; }\n")
    source = tmp_path / "cuda.cu"
    lines = ['#include "h.h"', "__global__ void k(float* y) {", "    y[0] = zeroo;  // typo"]
    source.write_text("\n".join([*lines, "}", "// zeroo in a comment is no declaration", ""]))
    text = _preprocessed(source, header, "__global__ void k(float* y) {\n    y[0] = zeroo;\n}\n")
    error = Lookups({"zeroo": Counter({3: 1})})
    assert proven(error, source, text)
    # A header that names it anywhere (a macro, an #if branch): as written might compile.
    header.write_text("#if 0\nint zeroo;\n#endif\n")
    assert not proven(error, source, text)
    header.write_text("")
    # The line is not compiled as written (an #if the full header decides), or the name
    # comes from a macro there: no proof.
    assert not proven(error, source, text.replace("y[0] = zeroo;", "y[0] = 0;"))
    # A second occurrence on the reported line may be its declaration (a split can move a
    # declaration off a line it shares with the use): no proof.
    twice = text.replace("y[0] = zeroo;", "int zeroo = 1; y[0] = zeroo;")
    assert not proven(error, source, twice)
    assert proven(Lookups({"zeroo": Counter({3: 2})}), source, twice)  # both reported
    # Another line of the candidate's own code names it: it may be declared there.
    source.write_text("\n".join([*lines, "}", "#if 0", "float zeroo;", "#endif", ""]))
    assert not proven(error, source, text)
    # Written somewhere else (an included file of the candidate's) than the source.
    assert not proven(error, source, text.replace(f'# 2 "{source}" 2', f'# 2 "{header}" 2'))


#: A stand-in nvcc: records its calls; the lean compile fails on an undefined name; -E
#: prints the source after a line marker, and a header naming ``$HK_TEST_IN_HEADER``.
FAKE_NVCC = r"""#!/bin/sh
echo "$*" >> {calls}
case "$*" in
  *" -E") printf '# 1 "k.cu"\n# 1 "{header}" 1\n# 2 "k.cu" 2\n'; tail -n +2 k.cu; exit 0;;
  *"-I "*) echo 'k.cu(3): error: identifier "zeroo" is undefined' >&2; exit 2;;
  *) echo 'k.cu(3): error: identifier "zeroo" is undefined (as written)' >&2; exit 2;;
esac
"""


@pytest.mark.parametrize("in_header", [False, True], ids=["own-error", "header-declares-it"])
def test_the_wrapper_stops_at_the_first_route_proving_an_own_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture, in_header: bool
) -> None:
    """Compiler calls, not just the verdict: an own error is compiled once (lean, then the
    preprocessor); a name a header could declare still gets the as-written compile."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "k.cu").write_text(
        "#include <torch/extension.h>\n__global__ void k(float* y) {\n  y[0] = zeroo;\n}\n"
    )
    header = tmp_path / "h.h"
    header.write_text("int zeroo;\n" if in_header else "int other;\n")
    calls = tmp_path / "calls.log"
    fake = tmp_path / "fake-nvcc"
    fake.write_text(FAKE_NVCC.format(calls=calls, header=header))
    fake.chmod(0o755)
    lean = nvcc.lean_include(tmp_path / "lean")
    env = {
        "HK_REAL_NVCC": str(fake),
        "HK_LEAN_INCLUDE": str(lean),
        "HK_SPLIT_CU": "0",
        "PATH": os.environ["PATH"],
    }
    assert nvcc.run(["-O3", "-c", "k.cu", "-o", "k.o"], env) == 2
    lean_call, preprocess = f"-I {lean} -O3 -c k.cu -o k.o", "-O3 k.cu -E"
    record = routes.parse((tmp_path / f"k.o{routes.SUFFIX}").read_bytes())
    assert record is not None
    if in_header:
        assert calls.read_text().splitlines() == [lean_call, preprocess, "-O3 -c k.cu -o k.o"]
        assert record["route"] == "as written" and record["ok"] is False
        assert record["fell_back"] == {"lean": 'k.cu(3): error: identifier "zeroo" is undefined'}
        assert "(as written)" in capfd.readouterr().err
    else:
        assert calls.read_text().splitlines() == [lean_call, preprocess]
        assert record["route"] == "lean" and record["ok"] is False
        assert record["own_error"] == 'k.cu(3): error: identifier "zeroo" is undefined'
        assert 'k.cu(3): error: identifier "zeroo" is undefined' in capfd.readouterr().err


# -- records and their reading ------------------------------------------------------------
def _record(folder: Path, obj: str, **data: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{obj}{routes.SUFFIX}"
    path.write_text(__import__("json").dumps(data))
    return path


def test_records_become_the_results_build_route(tmp_path: Path) -> None:
    ext = tmp_path / "ext"
    rec = routes.Recorder(str(ext / "a" / "cuda.cuda.o"), Path("cuda.cu"))
    (ext / "a").mkdir(parents=True)
    (ext / "a" / "cuda.cu").write_text("")
    rec.enter("split")
    rec.fell_back("split", "kernel template k launched without its template arguments\nmore")
    rec.enter("lean")
    rec.done(True)
    (ext / "b").mkdir()
    (ext / "b" / "cuda.cu").write_text("")
    _record(ext / "b", "cuda.cuda.o", source="cuda.cu", route="split", ok=True, seconds=2.5)
    (ext / "lock").write_text("")  # torch's lock file and other entries are not files of ours
    got = routes.read(ext)
    assert got["route"] == "lean"  # the slowest of its files
    a, b = got["files"]["a/cuda.cu"], got["files"]["b/cuda.cu"]
    assert a["route"] == "lean" and a["ok"] is True and a["seconds"] >= 0
    assert a["fell_back"] == {"split": "kernel template k launched without its template arguments"}
    assert b == {"route": "split", "ok": True, "seconds": 2.5, "fell_back": {}}
    assert routes.read(tmp_path / "nothing") == {"route": "host"}  # no .cu: host code only


def test_a_build_killed_mid_route_says_which(tmp_path: Path) -> None:
    rec = routes.Recorder(str(tmp_path / "cuda.cuda.o"), Path("cuda.cu"))
    (tmp_path / "cuda.cu").write_text("")
    rec.enter("split")
    rec.fell_back("split", "split halves did not compile (device 2, host 0): x")
    rec.enter("lean")  # … and the worker is killed here
    assert routes.read(tmp_path)["files"]["cuda.cu"] == {
        "route": "lean",
        "ok": None,
        "fell_back": {"split": "split halves did not compile (device 2, host 0): x"},
    }


def test_the_build_folder_is_read_as_untrusted_data(tmp_path: Path) -> None:
    """The candidate writes its build folder: a malformed, huge, linked or blocking record
    (a FIFO) is "unknown", and a .cu without a record too; nothing raises or hangs."""
    ext = tmp_path / "ext"
    for name in ("bad", "huge", "fifo", "link", "none", "odd"):
        (ext / name).mkdir(parents=True)
        (ext / name / "cuda.cu").write_text("")
    (ext / "bad" / f"cuda.cuda.o{routes.SUFFIX}").write_text("{not json")
    (ext / "huge" / f"cuda.cuda.o{routes.SUFFIX}").write_text(" " * (routes.MAX_BYTES + 1))
    os.mkfifo(ext / "fifo" / f"cuda.cuda.o{routes.SUFFIX}")
    good = _record(tmp_path, "elsewhere.o", source="cuda.cu", route="split", ok=True)
    (ext / "link" / f"cuda.cuda.o{routes.SUFFIX}").symlink_to(good)
    _record(
        ext / "odd",
        "cuda.cuda.o",
        source="cuda.cu",
        route="lean",
        ok="yes",
        seconds=-1,
        fell_back={"split": "x" * 5000, "warp": "?", "lean": ["not", "text"]},
        own_error=7,
    )
    got: dict[str, Any] = {}
    reader = threading.Thread(target=lambda: got.update(routes.read(ext)), daemon=True)
    reader.start()
    reader.join(30)
    assert not reader.is_alive(), "reading the build folder blocked"
    files = got["files"]
    for name in ("bad", "huge"):
        assert files[f"{name}/cuda.cu"] == {"route": "unknown", "why": "unreadable record"}
    for name in ("fifo", "link", "none"):  # not a regular file: as good as no record
        assert files[f"{name}/cuda.cu"] == {"route": "unknown", "why": "no record of its compile"}
    assert files["odd/cuda.cu"] == {
        "route": "lean",
        "ok": None,
        "fell_back": {"split": "x" * routes.MAX_REASON},
    }
    assert got["route"] == "unknown"


def test_build_route_without_the_wrappers_and_on_the_cpu(tmp_path: Path) -> None:
    from dataclasses import replace

    from pytest_hipkittens.backends import get_backend
    from pytest_hipkittens.evaluate.config import EvalConfig

    cfg = EvalConfig(backend=get_backend("cpu"), build_cache=tmp_path / "cache")
    assert routes.build_route(tmp_path, cfg) == {"route": "host"}
    assert routes.build_route(tmp_path, replace(cfg, fast_builds=False)) == {
        "route": "plain",
        "why": "--hk-plain-builds",
    }


def test_a_built_candidates_result_has_its_route(evaluator, tmp_path: Path) -> None:
    """The runner reads the route after every build the worker answered (here a cpu
    candidate that fails at import: no .cu, so the host route)."""
    from pytest_hipkittens.problems import load_problem_file

    problem = load_problem_file(write_problem(tmp_path / "kb", "1_Scale.py", SCALE_PROBLEM))
    result = evaluator.evaluate(problem, python_candidate("x", 'raise ValueError("no build")'))
    assert result["status"] == "runtime_error" and result["build_route"] == {"route": "host"}
    rejected = evaluator.evaluate(problem, "class ModelNew(:\n")  # never built
    assert rejected["status"] == "compile_error" and rejected["build_route"] is None


def test_summary_counts_the_best_results_routes() -> None:
    def best(route: str | None) -> dict[str, Any]:
        files = {"x/cuda.cu": {"route": route}} if route in routes.ROUTES else {}
        return {"status": "correct", "build_route": route and {"route": route, "files": files}}

    records = [record_from_best(best(r)) for r in ("split", "split", "lean", "host", None)]
    assert [r["build_route"] for r in records] == ["split", "split", "lean", "host", None]
    assert summarize(records)["build_routes"] == {"split": 2, "lean": 1, "host": 1}
    assert summarize([])["build_routes"] == {}
    assert routes.tally([best("lean"), best("split"), {"build_route": None}]) == {
        "candidates": {"lean": 1, "split": 1},
        "files": {"lean": 1, "split": 1},
        "fell_back": {},
    }


# -- real compiles --------------------------------------------------------------------------
def _torch_flags(tmp_path: Path) -> list[str]:
    """The flags torch's extension builder gives a .cu (what matters here: torch's include
    paths; a CPU wheel lacks one generated CUDA header, which a shim provides)."""
    import torch

    include = Path(torch.__file__).parent / "include"
    flags = [
        "-DTORCH_EXTENSION_NAME=hk_ext", "-DTORCH_API_INCLUDE_EXTENSION_H",
        "-isystem", str(include),
        "-isystem", str(include / "torch" / "csrc" / "api" / "include"),
        "-isystem", sysconfig.get_paths()["include"],
    ]  # fmt: skip
    if not (include / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").exists():
        shim = tmp_path / "shim" / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
        shim.parent.mkdir(parents=True)
        shim.write_text("#pragma once\n")
        flags += ["-isystem", str(tmp_path / "shim")]
    return [
        *flags,
        "-D__CUDA_NO_HALF_OPERATORS__", "--expt-relaxed-constexpr",
        "-gencode=arch=compute_90,code=sm_90", "--compiler-options", "-fPIC", "-O3", "-std=c++17",
    ]  # fmt: skip


@dataclass
class Compiled:
    rc: int
    #: the result's build_route, read as the runner reads it
    route: dict[str, Any]
    #: the real compiler's runs, by kind: "split device", "preprocess", "lean", "as written"
    calls: list[str]
    err: str

    @property
    def file(self) -> dict[str, Any]:
        return self.route["files"]["hk_ext/cuda.cu"]


def compile_cu(tmp_path: Path, source: str, capfd: pytest.CaptureFixture) -> Compiled:
    """``source`` as torch's builder compiles a load_inline .cu: through the wrapper, in an
    extension folder, nvcc behind a shim that logs its calls."""
    build = tmp_path / "ext" / "hk_ext"
    build.mkdir(parents=True)
    cu = build / "cuda.cu"
    cu.write_text(source)
    log = tmp_path / "nvcc-calls.log"
    shim = tmp_path / "nvcc"
    shim.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {NVCC} "$@"\n')
    shim.chmod(0o755)
    lean = nvcc.lean_include(tmp_path / "lean")
    env = {k: v for k, v in os.environ.items() if k not in ("HK_PCH_DIR", "HK_SPLIT_CU")}
    env.update(HK_REAL_NVCC=str(shim), HK_LEAN_INCLUDE=str(lean))
    cwd = os.getcwd()
    os.chdir(build)
    try:
        capfd.readouterr()
        rc = nvcc.run([*_torch_flags(tmp_path), "-c", str(cu), "-o", "cuda.cuda.o"], env)
        err = capfd.readouterr().err
    finally:
        os.chdir(cwd)

    def kind(call: str) -> str:
        if call.endswith(" -E"):
            return "preprocess"
        if "device.cu" in call:
            return "split device"
        return "lean" if f"-I {lean} " in call else "as written"

    calls = [kind(c) for c in log.read_text().splitlines()] if log.exists() else []
    return Compiled(rc, routes.read(tmp_path / "ext"), calls, err)


RELU = r"""#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
__global__ void relu_kernel(const float* __restrict__ x, float* __restrict__ y, long n) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i < n) y[i] = fmaxf(x[i], 0.0f);
}
torch::Tensor relu(torch::Tensor x) {
    auto y = torch::empty_like(x);
    long n = x.numel();
    relu_kernel<<<(n + 255) / 256, 256, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<float>(), y.data_ptr<float>(), n);
    return y;
}
"""

#: torch-free, so its lean and as-written compiles take seconds; the splitter refuses it
REFUSED = r"""#include <cuda_runtime.h>
#ifndef SCALE
#define SCALE 2.0f
#endif
__global__ void scale_kernel(float* x, int n) {
    int i = threadIdx.x;
    if (i < n) x[i] *= SCALE;
}
void scale(float* x, int n) { scale_kernel<<<1, 256>>>(x, n); }
"""


@needs_nvcc
def test_a_kernel_file_takes_the_split_route(tmp_path: Path, capfd) -> None:
    got = compile_cu(tmp_path, RELU, capfd)
    assert got.rc == 0, got.err
    assert got.route["route"] == "split" and got.file["ok"] is True
    assert got.file["fell_back"] == {} and got.calls == ["split device"]
    assert (tmp_path / "ext" / "hk_ext" / "cuda.cuda.o").is_file()


@needs_nvcc
def test_a_refused_file_goes_the_lean_way_and_says_why(tmp_path: Path, capfd) -> None:
    got = compile_cu(tmp_path, REFUSED, capfd)
    assert got.rc == 0, got.err
    assert got.route["route"] == "lean" and got.file["ok"] is True
    assert got.file["fell_back"] == {"split": "#ifndef at file level"}
    assert got.calls == ["lean"]


@needs_nvcc
def test_a_valid_file_whose_split_fails_is_never_made_a_compile_error(
    tmp_path: Path, capfd
) -> None:
    """The kernel uses a macro of a torch header, which the split's device half has not:
    a failed lookup in the candidate's own line, which the file as written compiles —
    the header defines it — so the wrapper goes on."""
    source = (
        "#include <c10/macros/Macros.h>\n#include <cuda_runtime.h>\n"
        "__global__ void fill(int* x) { x[threadIdx.x] = C10_WARP_SIZE; }\n"
        "void launch(int* x) { fill<<<1, 32>>>(x); }\n"
    )
    got = compile_cu(tmp_path, source, capfd)
    assert got.rc == 0, got.err
    assert got.route["route"] == "lean" and got.file["ok"] is True
    why = got.file["fell_back"]["split"]
    assert why.startswith("split halves did not compile (device ")
    assert "host 0): cuda.cu(3): error" in why
    assert 'identifier "C10_WARP_SIZE" is undefined' in why
    assert got.calls == ["split device", "preprocess", "lean"]


@needs_nvcc
@pytest.mark.parametrize(
    ("old", "new", "error"),
    [
        ("0.0f);", "zeroo);", 'cuda.cu(5): error: identifier "zeroo" is undefined'),
        ("x.numel()", "x.numelx()", "cuda.cu:9:16: error: "),  # gcc, the host half
    ],
    ids=["kernel", "host-code"],
)
def test_a_genuine_error_is_compiled_once(
    tmp_path: Path, capfd, old: str, new: str, error: str
) -> None:
    """A typo in the kernel or in the torch glue: the split's halves fail on it, the file as
    written is only preprocessed to prove it, and the error names the candidate's own file
    and line (the halves' #line directives)."""
    got = compile_cu(tmp_path, RELU.replace(old, new), capfd)
    assert got.rc != 0
    assert got.route["route"] == "split" and got.file["ok"] is False
    assert got.file["own_error"].startswith(error) and got.file["fell_back"] == {}
    assert got.calls == ["split device", "preprocess"]  # no lean, no as-written compile
    assert error.split(": ")[0].replace("cuda.cu", str(tmp_path / "ext/hk_ext/cuda.cu")) in got.err


@needs_nvcc
def test_a_genuine_error_in_a_refused_file_stops_at_the_lean_route(tmp_path: Path, capfd) -> None:
    got = compile_cu(tmp_path, REFUSED.replace("*= SCALE", "*= SCALEE"), capfd)
    assert got.rc != 0
    assert got.route["route"] == "lean" and got.file["ok"] is False
    assert got.file["own_error"] == 'cuda.cu(7): error: identifier "SCALEE" is undefined'
    assert got.file["fell_back"] == {"split": "#ifndef at file level"}
    assert got.calls == ["lean", "preprocess"]
