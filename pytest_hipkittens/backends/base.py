"""The one small interface every target implements.

A backend says how a candidate is built (environment handed to torch's extension builder:
arch lists, include roots, compiler), which device the evaluation worker uses, how a
worker is pinned to one device, and which profiler explains a slow kernel. Everything a
backend decides reaches the sandboxed worker through environment variables, so the
candidate's own ``load_inline`` call picks it up the KernelBench way.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class BackendError(RuntimeError):
    """The requested backend cannot run on this machine (one-line message)."""


@dataclass(frozen=True)
class Backend:
    name: str
    #: torch device type used by the evaluation worker ("cpu"; ROCm torch also says "cuda").
    device: str
    #: variable that pins a process to one device (None on cpu).
    visible_devices_var: str | None
    #: profiler used in teardown for slow kernels.
    profiler: str
    #: architecture the candidate is built for ("native", "sm_90a", "gfx942").
    arch: str = ""
    #: extra environment for the build/eval subprocess.
    env: dict[str, str] = field(default_factory=dict)
    #: prompt-set name in prompts/config.json.
    prompt_set: str = ""
    #: build environment told to the model (arch, variables to read, flags).
    notes: str = ""
    #: bytes rewritten between timed trials to flush the last-level cache (0: 2x L2).
    flush_bytes: int = 0

    def pin_env(self, device_index: str | None) -> dict[str, str]:
        """Environment that makes ``device_index`` the only visible device."""
        if self.visible_devices_var is None or device_index is None:
            return {}
        return {self.visible_devices_var: str(device_index)}

    def describe(self) -> dict[str, str]:
        return {"backend": self.name, "device": self.device, "arch": self.arch}
