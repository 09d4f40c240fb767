"""What a benchmark ran on, recorded beside every figure, and how its calls are timed."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch


def median_seconds(fn: Callable[[], object], repeats: int, warmup: bool = True,
                   device: torch.device | None = None) -> float:
    """Median wall seconds of one call of ``fn`` over ``repeats`` calls (at least one), after one untimed call
    when ``warmup`` (which also compiles kernels); on a CUDA ``device`` each timed call is bracketed by
    synchronisations."""
    sync = device is not None and torch.device(device).type == "cuda"
    if warmup:
        fn()
    times = []
    for _ in range(max(1, repeats)):
        if sync:
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine_info() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_record(record: dict, path: Path) -> None:
    """Writes a benchmark's ``record`` (with its ``machine``) as JSON to ``path`` and says so, naming the CPU."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    print(f"machine: {record['machine']['cpu']}; wrote {path}")
