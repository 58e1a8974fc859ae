"""Run metadata: what a run was, merged over the runs of a tree, described for people."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from pytest_hipkittens import runinfo


def _settings(**kw):
    base = dict(
        run_label="baseline",
        llm="openai",
        model="m-1",
        base_url="https://user:secret@gateway.example:8443/v1",
        responses=Path("/r"),
        temperature=0.2,
        prompts_dir=Path(__file__).resolve().parent.parent / "prompts",
        prompt_file=None,
        device_index=None,
        samples=2,
        attempts=3,
        correctness_trials=5,
        timing_trials=100,
        precision="fp32",
        isolation="auto",
        seed=42,
        max_speedup=10.0,
        allow_torch_ops=False,
        forbid_libraries=False,
    )
    return SimpleNamespace(**(base | kw))


def test_collect_names_the_gateway_host_never_its_credentials() -> None:
    meta = runinfo.collect(_settings(), "cpu", "cpu")
    text = json.dumps(meta)
    assert meta["llm"]["gateway_host"] == "gateway.example"
    assert "secret" not in text and "user:" not in text
    assert meta["label"] == "baseline"
    assert meta["device"]["count"] >= 1 and meta["device"]["name"]
    assert meta["settings"]["timing_trials"] == 100
    assert len(meta["prompts"]["sha256"]) == 16


def test_prompt_hash_changes_with_a_prompt(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "a.txt").write_text("write a kernel")
    first = runinfo.prompts_hash(tmp_path)
    (tmp_path / "a.txt").write_text("write a faster kernel")
    assert runinfo.prompts_hash(tmp_path) != first


def test_merge_keeps_agreement_marks_disagreement_and_adds_totals() -> None:
    a = {
        "backend": "cpu",
        "llm": {"model": "m-1"},
        "totals": {"tokens": 10},
        "started": 5.0,
        "finished": 9.0,
    }
    b = {
        "backend": "cpu",
        "llm": {"model": "m-2"},
        "totals": {"tokens": 32},
        "started": 1.0,
        "finished": 7.0,
    }
    merged = runinfo.merge([a, b])
    assert merged["backend"] == "cpu"
    assert merged["llm"]["model"] == "mixed: m-1 | m-2"
    assert merged["totals"]["tokens"] == 42
    assert (merged["started"], merged["finished"], merged["runs"]) == (1.0, 9.0, 2)


def test_from_tree_reads_runs_and_older_trees_say_nothing(tmp_path: Path) -> None:
    assert runinfo.from_tree(tmp_path) == {}
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "1.json").write_text(json.dumps({"run": {"backend": "cuda"}}))
    (tmp_path / "runs" / "2.json").write_text("{truncated")
    assert runinfo.from_tree(tmp_path)["backend"] == "cuda"


def test_describe_says_unknown_for_missing_fields() -> None:
    rows = dict(runinfo.describe({"backend": "cpu"}))
    assert rows["Backend"] == "cpu"
    assert rows["Device"] == "unknown"
    assert rows["When"].startswith("unknown")


def test_not_comparable_names_the_setting_that_differs() -> None:
    a = {"device": {"name": "NVIDIA H200"}, "backend": "cuda", "settings": {"timing_trials": 100}}
    b = {"device": {"name": "NVIDIA H100"}, "backend": "cuda", "settings": {"timing_trials": 100}}
    reasons = runinfo.not_comparable([a, b])
    assert reasons == ["device differs: NVIDIA H200 vs NVIDIA H100"]
    assert runinfo.not_comparable([a, a]) == []
