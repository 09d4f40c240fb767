"""Reading a run's metrics.jsonl for the training benchmarks: throughput after warm-up, memory over the run."""

from __future__ import annotations

import json
from pathlib import Path

import tyro

from nerfkit.train.config import TrainConfig


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def throughput(lines: list[dict], warmup_steps: int) -> dict:
    """Steps/s, rays/s and samples/s over the log windows after ``warmup_steps`` (whose time holds compilation,
    first-call allocations, ...), from the windows' training time (``elapsed`` excludes validation and saving)."""
    logged = [r for r in lines if "rays_per_s" in r]
    start = max((r for r in logged if r["step"] <= warmup_steps), key=lambda r: r["step"], default=None)
    if start is None or logged[-1]["step"] <= start["step"]:
        raise ValueError(f"no log windows after step {warmup_steps}: train longer or log more often")
    seconds, rays, samples, previous = 0.0, 0.0, 0.0, start
    for r in logged:
        if r["step"] <= start["step"]:
            continue
        dt = r["elapsed"] - previous["elapsed"]
        seconds, rays = seconds + dt, rays + r["rays_per_s"] * dt
        samples += r.get("samples_per_s", 0.0) * dt
        previous = r
    steps = logged[-1]["step"] - start["step"]
    out = {"measured_steps": steps, "measured_seconds": seconds, "steps_per_s": steps / seconds,
           "rays_per_s": rays / seconds, "warmup_seconds": start["elapsed"]}
    if samples:
        out["samples_per_s"] = samples / seconds
    return out


def memory(lines: list[dict], warmup_steps: int) -> dict:
    """Host (and device) memory in MiB at the first log line after warm-up and at the end, and the peak."""
    out = {}
    for key in ("host_mem_mb", "device_mem_mb", "device_reserved_mb"):
        values = [r[key] for r in lines if key in r and r["step"] > warmup_steps]
        if values:
            out[key] = {"after_warmup": values[0], "end": values[-1], "max": max(values)}
    return out


def train_config(extra: list[str]) -> TrainConfig:
    """A TrainConfig from ``nerfkit train`` options (what follows ``--`` on a benchmark's command line)."""
    return tyro.cli(TrainConfig, args=extra)
