from __future__ import annotations

from pathlib import Path

import pytest

from pytest_hipkittens.llm import LLMError, LLMRequest, OpenAIClient, ReplayClient

from .gateway import serve


def req(attempt: int = 1, sample: int = 1, key: str = "level1/1_Scale") -> LLMRequest:
    return LLMRequest([{"role": "user", "content": "write a kernel"}], key, attempt, sample)


def test_replay_serves_attempt_sample_and_repeats_the_last(tmp_path: Path) -> None:
    folder = tmp_path / "cpu" / "level1" / "1_Scale"
    folder.mkdir(parents=True)
    (folder / "1.md").write_text("first")
    (folder / "1_2.md").write_text("first, sample 2")
    (folder / "2.md").write_text("second")
    client = ReplayClient(tmp_path, "cpu")
    assert client.complete(req(1, 1)).text == "first"
    assert client.complete(req(1, 2)).text == "first, sample 2"
    assert client.complete(req(2, 3)).text == "second"
    assert client.complete(req(5, 1)).text == "second"  # past the recording: the model repeats
    assert client.complete(req()).source.endswith("1.md")


def test_replay_without_backend_folder_and_missing(tmp_path: Path) -> None:
    (tmp_path / "level1" / "1_Scale").mkdir(parents=True)
    (tmp_path / "level1" / "1_Scale" / "1.txt").write_text("flat")
    assert ReplayClient(tmp_path, "cuda").complete(req()).text == "flat"
    with pytest.raises(LLMError, match="no recorded responses for level1/9_X"):
        ReplayClient(tmp_path, "cpu").complete(req(key="level1/9_X"))


def test_openai_client_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLM_GATEWAY_KEY", raising=False)
    with pytest.raises(LLMError, match=r"\$LLM_GATEWAY_KEY"):
        OpenAIClient(model="m")


def test_openai_success_records_usage_and_cost() -> None:
    with serve([("ok", "```python\nclass ModelNew: pass\n```")]) as gw:
        client = OpenAIClient(model="m", api_key="k", base_url=gw.url, prices={"m": (1.0, 2.0)})
        answer = client.complete(req())
    assert "ModelNew" in answer.text
    assert answer.usage == {"prompt_tokens": 100, "completion_tokens": 50}
    assert answer.cost_usd == pytest.approx((100 * 1.0 + 50 * 2.0) / 1e6)
    assert gw.requests[0]["auth"] == "Bearer k"
    assert gw.requests[0]["body"]["messages"][0]["content"] == "write a kernel"


def test_openai_retries_429_then_succeeds() -> None:
    with serve([(429, None), (503, None), ("ok", "fine")]) as gw:
        client = OpenAIClient(model="m", api_key="k", base_url=gw.url, max_retries=3)
        assert client.complete(req()).text == "fine"
    assert len(gw.requests) == 3


def test_openai_gives_up_after_retries_with_one_line() -> None:
    with serve([], default=(500, None)) as gw:
        client = OpenAIClient(model="m", api_key="k", base_url=gw.url, max_retries=1)
        with pytest.raises(LLMError, match="HTTP 500 after retries") as info:
            client.complete(req())
    assert "\n" not in str(info.value)
    assert len(gw.requests) == 2


def test_openai_timeout() -> None:
    with serve([("sleep", 3), ("ok", "late")], default=("ok", "late")) as gw:
        client = OpenAIClient(model="m", api_key="k", base_url=gw.url, timeout_s=0.5, max_retries=0)
        with pytest.raises(LLMError, match="timed out"):
            client.complete(req())
