"""Run-wide settings and the lazily built pieces every test item shares.

``Settings`` is resolved once from CLI > ini > environment > default (pytest-timeout's
pattern) and validated so bad input fails before any LLM money is spent. ``HKSession``
builds the heavy parts — backend detection (imports torch), the LLM client, the
evaluator — only when a KernelBench item actually runs, so ``--collect-only`` and
unrelated test runs in an environment with the plugin installed stay cheap.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from .backends import Backend, get_backend
from .evaluate import EvalConfig, Evaluator
from .evaluate.sandbox import SECRET_PATTERNS
from .llm import DEFAULT_RESPONSES, KEY_ENV, LLMClient, OpenAIClient, ReplayClient
from .problems import SAMPLES_DIR, Problem
from .prompts import PromptConfig, load_config
from .results import ResultsTree

PACKAGE_PROMPTS = Path(__file__).resolve().parent.parent / "prompts"


def default_build_cache() -> Path:
    """``$HK_BUILD_CACHE``, else ``~/.cache/pytest-hipkittens/builds``: one cache for every tool."""
    if os.environ.get("HK_BUILD_CACHE"):
        return Path(os.environ["HK_BUILD_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pytest-hipkittens" / "builds"


@dataclass
class Settings:
    """Everything a run needs to know, already validated.

    The field defaults are the options' defaults: ``options.py`` fills in only what a
    source (command line, ini file, environment) set, and its help and the README are
    checked against these values (tests/test_options.py).
    """

    root: Path = SAMPLES_DIR
    levels: list[int] = field(default_factory=lambda: [1])
    spans: list[tuple[int, int]] | None = None
    backend: str = "auto"
    arch: str | None = None
    attempts: int = 3
    samples: int = 3
    results: Path = Path("results")
    llm: str = "replay"
    responses: Path = DEFAULT_RESPONSES
    prompts_dir: Path = PACKAGE_PROMPTS
    prompt_file: Path | None = None
    model: str = "gpt-4o"
    base_url: str | None = None
    temperature: float = 0.7
    max_tokens: int = 8192
    llm_timeout: float = 600.0
    llm_retries: int = 5
    llm_concurrency: int = 8
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)
    redo: bool = False
    verify_timing: bool = False
    profile: str = "slow"
    target_speedup: float = 1.0
    precision: str = "fp32"
    progress: str = "auto"
    allow_torch_ops: bool = False
    forbid_libraries: bool = False
    max_speedup: float = 10.0
    compile_baseline: bool = False
    cpu_inputs: bool = False
    isolation: str = "auto"
    fast_builds: bool = True
    #: write nothing into the results tree (reports rebuilt from it)
    read_only: bool = False
    #: extra secret-variable patterns, on top of the sandbox's defaults
    secret_env: tuple[str, ...] = ()
    build_timeout: float = 900.0
    run_timeout: float = 300.0
    build_cache: Path = field(default_factory=default_build_cache)
    correctness_trials: int = 5
    timing_trials: int = 100
    seed: int = 42
    build_jobs: int = 0  # 0: one per sample, capped by cores
    device_index: str | None = None
    cpu_cores: list[int] | None = None
    shard: tuple[int, int] | None = None
    #: a name for the run (its metadata, hk-report --compare)
    run_label: str | None = None


class HKSession:
    """Shared state of one pytest process (one xdist worker = one device)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tree = ResultsTree(settings.results)

    @functools.cached_property
    def backend(self) -> Backend:
        return get_backend(self.settings.backend, self.settings.arch)

    @functools.cached_property
    def prompts(self) -> PromptConfig:
        return load_config(self.settings.prompts_dir / "config.json")

    @functools.cached_property
    def client(self) -> LLMClient:
        s = self.settings
        if s.llm == "replay":
            return ReplayClient(s.responses, self.backend.name)
        return OpenAIClient(
            model=s.model,
            base_url=s.base_url,
            temperature=s.temperature,
            max_tokens=s.max_tokens,
            timeout_s=s.llm_timeout,
            max_retries=s.llm_retries,
            concurrency=s.llm_concurrency,
            prices=s.prices,
        )

    @functools.cached_property
    def evaluator(self) -> Evaluator:
        s = self.settings
        jobs = s.build_jobs or max(1, min(s.samples, os.cpu_count() or 1))
        cfg = EvalConfig(
            backend=self.backend,
            build_cache=s.build_cache,
            precision=s.precision,
            correctness_trials=s.correctness_trials,
            seed=s.seed,
            timing_trials=s.timing_trials,
            build_timeout=s.build_timeout,
            run_timeout=s.run_timeout,
            build_jobs=jobs,
            device_index=s.device_index,
            profile_slow=s.profile != "never",
            cpu_cores=s.cpu_cores,
            threads=len(s.cpu_cores) if s.cpu_cores else None,
            allow_torch_ops=s.allow_torch_ops,
            forbid_libraries=s.forbid_libraries,
            max_speedup=s.max_speedup,
            compile_baseline=s.compile_baseline,
            cpu_inputs=s.cpu_inputs,
            isolation=s.isolation,
            fast_builds=s.fast_builds,
            secret_patterns=SECRET_PATTERNS + s.secret_env,
        )
        evaluator = Evaluator(cfg)
        evaluator.prestart()  # interpreters start while the model writes the first candidates
        return evaluator

    def prompt_template(self, problem: Problem) -> tuple[Path, str]:
        path = self.settings.prompt_file or self.prompts.prompt_file(
            self.backend.prompt_set, problem
        )
        return path, path.read_text(encoding="utf-8")

    def check(self) -> None:
        """Build everything a run needs now, so misconfiguration fails before any item."""
        if self.settings.llm == "openai" and not os.environ.get(KEY_ENV):
            raise ValueError(f"--llm openai needs the gateway key in ${KEY_ENV}")
        _ = self.backend, self.prompts, self.client

    def close(self) -> None:
        if "evaluator" in self.__dict__:
            self.evaluator.close()
