from __future__ import annotations

from pytest_hipkittens.profile import findings, is_builtin, kernel_table, parse_ncu_csv


def test_builtin_names() -> None:
    for name in (
        "aten::copy_",
        "void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>",
        "void cutlass::Kernel2<cutlass_80_simt_sgemm_128x64_8x5_nn_align1>(...)",
        "sm90_xmma_gemm_f32f32_tf32f32_f32_nn_n_tilesize128x128x32",
        "Cijk_Alik_Bljk_SB_MT64x64x16",
        "void at::native::reduce_kernel<512, 1>(...)",
        "ampere_sgemm_128x64_nn",
        "void gemv2T_kernel_val<int, int, float, float, float>",
        "Memcpy DtoD (Device -> Device)",
    ):
        assert is_builtin(name), name
    for name in (
        "relu_tk_kernel(kittens::gl<float>)",
        "softmax_rows_kernel(float const*, float*, int)",
        "my_gemm",
        "tiled_gemm_kernel",
    ):
        assert not is_builtin(name), name


def test_kernel_table_per_run_and_sorted() -> None:
    rows = [
        {"name": "mine", "us": 300.0, "calls": 5},
        {"name": "aten::copy_", "us": 700.0, "calls": 10},
    ]
    table = kernel_table(rows, 1000.0, runs=5)
    assert [k["name"] for k in table] == ["aten::copy_", "mine"]
    assert (
        abs(table[0]["ms"] - 0.14) < 1e-12 and table[0]["share"] == 0.7 and table[0]["calls"] == 2
    )
    assert table[0]["builtin"] and not table[1]["builtin"]


def test_findings_name_builtin_work_and_overhead() -> None:
    table = kernel_table(
        [
            {"name": "void at::native::bfloat16_copy_kernel_cuda", "us": 400.0},
            {"name": "mine", "us": 600.0},
        ],
        1000.0,
        runs=1,
    )
    text = "\n".join(findings(table, speedup=0.5))
    assert "2.00x slower" in text
    assert "`void at::native::bfloat16_copy_kernel_cuda` takes 40%" in text and "dtype cast" in text
    assert "Your own code `mine` takes 60%" in text
    gpu = findings(
        kernel_table([{"name": "k", "us": 10.0}], 10.0, runs=1),
        0.9,
        measured_ms=0.03,
        device_times=True,
    )
    assert any("launch and host overhead dominate" in f for f in gpu)
    assert (
        findings([], 0.5)[-1]
        == "The profiler recorded no kernels for the candidate's forward pass."
    )


NCU_CSV = """==PROF== Connected to process 4242 (/usr/bin/python3)
==PROF== Profiling "relu_tk_kernel": 0%....50%....100% - 1 pass
"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","4242","python3","127.0.0.1","relu_tk_kernel(kittens::gl<float, 1, 1, -1, -1>)","1","7","(32, 1, 1)","(128, 32, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","ns","13,536"
"1","4242","python3","127.0.0.1","relu_tk_kernel(kittens::gl<float, 1, 1, -1, -1>)","1","7","(32, 1, 1)","(128, 32, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","usecond","13.6"
==PROF== Disconnected from process 4242
"""


def test_parse_ncu_csv() -> None:
    launches = parse_ncu_csv(NCU_CSV)
    assert [round(x["ns"]) for x in launches] == [13536, 13600]
    assert launches[0]["name"].startswith("relu_tk_kernel")
    assert parse_ncu_csv("==PROF== no kernels were profiled") == []
