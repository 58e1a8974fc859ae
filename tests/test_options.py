"""The option table (options.py): every source checked by one path, precedence, and the help
and README saying what the code does."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_hipkittens.options import BY_DEST, DEFAULTS, OPTIONS, resolve_settings
from pytest_hipkittens.session import Settings

from .conftest import REPO

#: variables a developer's shell may set that would leak into these runs
SETTING_VARS = sorted({opt.env for opt in OPTIONS if opt.env} | {"HK_TEST_TEMPERATURE"})
BY_FLAG = {opt.flag: opt for opt in OPTIONS}


@pytest.fixture
def clean(pytester: pytest.Pytester, hk_env: Path, monkeypatch: pytest.MonkeyPatch):
    """A pytester dir whose runs see no option from the environment (but the build cache)."""
    for var in SETTING_VARS:
        if var != "HK_BUILD_CACHE":
            monkeypatch.delenv(var, raising=False)
    return pytester


def settings(pytester: pytest.Pytester, *args: str) -> Settings:
    """What resolve_settings makes of these arguments, the ini file and the environment."""
    return resolve_settings(pytester.parseconfig(*args))


# -- a bad value: one line naming its source, whatever the source -------------------------

#: (option, bad text, the line's text after "--flag: ") per kind of option
BAD = {
    "choice": ("hk_precision", "fp64", "'fp64' is not one of: fp32, fp16, bf16"),
    "int": ("hk_samples", "x", "'x' is not a whole number"),
    "float": ("hk_temperature", "hot", "'hot' is not a number"),
}


def _set_source(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, dest: str, text: str, source: str
) -> tuple[list[str], str]:
    """Put ``text`` into ``source`` for option ``dest``; the arguments to run with and how
    the error line names that source."""
    opt = BY_DEST[dest]
    if source == "cli":
        return [opt.flag, text], "the command line"
    if source == "ini":
        pytester.makeini(f"[pytest]\n{dest} = {text}\n")
        return [], f"ini {dest}"
    if opt.env is None:
        # No float option reads the environment today; give this run's row a variable so the
        # environment's path (the same lookup and parse as any other row's) is exercised.
        opt = dataclasses.replace(opt, env="HK_TEST_TEMPERATURE")
        monkeypatch.setitem(BY_DEST, dest, opt)
    monkeypatch.setenv(opt.env, text)
    return [], f"${opt.env}"


@pytest.mark.parametrize("source", ["cli", "ini", "env"])
@pytest.mark.parametrize("kind", sorted(BAD))
def test_a_bad_value_is_one_line_naming_its_source(
    clean: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, kind: str, source: str
) -> None:
    dest, text, problem = BAD[kind]
    args, named = _set_source(clean, monkeypatch, dest, text, source)
    result = clean.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.stderr.lines if line.strip()]
    assert lines == [f"ERROR: {BY_DEST[dest].flag}: {problem} (from {named})"]
    assert "Traceback" not in result.stdout.str()


def test_every_kind_of_value_is_checked_from_the_environment_and_ini(
    clean: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the command line refuses, the other sources refuse too (they were read unchecked
    before: an ini timeout of ``soon`` crashed later, ``HK_CPU_INPUTS=maybe`` read as off)."""
    monkeypatch.setenv("HK_CPU_INPUTS", "maybe")
    with pytest.raises(pytest.UsageError, match=r"^--hk-cpu-inputs: 'maybe' is not one of: y, "):
        settings(clean)
    monkeypatch.delenv("HK_CPU_INPUTS")
    for line, message in [
        ("hk_build_timeout = soon", "--hk-build-timeout: 'soon' is not a number of seconds"),
        ("hk_run_timeout = 0", "--hk-run-timeout: '0' must be positive"),
        ("hk_llm_retries = -1", "--hk-llm-retries: '-1' must not be negative"),
        ("hk_max_speedup = nan", "--hk-max-speedup: 'nan' is not a finite number"),
        ("hk_target_speedup = -2", "--hk-target-speedup: '-2' must not be negative"),
        ("hk_read_only = maybe", "--hk-read-only: invalid truth value 'maybe'"),
    ]:
        clean.makeini(f"[pytest]\n{line}\n")
        with pytest.raises(pytest.UsageError) as info:
            settings(clean)
        assert str(info.value) == f"{message} (from ini {line.split()[0]})"


# -- precedence ---------------------------------------------------------------------------


def test_command_line_beats_ini_beats_environment_beats_default(
    clean: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a choice, an int and a flag, each with a different value per source
    assert (settings(clean).precision, settings(clean).samples) == ("fp32", 3)
    assert not settings(clean).cpu_inputs
    monkeypatch.setenv("HK_PRECISION", "bf16")
    monkeypatch.setenv("NUM_SAMPLES", "4")
    monkeypatch.setenv("HK_CPU_INPUTS", "1")
    s = settings(clean)
    assert (s.precision, s.samples, s.cpu_inputs) == ("bf16", 4, True)
    clean.makeini("[pytest]\nhk_precision = fp16\nhk_samples = 5\nhk_cpu_inputs = false\n")
    s = settings(clean)
    assert (s.precision, s.samples, s.cpu_inputs) == ("fp16", 5, False)
    s = settings(clean, "--hk-precision", "fp32", "--hk-samples", "6", "--hk-cpu-inputs")
    assert (s.precision, s.samples, s.cpu_inputs) == ("fp32", 6, True)
    # An empty value is no value: the next source decides.
    clean.makeini("[pytest]\nhk_precision =\n")
    assert settings(clean).precision == "bf16"


def test_what_no_source_sets_keeps_the_settings_default(
    clean: pytest.Pytester, hk_env: Path
) -> None:
    resolved = settings(clean)
    for f in dataclasses.fields(Settings):
        if f.name in ("results", "fast_builds", "build_cache"):
            continue  # made absolute; the negation of a flag; $HK_BUILD_CACHE set by hk_env
        assert getattr(resolved, f.name) == getattr(DEFAULTS, f.name), f.name
    assert resolved.fast_builds and resolved.results == clean.path / "results"
    assert resolved.build_cache == hk_env


def test_repeatable_options_and_their_ini_lists(clean: pytest.Pytester) -> None:
    s = settings(clean, "--level", "1", "--level", "2", "--hk-secret-env", "A_*")
    assert (s.levels, s.secret_env) == ([1, 2], ("A_*",))
    clean.makeini("[pytest]\nhk_secret_env =\n    B_*\n    C_*\n")
    assert settings(clean).secret_env == ("B_*", "C_*")
    with pytest.raises(pytest.UsageError, match=r"^--level: '0' must be at least 1 \(from the"):
        settings(clean, "--level", "1", "--level", "0")


# -- the help and the README say what the table does ----------------------------------------


def _shown(value: Any) -> list[str] | None:
    """How a default may be written in prose (None: not comparable, e.g. a host path)."""
    if isinstance(value, bool):
        return ["off", "on"][value : value + 1]
    if isinstance(value, (int, float)):
        return [f"{value:g}", f"{value}"]
    if isinstance(value, str):
        return [value]
    if isinstance(value, Path) and not value.is_absolute():
        return [str(value), f"{value}/"]
    if isinstance(value, list) and len(value) == 1:
        return _shown(value[0])
    return None


def _states(text: str, value: Any) -> bool:
    """Whether prose ``text`` names the default ``value`` as one of its words."""
    words = [w.strip("`") for w in re.split(r"[\s,;()]+", text)]
    return any(w in (_shown(value) or ()) for w in words)


def test_help_states_the_real_defaults() -> None:
    # A flag's help says in words what happens without it; a host path is not comparable.
    stated = {
        opt.flag: m.group(1)
        for opt in OPTIONS
        if (m := re.search(r"default: ([^)]*)\)", opt.help))
        and _shown(opt.default) is not None
        and not isinstance(opt.default, bool)
    }
    assert len(stated) >= 20
    wrong = {f: text for f, text in stated.items() if not _states(text, BY_FLAG[f].default)}
    assert wrong == {}


def _readme_rows() -> dict[str, str]:
    """README options table: flag -> its row."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    table = text.split("## Options", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in table.splitlines()[2:]:
        for flag in re.findall(r"`(--[\w-]+)", line.split("|")[1]):
            rows[flag] = line
    return rows


def _listed_choices(row: str) -> set[str]:
    """A row's choices: ``{a,b,c}`` after the flag, else the words in backticks."""
    listed = re.search(r"\{([\w,]+)\}", row.split("|")[1])
    return set(listed.group(1).split(",")) if listed else set(re.findall(r"`(\w+)`", row))


def test_readme_table_lists_every_option_with_its_default_choices_and_variable() -> None:
    rows = _readme_rows()
    assert sorted(rows) == sorted(opt.flag for opt in OPTIONS)
    no_variable = [o.flag for o in OPTIONS if o.env and f"${o.env}" not in rows[o.flag]]
    assert no_variable == []
    with_choices = [o for o in OPTIONS if o.choices]
    assert len(with_choices) >= 5
    wrong_choices = [
        o.flag for o in with_choices if _listed_choices(rows[o.flag]) != set(o.choices)
    ]
    assert wrong_choices == []
    comparable = [o for o in OPTIONS if _shown(o.default) is not None]
    assert len(comparable) >= 25
    wrong_defaults = {
        o.flag: (rows[o.flag].split("|")[2], o.default)
        for o in comparable
        if not _states(rows[o.flag].split("|")[2], o.default)
    }
    assert wrong_defaults == {}


def test_the_table_is_well_formed() -> None:
    """What argparse and pytest would only find at run time, or never."""
    assert len({o.flag for o in OPTIONS}) == len({o.dest for o in OPTIONS}) == len(OPTIONS)
    settings_fields = {f.name for f in dataclasses.fields(Settings)}
    for opt in OPTIONS:
        assert opt.field is None or opt.field in settings_fields, opt.flag
        assert opt.action in (None, "store_true", "append"), opt.flag
        assert not (opt.choices and opt.convert), opt.flag
        assert opt.action == "store_true" or opt.metavar or opt.choices, opt.flag


@pytest.mark.parametrize("raised", [ValueError, pytest.UsageError])
def test_pytests_own_ini_check_still_names_the_option_and_its_source(raised: type) -> None:
    """pytest up to 9.1 raises ValueError for a bad bool ini value, 9.2 its own UsageError
    (same text, no flag, no source): either way the user sees the option and where."""
    from types import SimpleNamespace

    from pytest_hipkittens.options import lookup

    def getini(name: str) -> None:
        raise raised("invalid truth value 'maybe'")

    config = SimpleNamespace(getoption=lambda dest, default=None: None, getini=getini)
    with pytest.raises(pytest.UsageError) as info:
        lookup(config, "hk_read_only")  # type: ignore[arg-type]
    assert str(info.value) == "--hk-read-only: invalid truth value 'maybe' (from ini hk_read_only)"
