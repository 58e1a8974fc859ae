"""LLM clients: an OpenAI-compatible gateway (openai SDK) and a replay client.

Both answer :class:`LLMRequest` with :class:`LLMResponse`, which carries what the results
tree and the report need: text, model, latency, token usage and estimated cost. The
gateway client leans on the SDK for retries with exponential backoff (429, 5xx,
timeouts, connection errors) and caps requests in flight with a semaphore shared by all
samples of the process. The replay client serves responses recorded on disk so the whole
pipeline runs without a key (CI, newcomers, regression runs of a fixed set of responses).
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .problems import SAMPLES_DIR

KEY_ENV = "LLM_GATEWAY_KEY"
URL_ENV = "LLM_GATEWAY_URL"
DEFAULT_RESPONSES = SAMPLES_DIR / "responses"


class LLMError(RuntimeError):
    """A request that could not be answered (after retries); one-line message."""


@dataclass(frozen=True)
class LLMRequest:
    messages: list[dict[str, str]]
    problem_key: str
    attempt: int
    sample: int


@dataclass
class LLMResponse:
    text: str
    model: str
    latency_s: float
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float | None = None
    source: str = ""

    def record(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "latency_s": round(self.latency_s, 3),
            "usage": self.usage,
            "cost_usd": self.cost_usd,
            "source": self.source,
        }


class LLMClient(Protocol):
    name: str

    def complete(self, request: LLMRequest) -> LLMResponse: ...


class ReplayClient:
    """Serve recorded responses: ``<dir>/<backend>/<levelN>/<id>_<Name>/<attempt>[_<sample>].md``.

    ``<dir>/<levelN>/…`` (no backend folder) also works. Past the last recorded attempt the
    last one is served again — a model that repeats itself — which the harness then
    recognises as already-evaluated code.
    """

    name = "replay"
    FILE_RE = re.compile(r"^(\d+)(?:_(\d+))?\.(md|txt)$")

    def __init__(self, responses_dir: Path, backend: str) -> None:
        self.root = responses_dir
        self.backend = backend

    def _problem_dir(self, key: str) -> Path | None:
        for base in (self.root / self.backend, self.root):
            if (base / key).is_dir():
                return base / key
        return None

    def complete(self, request: LLMRequest) -> LLMResponse:
        folder = self._problem_dir(request.problem_key)
        if folder is None:
            raise LLMError(
                f"no recorded responses for {request.problem_key} ({self.backend}) under {self.root}"
            )
        recorded: dict[tuple[int, int], Path] = {}
        for path in folder.iterdir():
            m = self.FILE_RE.match(path.name)
            if m:
                recorded[(int(m.group(1)), int(m.group(2) or 0))] = path
        attempts = sorted({a for a, _ in recorded})
        if not attempts:
            raise LLMError(f"no recorded responses in {folder}")
        attempt = max([a for a in attempts if a <= request.attempt] or attempts[:1])
        path = recorded.get((attempt, request.sample)) or recorded.get((attempt, 0))
        if path is None:
            path = recorded[min(k for k in recorded if k[0] == attempt)]
        t0 = time.monotonic()
        text = path.read_text(encoding="utf-8")
        return LLMResponse(
            text=text,
            model="replay",
            latency_s=time.monotonic() - t0,
            usage={},
            cost_usd=0.0,
            source=str(path),
        )


class OpenAIClient:
    """Chat completions on an OpenAI-compatible gateway through the ``openai`` SDK."""

    name = "openai"

    def __init__(
        self,
        *,
        model: str,
        api_key: str | None = None,
        base_url: str | None = None,
        temperature: float = 0.7,
        max_tokens: int = 8192,
        timeout_s: float = 600.0,
        max_retries: int = 5,
        concurrency: int = 8,
        prices: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        api_key = api_key or os.environ.get(KEY_ENV)
        if not api_key:
            raise LLMError(f"--llm openai needs the gateway key in ${KEY_ENV}")
        import openai

        self._openai = openai
        self.client = openai.OpenAI(
            api_key=api_key,
            base_url=base_url or os.environ.get(URL_ENV) or None,
            timeout=timeout_s,
            max_retries=max_retries,
        )
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.prices = prices or {}
        self._slots = threading.BoundedSemaphore(max(1, concurrency))

    def cost(self, model: str, usage: dict[str, int]) -> float | None:
        """USD from a per-million-token (input, output) price table, if the model is in it."""
        price = self.prices.get(model) or self.prices.get(self.model)
        if not price:
            return None
        return (
            usage.get("prompt_tokens", 0) * price[0] + usage.get("completion_tokens", 0) * price[1]
        ) / 1e6

    def complete(self, request: LLMRequest) -> LLMResponse:
        t0 = time.monotonic()
        try:
            with self._slots:
                reply = self.client.chat.completions.create(
                    model=self.model,
                    messages=request.messages,  # type: ignore[arg-type]
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                )
        except self._openai.APIStatusError as exc:
            raise LLMError(
                f"gateway answered HTTP {exc.status_code} after retries: {exc.message}"
            ) from None
        except self._openai.APITimeoutError:
            raise LLMError("gateway request timed out after retries") from None
        except self._openai.APIConnectionError as exc:
            raise LLMError(f"cannot reach the gateway after retries: {exc}") from None
        choices = getattr(reply, "choices", None) or []
        text = (choices[0].message.content or "") if choices else ""
        usage = {}
        if getattr(reply, "usage", None) is not None:
            usage = {
                "prompt_tokens": reply.usage.prompt_tokens or 0,
                "completion_tokens": reply.usage.completion_tokens or 0,
            }
        model = getattr(reply, "model", None) or self.model
        return LLMResponse(
            text=text,
            model=model,
            latency_s=time.monotonic() - t0,
            usage=usage,
            cost_usd=self.cost(model, usage),
            source="gateway",
        )
