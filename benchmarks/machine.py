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
    """The machine a figure comes from. Machines of one name differ (two 2-core "AMD EPYC" machines of this
    project's: a Zen 3 with AVX2 and 512 KB of L2 per core, a Zen 4 with AVX-512 and 1 MB, on which lego ngp
    trained ~2x faster: 526k against 257-269k samples/s), so the CPU's family and model, the vector instructions
    torch uses (``cpu_capability``) and the caches are recorded too."""
    cpu = platform.processor() or "unknown"
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    cpu = fields.get("model name", cpu)
    info = {"cpu": cpu, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}
    if "cpu family" in fields:
        info["cpu_family_model"] = f"{fields['cpu family']}/{fields.get('model', '?')}"
    try:
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        pass
    for level, name in (("index2", "l2_cache"), ("index3", "l3_cache")):
        try:
            info[name] = Path(f"/sys/devices/system/cpu/cpu0/cache/{level}/size").read_text().strip()
        except OSError:
            pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_label(info: dict) -> str:
    """``cpu`` with its family/model, vector instructions and L2 cache, as a figure's caption names it."""
    extra = [info[k] for k in ("cpu_family_model", "cpu_capability") if k in info]
    if "l2_cache" in info:
        extra.append(f"L2 {info['l2_cache']}")
    label = info["cpu"] + (f" ({', '.join(extra)})" if extra else "")
    return label + (f", {info['gpu']}" if "gpu" in info else "")


def write_json(record: dict, path: Path) -> None:
    """Writes ``record`` to ``path`` atomically (a temporary file beside it, then a rename): a process killed
    mid-write leaves the previous version, never a truncated file. Benchmarks that may be cut off by a time limit
    (scripts/gpu_checks.sh) write their record this way after every run."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)


def write_record(record: dict, path: Path) -> None:
    """Writes a benchmark's ``record`` (with its ``machine``) as JSON to ``path`` and says so, naming the CPU."""
    write_json(record, path)
    print(f"machine: {machine_label(record['machine'])}; wrote {path}")
