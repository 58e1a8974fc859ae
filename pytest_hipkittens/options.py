"""Command-line and ini options, and the one place that resolves them into Settings.

Convention (the pytest plugins we model this on): one option group; ``--hk-*`` for the long
tail plus the few names users asked for (``--range``, ``--level``, ``--kernelbench-dir``,
``--backend``, ``--llm``); kebab-case flags, explicit ``dest``, CAPS metavars, defaults shown
in help. Stable settings are also snake_case ini options, some also environment variables;
precedence is CLI > ini > environment > default.

Every option is one ``Option`` row of ``OPTIONS``. Its text from any source — the command
line, the ini file (or ``-o``), the environment — goes through the same ``Option.parse``
(choices, then the converter), so a bad value is the same one-line usage error wherever it
came from, naming that source: ``--hk-precision: 'fp64' is not one of: fp32, fp16, bf16
(from $HK_PRECISION)``. That is also why argparse gets no ``type=`` or ``choices=``: its own
errors are a usage block of several lines and could not say where a value came from.
Defaults live in one place, the fields of ``session.Settings``; an option a source does not
set is left to them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .backends import NAMES as BACKEND_NAMES
from .llm import KEY_ENV, URL_ENV
from .problems import ProblemError, parse_range, resolve_root
from .session import PACKAGE_PROMPTS, Settings

# -- converters: text -> value, or ValueError with what is wrong (the caller adds the flag
# and the source) ---------------------------------------------------------------------------


def _range(text: str) -> list[tuple[int, int]]:
    try:
        return parse_range(text)
    except ProblemError as exc:
        raise ValueError(str(exc).removeprefix(f"--range {text!r}: ")) from None


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None


def _positive(text: str) -> int:
    """A count that must be at least 1 (attempts, samples, trials, …)."""
    value = _whole(text)
    if value < 1:
        raise ValueError(f"{text!r} must be at least 1")
    return value


def _count(text: str) -> int:
    """A count that may be 0 (retries)."""
    value = _whole(text)
    if value < 0:
        raise ValueError(f"{text!r} must not be negative")
    return value


def _number(text: str) -> float:
    """A finite float (``nan`` or ``inf`` would pass every comparison made with it)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _non_negative(text: str) -> float:
    """A sampling temperature or a speedup threshold: 0 or more (0 has a meaning of its
    own: greedy sampling, stop at the first correct kernel, never re-verify)."""
    value = _number(text)
    if value < 0:
        raise ValueError(f"{text!r} must not be negative")
    return value


def _seconds(text: str) -> float:
    """A timeout: a positive number of seconds."""
    try:
        value = _number(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{text!r} must be positive")
    return value


def _shard(text: str) -> tuple[int, int]:
    from .scale import ScaleError, parse_shard

    try:
        return parse_shard(text)
    except ScaleError as exc:
        raise ValueError(str(exc).split(": ", 1)[1]) from None


#: pytest's own truth values for a ``bool`` ini option (``_strtobool``), so a flag reads the
#: same from the ini file and from the environment.
_TRUE = ("y", "yes", "t", "true", "on", "1")
_FALSE = ("n", "no", "f", "false", "off", "0")


def _boolean(text: str) -> bool:
    """An on/off flag's value in the environment (``HK_CPU_INPUTS=1``)."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{text!r} is not one of: {', '.join(_TRUE + _FALSE)}")


def load_prices(path: str) -> dict[str, tuple[float, float]]:
    """``{"model": [input_usd_per_mtok, output_usd_per_mtok]}``; ValueError, one line, if
    the file cannot be read or is malformed (the ``--hk-prices`` converter)."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON at line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected an object of model -> [input, output]")
    prices: dict[str, tuple[float, float]] = {}
    for model, pair in data.items():
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in pair)
        ):
            raise ValueError(f"{model!r} must map to [input, output] USD per million tokens")
        prices[model] = (float(pair[0]), float(pair[1]))
    return prices


CLI = "the command line"


@dataclass(frozen=True)
class Option:
    """One option: its flag, the other sources it may come from, and how its text is checked.

    ``field`` names the ``Settings`` attribute it fills, whose default is the option's
    default (``default``); None for the few resolve_settings derives itself.
    """

    flag: str
    dest: str
    help: str
    field: str | None = None
    convert: Callable[[str], Any] | None = None
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    #: argparse action: None (one value), "store_true" (a flag) or "append" (repeatable)
    action: str | None = None
    #: also an ini option named ``dest``
    ini: bool = False
    #: environment variable read after the ini file
    env: str | None = None

    @property
    def ini_type(self) -> str:
        """pytest's ini type: ``bool`` for flags (native TOML booleans keep working),
        ``linelist`` for repeatable options, else ``string`` converted by ``parse``."""
        return {"store_true": "bool", "append": "linelist"}.get(self.action or "", "string")

    @property
    def default(self) -> Any:
        return getattr(DEFAULTS, self.field) if self.field else None

    def parse(self, text: str, source: str) -> Any:
        """The value of ``text`` from ``source``; the one check every source goes through.

        Raises pytest.UsageError, one line: ``--flag: what is wrong (from source)``.
        """
        try:
            if self.choices and text not in self.choices:
                raise ValueError(f"{text!r} is not one of: {', '.join(self.choices)}")
            if self.action == "store_true":
                return _boolean(text)
            return self.convert(text) if self.convert else text
        except ValueError as exc:
            raise pytest.UsageError(f"{self.flag}: {exc} (from {source})") from None

    def add_to(self, parser: pytest.Parser, group: Any) -> None:
        """Register the flag (no argparse ``type=``/``choices=``: ``parse`` checks every
        source) and its ini twin."""
        kwargs: dict[str, Any] = {"dest": self.dest, "help": self.help}
        if self.action:
            kwargs["action"] = self.action
        if self.action != "store_true":
            # what argparse would show for choices: --backend={auto,cpu,cuda,hip}
            kwargs["metavar"] = self.metavar or "{" + ",".join(self.choices) + "}"
        group.addoption(self.flag, **kwargs)
        if self.ini:
            parser.addini(self.dest, help=self.help, type=self.ini_type, default=None)


OPTIONS: tuple[Option, ...] = (
    Option(
        "--range",
        "hk_range",
        "problem ids to run, inclusive: 19-25, 19 or 1-5,9 (default: all)",
        field="spans",
        convert=_range,
        metavar="SPEC",
    ),
    Option(
        "--level",
        "hk_levels",
        "KernelBench level to run; repeat for several (default: 1)",
        field="levels",
        convert=_positive,
        metavar="N",
        action="append",
    ),
    Option(
        "--kernelbench-dir",
        "hk_kernelbench_dir",
        "KernelBench checkout or folder of problems (default: $KERNELBENCH_DIR, else the bundled samples)",
        metavar="DIR",
        env="KERNELBENCH_DIR",  # read by problems.resolve_root, which names it in its errors
    ),
    Option(
        "--backend",
        "hk_backend",
        "target: auto picks hip on ROCm torch, cuda on CUDA torch with a GPU, else cpu (default: auto)",
        field="backend",
        choices=tuple(BACKEND_NAMES),
        ini=True,
        env="HK_BACKEND",
    ),
    Option(
        "--hk-arch",
        "hk_arch",
        "override the detected arch (sm_90a, gfx942, gfx950)",
        field="arch",
        metavar="ARCH",
        ini=True,
        env="HK_ARCH",
    ),
    Option(
        "--hk-attempts",
        "hk_attempts",
        "attempts per problem, with reflection between them (default: 3)",
        field="attempts",
        convert=_positive,
        metavar="N",
        ini=True,
    ),
    Option(
        "--hk-samples",
        "hk_samples",
        "candidates drawn per attempt (default: $NUM_SAMPLES or 3)",
        field="samples",
        convert=_positive,
        metavar="N",
        ini=True,
        env="NUM_SAMPLES",
    ),
    Option(
        "--hk-results",
        "hk_results",
        "results tree (default: results/)",
        field="results",
        convert=Path,
        metavar="DIR",
        ini=True,
    ),
    Option(
        "--hk-shard",
        "hk_shard",
        "run shard I of N: a deterministic, balanced subset of the selected problems (multi-host runs)",
        field="shard",
        convert=_shard,
        metavar="I/N",
    ),
    Option(
        "--hk-run-label",
        "hk_run_label",
        "a name for this run in its metadata and in hk-report --compare (default: none)",
        field="run_label",
        metavar="TEXT",
        ini=True,
        env="HK_RUN_LABEL",
    ),
    Option(
        "--hk-redo",
        "hk_redo",
        "redo problems already finished in the results tree (default: skip them)",
        field="redo",
        action="store_true",
    ),
    Option(
        "--llm",
        "hk_llm",
        f"openai: the gateway (${KEY_ENV}); replay: recorded responses (default: replay)",
        field="llm",
        choices=("openai", "replay"),
        ini=True,
    ),
    Option(
        "--hk-responses",
        "hk_responses",
        "recorded responses for --llm replay (default: the bundled ones)",
        field="responses",
        convert=Path,
        metavar="DIR",
        ini=True,
    ),
    Option(
        "--hk-prompts",
        "hk_prompts",
        "folder holding config.json and prompt files (default: prompts/)",
        field="prompts_dir",
        convert=Path,
        metavar="DIR",
        ini=True,
    ),
    Option(
        "--hk-prompt",
        "hk_prompt",
        "use this prompt file for every problem, overriding config.json",
        field="prompt_file",
        convert=Path,
        metavar="FILE",
    ),
    Option(
        "--hk-model",
        "hk_model",
        "model name on the gateway (default: gpt-4o)",
        field="model",
        metavar="NAME",
        ini=True,
        env="LLM_MODEL",
    ),
    Option(
        "--hk-base-url",
        "hk_base_url",
        f"OpenAI-compatible gateway URL (default: ${URL_ENV})",
        field="base_url",
        metavar="URL",
        ini=True,
        env=URL_ENV,
    ),
    Option(
        "--hk-temperature",
        "hk_temperature",
        "sampling temperature (default: 0.7)",
        field="temperature",
        convert=_non_negative,
        metavar="T",
        ini=True,
    ),
    Option(
        "--hk-max-tokens",
        "hk_max_tokens",
        "completion token limit per request (default: 8192)",
        field="max_tokens",
        convert=_positive,
        metavar="N",
        ini=True,
    ),
    Option(
        "--hk-llm-timeout",
        "hk_llm_timeout",
        "seconds one gateway request may take before it is retried (default: 600)",
        field="llm_timeout",
        convert=_seconds,
        metavar="S",
        ini=True,
    ),
    Option(
        "--hk-llm-retries",
        "hk_llm_retries",
        "retries with exponential backoff on 429/5xx/timeouts/connection errors (default: 5)",
        field="llm_retries",
        convert=_count,
        metavar="N",
        ini=True,
    ),
    Option(
        "--hk-llm-concurrency",
        "hk_llm_concurrency",
        "gateway requests in flight at once per process (default: 8)",
        field="llm_concurrency",
        convert=_positive,
        metavar="N",
        ini=True,
    ),
    Option(
        "--hk-prices",
        "hk_prices",
        'JSON price table, USD per million tokens: {"model": [input, output]} (default: cost not estimated)',
        field="prices",
        convert=load_prices,
        metavar="FILE",
        ini=True,
    ),
    Option(
        "--hk-profile",
        "hk_profile",
        "profile the best kernel in teardown: when slower than PyTorch, always or never (default: slow)",
        field="profile",
        choices=("slow", "always", "never"),
        ini=True,
    ),
    Option(
        "--hk-target-speedup",
        "hk_target_speedup",
        "stop early once a correct kernel reaches this speedup (default: 1.0)",
        field="target_speedup",
        convert=_non_negative,
        metavar="X",
        ini=True,
    ),
    Option(
        "--hk-verify-timing",
        "hk_verify_timing",
        "cross-check the best kernel's time under Nsight Compute (cuda; recorded as timing.ncu_ms)",
        field="verify_timing",
        action="store_true",
    ),
    Option(
        "--hk-build-timeout",
        "hk_build_timeout",
        "seconds one candidate may build (default: 900)",
        field="build_timeout",
        convert=_seconds,
        metavar="S",
        ini=True,
    ),
    Option(
        "--hk-run-timeout",
        "hk_run_timeout",
        "seconds one verification or timing step may run (default: 300)",
        field="run_timeout",
        convert=_seconds,
        metavar="S",
        ini=True,
    ),
    Option(
        "--hk-build-cache",
        "hk_build_cache",
        "content-addressed build cache (default: ~/.cache/pytest-hipkittens/builds)",
        field="build_cache",
        convert=Path,
        metavar="DIR",
        ini=True,
        env="HK_BUILD_CACHE",
    ),
    Option(
        "--hk-correctness-trials",
        "hk_correctness_trials",
        "random inputs each candidate must match the reference on (default: 5)",
        field="correctness_trials",
        convert=_positive,
        metavar="N",
        ini=True,
    ),
    Option(
        "--hk-progress",
        "hk_progress",
        "live stage line per problem: rich on a terminal, plain in logs (auto), or off (default: auto)",
        field="progress",
        choices=("auto", "rich", "plain", "off"),
        ini=True,
    ),
    Option(
        "--hk-read-only",
        "hk_read_only",
        "write nothing into the results tree (hk-report --html rebuilds a report from it this way)",
        field="read_only",
        action="store_true",
        ini=True,
    ),
    Option(
        "--hk-plain-builds",
        "hk_plain_builds",
        "build candidates exactly as plain load_inline does: no split .cu builds, no precompiled or lean torch headers",
        action="store_true",  # Settings.fast_builds is its negation
        ini=True,
    ),
    Option(
        "--hk-precision",
        "hk_precision",
        "cast reference, candidate and inputs like KernelBench's precision option; tolerance 1e-4 fp32, 1e-2 fp16/bf16 (default: fp32)",
        field="precision",
        choices=("fp32", "fp16", "bf16"),
        ini=True,
        env="HK_PRECISION",
    ),
    Option(
        "--hk-isolation",
        "hk_isolation",
        "workers see a read-only filesystem but their scratch folders (Linux namespaces): auto uses it where the host allows, required refuses to run without it, off never tries (default: auto)",
        field="isolation",
        choices=("auto", "required", "off"),
        ini=True,
        env="HK_ISOLATION",
    ),
    Option(
        "--hk-cpu-inputs",
        "hk_cpu_inputs",
        "draw each trial's inputs on the CPU generator and move them to the device, for exactly KernelBench's values (default: drawn on the device, much faster at real sizes)",
        field="cpu_inputs",
        action="store_true",
        ini=True,
        env="HK_CPU_INPUTS",
    ),
    Option(
        "--hk-allow-torch-ops",
        "hk_allow_torch_ops",
        "accept forwards whose work PyTorch's own ops do (baselines; default: rejected)",
        field="allow_torch_ops",
        action="store_true",
        ini=True,
        env="HK_ALLOW_TORCH_OPS",
    ),
    Option(
        "--hk-forbid-libraries",
        "hk_forbid_libraries",
        "reject kernels whose own code calls cuBLAS, hipBLASLt, rocBLAS, cuDNN, MIOpen (default: allowed, recorded as uses_library)",
        field="forbid_libraries",
        action="store_true",
        ini=True,
    ),
    Option(
        "--hk-max-speedup",
        "hk_max_speedup",
        "re-verify and flag speedups above X (0: never; default: 10)",
        field="max_speedup",
        convert=_non_negative,
        metavar="X",
        ini=True,
    ),
    Option(
        "--hk-compile-baseline",
        "hk_compile_baseline",
        "also time torch.compile of the reference: a second speedup column (default: off)",
        field="compile_baseline",
        action="store_true",
        ini=True,
    ),
    Option(
        "--hk-secret-env",
        "hk_secret_env",
        "more environment variables (fnmatch patterns) kept from generated code, besides *_KEY, *_TOKEN, *_SECRET, …",
        field="secret_env",
        metavar="PATTERN",
        action="append",
        ini=True,
    ),
    Option(
        "--hk-timing-trials",
        "hk_timing_trials",
        "timed runs of reference and candidate, interleaved (default: 100, fewer if slow)",
        field="timing_trials",
        convert=_positive,
        metavar="N",
        ini=True,
    ),
)

#: The defaults, for reading (help and README are checked against them): ``Settings``'
#: own field defaults, the one place they are written.
DEFAULTS = Settings()
BY_DEST = {opt.dest: opt for opt in OPTIONS}


def add_options(parser: pytest.Parser) -> None:
    """Register every row of ``OPTIONS`` (``pytest_addoption``)."""
    group = parser.getgroup("hipkittens", "pytest-hipkittens (LLM kernel benchmark)")
    for opt in OPTIONS:
        opt.add_to(parser, group)


def lookup(config: pytest.Config, dest: str) -> Any:
    """The value of option ``dest`` from the first source that sets it — command line, ini
    file, environment — checked by ``Option.parse``; None when none does (the default
    applies). An empty ini or environment value counts as unset."""
    opt = BY_DEST[dest]
    given = config.getoption(dest, None)
    if opt.action == "store_true":
        if given:
            return True
    elif opt.action == "append":
        if given:
            return [opt.parse(text, CLI) for text in given]
    elif given is not None:
        return opt.parse(given, CLI)
    if opt.ini:
        source = f"ini {dest}"
        try:
            raw = config.getini(dest)
        except (ValueError, TypeError, pytest.UsageError) as exc:
            # pytest's own check of a bool/TOML value: a ValueError up to pytest 9.1, its own
            # UsageError (with the same text, without the flag or the source) from 9.2
            raise pytest.UsageError(f"{opt.flag}: {exc} (from {source})") from None
        if isinstance(raw, (bool, list)):  # already typed by pytest (bool, linelist)
            if raw or raw is False:
                return raw
        elif raw not in (None, ""):
            return opt.parse(str(raw), source)
    if opt.env and os.environ.get(opt.env):
        return opt.parse(os.environ[opt.env], f"${opt.env}")
    return None


def resolve_settings(config: pytest.Config) -> Settings:
    """All settings, validated; raises pytest.UsageError with one line on bad input.

    Every option a source sets is parsed (in table order, so the first bad one is
    reported); what no source sets keeps its ``Settings`` default. Then the checks that
    need more than one value or the filesystem.
    """
    try:
        root = resolve_root(config.getoption("hk_kernelbench_dir", None))
    except ProblemError as exc:
        raise pytest.UsageError(str(exc)) from None
    given: dict[str, Any] = {}
    for opt in OPTIONS:
        if opt.field and (value := lookup(config, opt.dest)) is not None:
            given[opt.field] = value
    if "secret_env" in given:
        given["secret_env"] = tuple(given["secret_env"])
    s = Settings(root=root, **given)
    s.fast_builds = not lookup(config, "hk_plain_builds")
    if s.llm == "openai" and not os.environ.get(KEY_ENV):
        raise pytest.UsageError(
            f"--llm openai needs the gateway key in ${KEY_ENV} (or use --llm replay)"
        )
    if s.llm == "replay" and not s.responses.is_dir():
        raise pytest.UsageError(f"--hk-responses: {s.responses} is not a directory")
    if "prompts_dir" not in given:
        local = config.rootpath / "prompts"
        s.prompts_dir = local if (local / "config.json").is_file() else PACKAGE_PROMPTS
    if not (s.prompts_dir / "config.json").is_file():
        raise pytest.UsageError(f"--hk-prompts: no config.json in {s.prompts_dir}")
    if s.prompt_file and not s.prompt_file.is_file():
        raise pytest.UsageError(f"--hk-prompt: {s.prompt_file} not found")
    if s.isolation == "required":
        from .evaluate import isolation as iso

        reason = iso.unavailable()
        if reason:
            raise pytest.UsageError(
                f"--hk-isolation required: workers cannot be isolated on this host ({reason})"
            )
    if not s.results.is_absolute():
        s.results = Path(config.invocation_params.dir) / s.results
    return s
