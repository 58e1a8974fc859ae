"""The split of a CUDA source into a torch-free device file and a host file (splitcu.py),
and the nvcc wrapper around it. Real compiles run only where nvcc and torch's CUDA headers
are present (this repository's CI has neither): the text-level checks run everywhere."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sysconfig
from pathlib import Path

import pytest

from pytest_hipkittens.evaluate import nvcc
from pytest_hipkittens.evaluate.splitcu import Refused, instantiations, split

TEST_DATA = Path(__file__).parent / "data" / "cu"

SIMPLE = r"""
#include <torch/types.h>
#include <cuda.h>
#include <cuda_runtime.h>
#include <torch/extension.h>
#include <c10/cuda/CUDAStream.h>
// relu_kernel<<<1, 1>>>(x) in a comment and "a __global__ <<< in a string" are not code
__global__ void relu_kernel(const float* __restrict__ x, float* __restrict__ y, long n) {
    long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
    if (i < n) y[i] = fmaxf(x[i], 0.0f);
}
torch::Tensor relu(torch::Tensor x) {
    auto y = torch::empty_like(x);
    const char* note = "relu_kernel<<<";
    long n = x.numel();
    relu_kernel<<<(n + 255) / 256, 256, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x.data_ptr<float>(), y.data_ptr<float>(), n);
    return y;
}
"""

RICH = r"""
#include <torch/extension.h>
#include <cuda_fp16.h>
#include <cooperative_groups.h>
#define CHECK_CUDA(x) TORCH_CHECK(x.device().is_cuda(), #x " must be CUDA")
#define BLOCK 256
constexpr int cdiv(int a, int b) { return (a + b - 1) / b; }
struct Params { const float* x; float* y; int n; float scale; };
namespace hk_test {
__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}
static __global__ void __launch_bounds__(BLOCK) scale_kernel(Params p) {
    extern __shared__ float smem[];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < p.n) p.y[i] = p.x[i] * p.scale + 0.0f * warp_sum(0.0f);
}
void launch(const Params& p, cudaStream_t s, int smem) {
    cudaFuncSetAttribute(scale_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    hk_test::scale_kernel<<<cdiv(p.n, BLOCK), BLOCK, smem, s>>>(p);
}
}  // namespace hk_test
torch::Tensor scale(torch::Tensor x, double factor) {
    CHECK_CUDA(x);
    auto y = torch::empty_like(x);
    Params p{x.data_ptr<float>(), y.data_ptr<float>(), (int)x.numel(), (float)factor};
    hk_test::launch(p, 0, 0);
    return y;
}
"""


def test_simple_kernel_file_splits_into_torch_free_device_code() -> None:
    parts = split(SIMPLE)
    assert [k.name for k in parts.kernels] == ["relu_kernel"]
    assert "torch" not in parts.device and "c10" not in parts.device
    assert "__global__ void relu_kernel" in parts.device
    assert "#include <cuda.h>" in parts.device
    pointer = parts.kernels[0].pointer
    assert "= &relu_kernel;" in parts.device and pointer in parts.device
    # The launch becomes what nvcc lowers it to; comments and strings are left alone.
    assert (
        "((__cudaPushCallConfiguration((n + 255) / 256, 256, 0, "
        f"c10::cuda::getCurrentCUDAStream())) ? (void)0 : ::{pointer}(" in parts.host
    )
    assert '"relu_kernel<<<"' in parts.host
    assert "__global__ void relu_kernel" not in parts.host
    assert parts.host.startswith("#include <torch/extension.h>")
    assert "fmaxf" not in parts.host  # the kernel body stays on the device side


def test_namespaces_macros_helpers_and_other_kernel_uses() -> None:
    parts = split(RICH)
    (kernel,) = parts.kernels
    assert kernel.name == "scale_kernel" and kernel.path == ("hk_test",)
    assert kernel.signature == "void scale_kernel(Params p)"
    # Device-only pieces stay on the device side; shared pieces go to both.
    assert "warp_sum" in parts.device and "warp_sum" not in parts.host
    assert "#include <cooperative_groups.h>" not in parts.host
    for both in ("#define BLOCK 256", "constexpr int cdiv", "struct Params"):
        assert both in parts.device and both in parts.host
    assert "CHECK_CUDA" not in parts.device and "TORCH_CHECK" in parts.host
    ptr = f"::hk_test::{kernel.pointer}"
    assert f"cudaFuncSetAttribute((reinterpret_cast<const void*>({ptr})), " in parts.host
    assert f"? (void)0 : {ptr}(p))" in parts.host
    assert parts.device.count("namespace hk_test {") == 1


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (
            "#include <torch/extension.h>\ntemplate <typename T> __global__ void k(T* x) {}\n"
            "void f(torch::Tensor t) { k<<<1, 1>>>(t.data_ptr<float>()); }",
            "k launched without its template arguments spelled out",
        ),
        (
            "template <typename... T> __global__ void k(T... x) {}\n"
            "void f(float* p) { k<float*><<<1, 1>>>(p); }",
            "parameter pack",
        ),
        (
            "__constant__ float w[4];\n__global__ void k(float* x) { x[0] = w[0]; }\n"
            "void f(float* h, float* d) { cudaMemcpyToSymbol(w, h, 16); k<<<1, 1>>>(d); }",
            "device symbol",
        ),
        (
            "#ifdef USE_FAST\n#define F 1\n#endif\n__global__ void k() {}\n"
            "void f() { k<<<1, 1>>>(); }",
            "#ifdef",
        ),
        ("__global__ void k() {}\nvoid f() { other<<<1, 1>>>(); }", "not a kernel of this file"),
        ("void f() {}\n", "no kernels"),
        ("__global__ void k(int n = 3) {}\nvoid f() { k<<<1, 1>>>(); }", "default arguments"),
        ("namespace {\n__global__ void k() {}\n}\nvoid f() { k<<<1, 1>>>(); }", "anonymous"),
    ],
)
def test_refusals(source: str, reason: str) -> None:
    with pytest.raises(Refused, match=re.escape(reason)):
        split(source)


def test_a_torch_type_in_a_kernel_signature_is_split_not_refused() -> None:
    """The scanner does not judge types: a kernel taking ``at::Half*`` splits, its device
    half names a torch type without torch's headers, so nvcc fails on it and the wrapper
    compiles the file as written (test_a_failing_split_never_fails_the_build)."""
    parts = split(
        "#include <torch/extension.h>\n__global__ void k(at::Half* x) {}\n"
        "void f(torch::Tensor t) { k<<<1, 1>>>(nullptr); }"
    )
    (kernel,) = parts.kernels
    assert kernel.signature == "void k(at::Half* x)"
    assert "at::Half" in parts.device and "#include <torch" not in parts.device
    assert "__global__" not in parts.host and f"::{kernel.pointer}(nullptr)" in parts.host


def test_kernel_templates_get_one_pointer_per_launched_instantiation() -> None:
    source = (TEST_DATA / "template_half_block.cu").read_text()
    parts = split(source)
    (k,) = parts.kernels
    assert (k.tparams, k.targs) == ("typename scalar_t, int BLOCK", "scalar_t, BLOCK")
    assert f"? (void)0 : ::{k.pointer}<scalar_t, 128>(" in parts.host
    assert "template <typename scalar_t, int BLOCK> extern" in parts.host
    assert f"decltype(&scale_t<scalar_t, BLOCK>) {k.pointer} = &scale_t<scalar_t, BLOCK>;" in (
        parts.device
    )
    # The host object's undefined symbols name the instantiations the device file must hold.
    wanted = [f"{k.pointer}<float, 128>", f"{k.pointer}<c10::Half, 128>", "cudaLaunchKernel"]
    assert instantiations(parts.kernels, wanted).splitlines() == [
        f"template decltype(&scale_t<float, 128>) {k.pointer}<float, 128>;",
        f"template decltype(&scale_t<c10::Half, 128>) {k.pointer}<c10::Half, 128>;",
    ]
    ns = split(
        RICH.replace("static __global__ void", "template <int U> __global__ void")
        .replace(
            "cudaFuncSetAttribute(scale_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);",
            "",
        )
        .replace("scale_kernel<<<", "scale_kernel<1><<<")
    )
    (k,) = ns.kernels
    assert instantiations(ns.kernels, [f"hk_test::{k.pointer}<1>"]) == (
        f"namespace hk_test {{ template decltype(&scale_kernel<1>) {k.pointer}<1>; }}"
    )


def test_host_flags_keep_what_the_host_compiler_needs() -> None:
    args = shlex.split(
        "--generate-dependencies-with-compile --dependency-output k.o.d -DTORCH_EXTENSION_NAME=x "
        "-isystem /t/include -D__CUDA_NO_HALF_OPERATORS__ --expt-relaxed-constexpr "
        "-gencode=arch=compute_90,code=sm_90 --compiler-options '-fPIC' -O3 -std=c++17 "
        "--use_fast_math -Xptxas -v -c k.cu -o k.o"
    )
    assert nvcc.host_flags(args, None) == [
        "-DTORCH_EXTENSION_NAME=x",
        "-isystem",
        "/t/include",
        "-D__CUDA_NO_HALF_OPERATORS__",
        "-fPIC",
        "-O3",
        "-std=c++17",
    ]
    with pytest.raises(nvcc.NotSplit, match="-rdc=true"):
        nvcc.host_flags(["-rdc=true", "-c", "k.cu"], None)
    with pytest.raises(nvcc.NotSplit, match="unknown"):
        nvcc.host_flags(["--some-new-flag", "-c", "k.cu"], None)


CORPUS = sorted(TEST_DATA.glob("*.cu"))


def _expectation(path: Path) -> str:
    return re.search(r"^// expect: (.*)$", path.read_text(), re.M).group(1).strip()


SPLITTABLE = [p for p in CORPUS if _expectation(p) == "split"]
REFUSED = [p for p in CORPUS if _expectation(p).startswith("refused ")]


def test_every_corpus_file_states_its_expectation() -> None:
    assert sorted(SPLITTABLE + REFUSED) == CORPUS and SPLITTABLE and REFUSED


@pytest.mark.parametrize("path", SPLITTABLE, ids=[p.stem for p in SPLITTABLE])
def test_corpus_files_that_split(path: Path) -> None:
    """Kernel files in the styles models write, split into a torch-free device half."""
    parts = split(path.read_text())
    assert parts.kernels and "torch" not in parts.device.replace("torch::", "")
    assert "__cudaPushCallConfiguration" in parts.host


@pytest.mark.parametrize("path", REFUSED, ids=[p.stem for p in REFUSED])
def test_corpus_files_refused_for_their_reason(path: Path) -> None:
    with pytest.raises(Refused, match=re.escape(_expectation(path).removeprefix("refused "))):
        split(path.read_text())


def _torch_include(tmp_path: Path) -> list[str]:
    """torch's include flags; a CPU wheel lacks one generated CUDA header, which a shim
    provides (these compiles only check that the halves compile and link)."""
    import torch

    include = Path(torch.__file__).parent / "include"
    flags = [
        "-isystem", str(include),
        "-isystem", str(include / "torch" / "csrc" / "api" / "include"),
        "-isystem", sysconfig.get_paths()["include"],
    ]  # fmt: skip
    if not (include / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").exists():
        shim = tmp_path / "shim" / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h"
        shim.parent.mkdir(parents=True)
        shim.write_text("#pragma once\n")
        flags += ["-isystem", str(tmp_path / "shim")]
    return flags


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
@pytest.mark.parametrize("path", SPLITTABLE, ids=[p.stem for p in SPLITTABLE])
def test_real_split_compile_links_every_launch_to_its_kernel(tmp_path: Path, path: Path) -> None:
    """nvcc compiles the device half, the host compiler the host half, and the joined object
    defines every kernel pointer the host half uses (no PCH here: ~10 s per file)."""
    (tmp_path / "cuda.cu").write_text(path.read_text())
    args = [
        "-DTORCH_EXTENSION_NAME=x",
        "-DTORCH_API_INCLUDE_EXTENSION_H",
        *_torch_include(tmp_path),
        "-D__CUDA_NO_HALF_OPERATORS__",
        "-D__CUDA_NO_HALF_CONVERSIONS__",
        "--expt-relaxed-constexpr",
        "-gencode=arch=compute_90,code=sm_90",
        "--compiler-options", "-fPIC",
        "-O3", "-std=c++17", "-c", str(tmp_path / "cuda.cu"), "-o", str(tmp_path / "cuda.o"),
    ]  # fmt: skip
    real = shutil.which("nvcc") or "nvcc"
    lean = nvcc.lean_include(tmp_path / "lean")
    try:
        nvcc.split_compile(args, dict(os.environ, HK_REAL_NVCC=real), real, lean)
    except nvcc.NotSplit as exc:
        logs = "".join(p.read_text() for p in tmp_path.glob("cuda.o.hk-split/*.log"))
        missing = re.search(r"fatal error: (cu\w+\.h): No such file", logs)
        if missing:  # a compile-only toolkit without the CUDA libraries' headers
            pytest.skip(f"this CUDA toolkit has no {missing.group(1)}")
        pytest.fail(f"{exc}\n{logs[-3000:]}")
    defined, undefined = nvcc._symbols(tmp_path / "cuda.o", dict(os.environ))
    for k in split(path.read_text()).kernels:
        uses = {s for s in defined | undefined if k.pointer in s}
        assert uses and uses <= defined, (k.name, uses - defined)


def test_a_failing_split_never_fails_the_build(tmp_path: Path, monkeypatch) -> None:
    """Whatever goes wrong in the split (here: the scanner itself raising), the wrapper goes
    on to the lean and as-written compiles."""
    from pytest_hipkittens.evaluate import splitcu

    def broken(src: str, file: str | None = None) -> None:
        raise IndexError("scanner bug")

    monkeypatch.setattr(splitcu, "split", broken)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "k.cu").write_text(SIMPLE)
    fake = tmp_path / "fake-nvcc"
    fake.write_text('#!/bin/sh\necho "$@" >> calls.log\n')
    fake.chmod(0o755)
    lean = nvcc.lean_include(tmp_path / "lean")
    env = {"HK_REAL_NVCC": str(fake), "HK_LEAN_INCLUDE": str(lean), "PATH": os.environ["PATH"]}
    assert nvcc.run(["-c", "k.cu", "-o", "k.o"], env) == 0
    assert (tmp_path / "calls.log").read_text().splitlines() == [f"-I {lean} -c k.cu -o k.o"]
    notes = (tmp_path / "hk_nvcc.log").read_text()
    assert "not split: IndexError: scanner bug" in notes and "lean header" in notes
