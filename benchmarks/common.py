"""Shared helpers of the benchmark scripts: the machine's description and JSON results.

Every benchmark measures its contenders side by side in one process (or in child processes
started by one run) and writes ratios, never absolute goals checked by timed tests.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from lib.io import write_json  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPU model and cores, GPU if any, library versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform()}


def timed(fn: Callable[[], Any], sync: Callable[[], None] = lambda: None) -> float:
    """Wall seconds of one call (after synchronising the device, if any)."""
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def save(name: str, payload: dict[str, Any], out_dir: str | Path | None = None) -> Path:
    path = Path(out_dir or RESULTS) / f"{name}.json"
    write_json(path, {"benchmark": name, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), **payload})
    print(f"wrote {path}")
    return path
