"""Command-line and ini options, and the one place that resolves them into Settings.

Convention (the pytest plugins we model this on): one option group; ``--hk-*`` for the long tail plus the few names
users asked for (``--range``, ``--level``, ``--kernelbench-dir``, ``--backend``, ``--llm``);
kebab-case flags, explicit ``dest``, CAPS metavars, ``type=`` validators that raise one
clear line, defaults shown in help. Stable settings are also snake_case ini options;
precedence is CLI > ini > environment > default.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .backends import NAMES as BACKEND_NAMES
from .llm import DEFAULT_RESPONSES, KEY_ENV, URL_ENV
from .problems import ProblemError, parse_range, resolve_root
from .session import PACKAGE_PROMPTS, Settings, default_build_cache


def _range(text: str) -> list[tuple[int, int]]:
    try:
        return parse_range(text)
    except ProblemError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--range {text!r}: ")) from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def load_prices(path: str) -> dict[str, tuple[float, float]]:
    """``{"model": [input_usd_per_mtok, output_usd_per_mtok]}``; one clear line if malformed."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise pytest.UsageError(f"--hk-prices: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise pytest.UsageError(f"--hk-prices: {path}: invalid JSON at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise pytest.UsageError("--hk-prices: expected an object of model -> [input, output]")
    prices: dict[str, tuple[float, float]] = {}
    for model, pair in data.items():
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(x, (int, float)) for x in pair)
        ):
            raise pytest.UsageError(
                f"--hk-prices: {model!r} must map to [input, output] USD per million tokens"
            )
        prices[model] = (float(pair[0]), float(pair[1]))
    return prices


def _shard(text: str) -> tuple[int, int]:
    from .scale import ScaleError, parse_shard

    try:
        return parse_shard(text)
    except ScaleError as exc:
        raise argparse.ArgumentTypeError(str(exc).split(": ", 1)[1]) from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


def _speedup(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


# name, flag kwargs, ini type (None: CLI only), env var, help
OPTIONS: list[tuple[str, dict[str, Any], str | None, str | None, str]] = [
    (
        "--range",
        {"dest": "hk_range", "metavar": "SPEC", "type": _range},
        None,
        None,
        "problem ids to run, inclusive: 19-25, 19 or 1-5,9 (default: all)",
    ),
    (
        "--level",
        {"dest": "hk_levels", "metavar": "N", "type": _positive, "action": "append"},
        None,
        None,
        "KernelBench level to run; repeat for several (default: 1)",
    ),
    (
        "--kernelbench-dir",
        {"dest": "hk_kernelbench_dir", "metavar": "DIR"},
        None,
        "KERNELBENCH_DIR",
        "KernelBench checkout or folder of problems (default: $KERNELBENCH_DIR, else the bundled samples)",
    ),
    (
        "--backend",
        {"dest": "hk_backend", "choices": BACKEND_NAMES},
        "string",
        "HK_BACKEND",
        "target: auto picks hip on ROCm torch, cuda on CUDA torch with a GPU, else cpu (default: auto)",
    ),
    (
        "--hk-arch",
        {"dest": "hk_arch", "metavar": "ARCH"},
        "string",
        "HK_ARCH",
        "override the detected arch (sm_90a, gfx942, gfx950)",
    ),
    (
        "--hk-attempts",
        {"dest": "hk_attempts", "metavar": "N", "type": _positive},
        "string",
        None,
        "attempts per problem, with reflection between them (default: 3)",
    ),
    (
        "--hk-samples",
        {"dest": "hk_samples", "metavar": "N", "type": _positive},
        "string",
        "NUM_SAMPLES",
        "candidates drawn per attempt (default: $NUM_SAMPLES or 3)",
    ),
    (
        "--hk-results",
        {"dest": "hk_results", "metavar": "DIR"},
        "string",
        None,
        "results tree (default: results/)",
    ),
    (
        "--hk-shard",
        {"dest": "hk_shard", "metavar": "I/N", "type": _shard},
        None,
        None,
        "run shard I of N: a deterministic, balanced subset of the selected problems (multi-host runs)",
    ),
    (
        "--hk-run-label",
        {"dest": "hk_run_label", "metavar": "TEXT"},
        "string",
        "HK_RUN_LABEL",
        "a name for this run in its metadata and in hk-report --compare (default: none)",
    ),
    (
        "--hk-redo",
        {"dest": "hk_redo", "action": "store_true"},
        None,
        None,
        "redo problems already finished in the results tree (default: skip them)",
    ),
    (
        "--llm",
        {"dest": "hk_llm", "choices": ("openai", "replay")},
        "string",
        None,
        f"openai: the gateway (${KEY_ENV}); replay: recorded responses (default: replay)",
    ),
    (
        "--hk-responses",
        {"dest": "hk_responses", "metavar": "DIR"},
        "string",
        None,
        "recorded responses for --llm replay (default: the bundled ones)",
    ),
    (
        "--hk-prompts",
        {"dest": "hk_prompts", "metavar": "DIR"},
        "string",
        None,
        "folder holding config.json and prompt files (default: prompts/)",
    ),
    (
        "--hk-prompt",
        {"dest": "hk_prompt", "metavar": "FILE"},
        None,
        None,
        "use this prompt file for every problem, overriding config.json",
    ),
    (
        "--hk-model",
        {"dest": "hk_model", "metavar": "NAME"},
        "string",
        "LLM_MODEL",
        "model name on the gateway (default: gpt-4o)",
    ),
    (
        "--hk-base-url",
        {"dest": "hk_base_url", "metavar": "URL"},
        "string",
        URL_ENV,
        f"OpenAI-compatible gateway URL (default: ${URL_ENV})",
    ),
    (
        "--hk-temperature",
        {"dest": "hk_temperature", "metavar": "T", "type": _speedup},
        "string",
        None,
        "sampling temperature (default: 0.7)",
    ),
    (
        "--hk-max-tokens",
        {"dest": "hk_max_tokens", "metavar": "N", "type": _positive},
        "string",
        None,
        "completion token limit per request (default: 8192)",
    ),
    (
        "--hk-llm-timeout",
        {"dest": "hk_llm_timeout", "metavar": "S", "type": _seconds},
        "string",
        None,
        "seconds one gateway request may take before it is retried (default: 600)",
    ),
    (
        "--hk-llm-retries",
        {"dest": "hk_llm_retries", "metavar": "N", "type": _count},
        "string",
        None,
        "retries with exponential backoff on 429/5xx/timeouts/connection errors (default: 5)",
    ),
    (
        "--hk-llm-concurrency",
        {"dest": "hk_llm_concurrency", "metavar": "N", "type": _positive},
        "string",
        None,
        "gateway requests in flight at once per process (default: 8)",
    ),
    (
        "--hk-prices",
        {"dest": "hk_prices", "metavar": "FILE"},
        "string",
        None,
        'JSON price table, USD per million tokens: {"model": [input, output]} (default: cost not estimated)',
    ),
    (
        "--hk-profile",
        {"dest": "hk_profile", "choices": ("slow", "always", "never")},
        "string",
        None,
        "profile the best kernel in teardown: when slower than PyTorch, always or never (default: slow)",
    ),
    (
        "--hk-target-speedup",
        {"dest": "hk_target_speedup", "metavar": "X", "type": _speedup},
        "string",
        None,
        "stop early once a correct kernel reaches this speedup (default: 1.0)",
    ),
    (
        "--hk-verify-timing",
        {"dest": "hk_verify_timing", "action": "store_true"},
        None,
        None,
        "cross-check the best kernel's time under Nsight Compute (cuda; recorded as timing.ncu_ms)",
    ),
    (
        "--hk-build-timeout",
        {"dest": "hk_build_timeout", "metavar": "S", "type": _seconds},
        "string",
        None,
        "seconds one candidate may build (default: 900)",
    ),
    (
        "--hk-run-timeout",
        {"dest": "hk_run_timeout", "metavar": "S", "type": _seconds},
        "string",
        None,
        "seconds one verification or timing step may run (default: 300)",
    ),
    (
        "--hk-build-cache",
        {"dest": "hk_build_cache", "metavar": "DIR"},
        "string",
        "HK_BUILD_CACHE",
        "content-addressed build cache (default: ~/.cache/pytest-hipkittens/builds)",
    ),
    (
        "--hk-correctness-trials",
        {"dest": "hk_correctness_trials", "metavar": "N", "type": _positive},
        "string",
        None,
        "random inputs each candidate must match the reference on (default: 5)",
    ),
    (
        "--hk-progress",
        {"dest": "hk_progress", "choices": ("auto", "rich", "plain", "off")},
        "string",
        None,
        "live stage line per problem: rich on a terminal, plain in logs (auto), or off (default: auto)",
    ),
    (
        "--hk-read-only",
        {"dest": "hk_read_only", "action": "store_true"},
        "bool",
        None,
        "write nothing into the results tree (hk-report --html rebuilds a report from it this way)",
    ),
    (
        "--hk-plain-builds",
        {"dest": "hk_plain_builds", "action": "store_true"},
        "bool",
        None,
        "build candidates exactly as plain load_inline does: no split .cu builds, no precompiled or lean torch headers",
    ),
    (
        "--hk-precision",
        {"dest": "hk_precision", "choices": ("fp32", "fp16", "bf16")},
        "string",
        "HK_PRECISION",
        "cast reference, candidate and inputs like KernelBench's precision option; tolerance 1e-4 fp32, 1e-2 fp16/bf16 (default: fp32)",
    ),
    (
        "--hk-isolation",
        {"dest": "hk_isolation", "choices": ("auto", "required", "off")},
        "string",
        "HK_ISOLATION",
        "workers see a read-only filesystem but their scratch folders (Linux namespaces): auto uses it where the host allows, required refuses to run without it, off never tries (default: auto)",
    ),
    (
        "--hk-cpu-inputs",
        {"dest": "hk_cpu_inputs", "action": "store_true"},
        "bool",
        "HK_CPU_INPUTS",
        "draw each trial's inputs on the CPU generator and move them to the device, for exactly KernelBench's values (default: drawn on the device, much faster at real sizes)",
    ),
    (
        "--hk-allow-torch-ops",
        {"dest": "hk_allow_torch_ops", "action": "store_true"},
        "bool",
        "HK_ALLOW_TORCH_OPS",
        "accept forwards whose work PyTorch's own ops do (baselines; default: rejected)",
    ),
    (
        "--hk-forbid-libraries",
        {"dest": "hk_forbid_libraries", "action": "store_true"},
        "bool",
        None,
        "reject kernels whose own code calls cuBLAS, hipBLASLt, rocBLAS, cuDNN, MIOpen (default: allowed, recorded as uses_library)",
    ),
    (
        "--hk-max-speedup",
        {"dest": "hk_max_speedup", "metavar": "X", "type": _speedup},
        "string",
        None,
        "re-verify and flag speedups above X (0: never; default: 10)",
    ),
    (
        "--hk-compile-baseline",
        {"dest": "hk_compile_baseline", "action": "store_true"},
        "bool",
        None,
        "also time torch.compile of the reference: a second speedup column (default: off)",
    ),
    (
        "--hk-secret-env",
        {"dest": "hk_secret_env", "metavar": "PATTERN", "action": "append"},
        "linelist",
        None,
        "more environment variables (fnmatch patterns) kept from generated code, besides *_KEY, *_TOKEN, *_SECRET, …",
    ),
    (
        "--hk-timing-trials",
        {"dest": "hk_timing_trials", "metavar": "N", "type": _positive},
        "string",
        None,
        "timed runs of reference and candidate, interleaved (default: 100, fewer if slow)",
    ),
]

DEFAULTS = Settings(root=Path("."), levels=[1], spans=None)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("hipkittens", "pytest-hipkittens (LLM kernel benchmark)")
    for flag, kwargs, ini_type, _env, help_text in OPTIONS:
        group.addoption(flag, help=help_text, **kwargs)
        if ini_type:
            parser.addini(kwargs["dest"], help=help_text, type=ini_type, default=None)


def _get(config: pytest.Config, dest: str, conv: Callable[[str], Any] = str) -> Any:
    """CLI > ini > environment; None when unset. Ini/env values go through ``conv``."""
    value = config.getoption(dest, None)
    if value is not None and value is not False:
        return value
    flag, kwargs, env = next(
        ((f, k, e) for f, k, _i, e, _h in OPTIONS if k["dest"] == dest), (dest, {}, None)
    )
    raw = None
    try:
        raw = config.getini(dest)
    except ValueError:
        raw = None
    if raw in (None, "") and env:
        raw = os.environ.get(env) or None
    if raw in (None, ""):
        return None
    choices = kwargs.get("choices")
    if choices and str(raw) not in choices:  # the command line's own check, for ini and env
        raise pytest.UsageError(f"{flag}: {str(raw)!r} is not one of: {', '.join(choices)}")
    try:
        return conv(str(raw))
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise pytest.UsageError(f"{dest}: {exc}") from None


def _flag(config: pytest.Config, dest: str) -> bool:
    """A boolean option: CLI flag, else ini (true/false), else environment (1/true/yes)."""
    value = _get(config, dest, str)
    return value is True or str(value).strip().lower() in ("1", "true", "yes", "on")


def _or(value: Any, default: Any) -> Any:
    """``value`` unless unset (None); 0 and 0.0 are real settings."""
    return default if value is None else value


def resolve_settings(config: pytest.Config) -> Settings:
    """All settings, validated; raises pytest.UsageError with one line on bad input."""
    d = DEFAULTS
    try:
        root = resolve_root(config.getoption("hk_kernelbench_dir", None))
    except ProblemError as exc:
        raise pytest.UsageError(str(exc)) from None
    backend = _or(_get(config, "hk_backend"), d.backend)
    if backend not in BACKEND_NAMES:
        raise pytest.UsageError(
            f"--backend: unknown backend {backend!r}; choose from {', '.join(BACKEND_NAMES)}"
        )
    llm = _or(_get(config, "hk_llm"), d.llm)
    if llm not in ("openai", "replay"):
        raise pytest.UsageError(f"--llm: unknown client {llm!r}; choose openai or replay")
    if llm == "openai" and not os.environ.get(KEY_ENV):
        raise pytest.UsageError(
            f"--llm openai needs the gateway key in ${KEY_ENV} (or use --llm replay)"
        )
    profile = _or(_get(config, "hk_profile"), d.profile)
    if profile not in ("slow", "always", "never"):
        raise pytest.UsageError(f"--hk-profile: {profile!r} is not slow, always or never")
    responses = Path(_get(config, "hk_responses") or DEFAULT_RESPONSES)
    if llm == "replay" and not responses.is_dir():
        raise pytest.UsageError(f"--hk-responses: {responses} is not a directory")
    prompts_dir = _get(config, "hk_prompts")
    if prompts_dir is None:
        local = config.rootpath / "prompts"
        prompts_dir = local if (local / "config.json").is_file() else PACKAGE_PROMPTS
    prompts_dir = Path(prompts_dir)
    if not (prompts_dir / "config.json").is_file():
        raise pytest.UsageError(f"--hk-prompts: no config.json in {prompts_dir}")
    prompt_file = config.getoption("hk_prompt", None)
    if prompt_file and not Path(prompt_file).is_file():
        raise pytest.UsageError(f"--hk-prompt: {prompt_file} not found")
    isolation = _or(_get(config, "hk_isolation"), d.isolation)
    if isolation == "required":
        from .evaluate import isolation as iso

        reason = iso.unavailable()
        if reason:
            raise pytest.UsageError(
                f"--hk-isolation required: workers cannot be isolated on this host ({reason})"
            )
    results = Path(_get(config, "hk_results") or "results")
    if not results.is_absolute():
        results = Path(config.invocation_params.dir) / results
    return Settings(
        root=root,
        levels=config.getoption("hk_levels", None) or [1],
        spans=config.getoption("hk_range", None),
        backend=backend,
        arch=_get(config, "hk_arch"),
        attempts=_or(_get(config, "hk_attempts", _positive), d.attempts),
        samples=_or(_get(config, "hk_samples", _positive), d.samples),
        results=results,
        llm=llm,
        responses=responses,
        prompts_dir=prompts_dir,
        prompt_file=Path(prompt_file) if prompt_file else None,
        model=_or(_get(config, "hk_model"), d.model),
        base_url=_get(config, "hk_base_url"),
        temperature=_or(_get(config, "hk_temperature", _speedup), d.temperature),
        max_tokens=_or(_get(config, "hk_max_tokens", _positive), d.max_tokens),
        llm_timeout=_or(_get(config, "hk_llm_timeout", _seconds), d.llm_timeout),
        llm_retries=_or(_get(config, "hk_llm_retries", _count), d.llm_retries),
        llm_concurrency=_or(_get(config, "hk_llm_concurrency", _positive), d.llm_concurrency),
        prices=load_prices(prices) if (prices := _get(config, "hk_prices")) else {},
        redo=bool(config.getoption("hk_redo", False)),
        shard=config.getoption("hk_shard", None),
        run_label=_get(config, "hk_run_label"),
        verify_timing=bool(config.getoption("hk_verify_timing", False)),
        profile=profile,
        target_speedup=_or(_get(config, "hk_target_speedup", _speedup), d.target_speedup),
        build_timeout=_or(_get(config, "hk_build_timeout", _seconds), d.build_timeout),
        run_timeout=_or(_get(config, "hk_run_timeout", _seconds), d.run_timeout),
        build_cache=Path(_get(config, "hk_build_cache") or default_build_cache()),
        correctness_trials=_or(
            _get(config, "hk_correctness_trials", _positive), d.correctness_trials
        ),
        timing_trials=_or(_get(config, "hk_timing_trials", _positive), d.timing_trials),
        precision=_or(_get(config, "hk_precision"), d.precision),
        progress=_or(_get(config, "hk_progress"), d.progress),
        allow_torch_ops=_flag(config, "hk_allow_torch_ops"),
        forbid_libraries=_flag(config, "hk_forbid_libraries"),
        max_speedup=_or(_get(config, "hk_max_speedup", _speedup), d.max_speedup),
        compile_baseline=_flag(config, "hk_compile_baseline"),
        cpu_inputs=_flag(config, "hk_cpu_inputs"),
        isolation=isolation,
        fast_builds=not _flag(config, "hk_plain_builds"),
        read_only=_flag(config, "hk_read_only"),
        secret_env=tuple(
            config.getoption("hk_secret_env", None) or config.getini("hk_secret_env") or ()
        ),
    )
