"""Benchmarks (`kz bench NAME`): speed and memory measured against a baseline in the same run.

Each benchmark returns a `BenchResult`; with ``--json`` the CLI prints it as the last line of stdout in the
shape of DESIGN §9: name, hardware, figures, and one entry per target with its threshold.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["BenchResult", "Target", "hardware"]


@dataclass(frozen=True)
class Target:
    """One target: ``value op target`` must hold. ``value`` None: not measured in this run (e.g. a GPU
    target on a machine without one), never met."""

    value: float | None
    op: Literal[">=", "<="]
    target: float

    @property
    def met(self) -> bool:
        """Whether the measured value meets the target."""
        if self.value is None:
            return False
        return self.value >= self.target if self.op == ">=" else self.value <= self.target

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        value = None if self.value is None else float(f"{self.value:.6g}")  # tiny values (1e-8) kept
        return {"value": value, "op": self.op, "target": self.target, "met": self.met}


@dataclass(frozen=True)
class BenchResult:
    """What one benchmark measured."""

    name: str
    figures: dict[str, float | int | str]
    targets: dict[str, Target] = field(default_factory=dict)
    hardware: str = field(default_factory=lambda: hardware())

    def to_dict(self) -> dict[str, Any]:
        """The DESIGN §9 JSON object."""
        return {
            "name": self.name,
            "hardware": self.hardware,
            "figures": self.figures,
            "targets": {k: t.to_dict() for k, t in self.targets.items()},
        }


def hardware() -> str:
    """A one-line description of this machine: CPU model, cores usable, memory, and the GPU when the
    benchmark loaded torch and torch sees one."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    torch = sys.modules.get("torch")  # a benchmark without torch uses no GPU: not imported just to ask
    gpu = torch.cuda.get_device_name(0) if torch is not None and torch.cuda.is_available() else "no GPU"
    return f"{cores} cores of {model}, {memory:.0f} GiB RAM, {gpu}"
