"""Training configuration: dataclasses that are both the defaults and the CLI (through tyro)."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..data.config import DataConfig, default_cache_dir
from ..methods import NGPConfig, VanillaConfig

__all__ = ["DataConfig", "TrainConfig", "to_dict", "from_dict", "default_cache_dir", "method_config"]


@dataclass
class TrainConfig:
    """Train a NeRF, evaluating on the validation split as it goes and saving checkpoints."""

    output: Path = Path("runs/builtin")
    """Run folder: checkpoints, metrics log, config, evaluation results."""
    data: DataConfig = field(default_factory=DataConfig)
    """The dataset and how its images are presented."""
    method: Literal["vanilla", "ngp"] = "ngp"
    """The method: 'ngp' (Instant-NGP: hash grid, tiny MLPs, occupancy grid; the default, as it reaches a given
    quality soonest) or 'vanilla' NeRF (frequency-encoded MLPs; coarse-to-fine or occupancy-grid sampling)."""
    vanilla: VanillaConfig = field(default_factory=VanillaConfig)
    """Settings of the vanilla method."""
    ngp: NGPConfig = field(default_factory=NGPConfig)
    """Settings of the ngp method."""
    steps: int = 800
    """Number of optimisation steps."""
    max_time: float | None = None
    """Stop after this many seconds of training (the learning-rate schedule then runs on wall time)."""
    batch_size: int = 1024
    """Rays per step (the first step's, for methods that adapt it to a sample budget, such as ngp)."""
    lr: float | None = None
    """Initial Adam learning rate (default: the method's, 3e-3 for vanilla, 1e-2 for ngp)."""
    lr_final: float | None = None
    """Learning rate at the last step, exponential decay from lr (default: the method's, 3e-4 for both)."""
    warmup_steps: int = 50
    """Linear learning-rate warm-up at the start."""
    seed: int = 0
    """Seed for initialisation, ray sampling and stratification."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu', 'cuda', 'cuda:1', ..."""
    threads: int | None = None
    """CPU threads for torch (default: torch's choice)."""
    reuse_host_memory: bool = True
    """Keep freed host memory for reuse (glibc's allocator; nothing elsewhere): the step's large temporaries then
    skip the page faults of fresh memory, ~10-15% faster CPU training; resident memory stays at its peak."""
    log_every: int = 25
    """Steps between metrics-log lines."""
    eval_every: int = 500
    """Steps between validation passes (0: only at the end)."""
    eval_images: int = 2
    """Validation images rendered at each validation pass."""
    save_every: int = 500
    """Steps between checkpoints (a checkpoint is always written at the end)."""
    save_every_seconds: float | None = None
    """Also write a checkpoint every N seconds of training time (e.g. to evaluate quality against time)."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep."""
    chunk: int | None = None
    """Rays rendered at once during evaluation (default: the method's; 1024 for vanilla, 65536 for ngp)."""
    resume: bool = False
    """Continue from the latest checkpoint in the output folder."""
    progress: bool = True
    """Show a progress bar."""
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    """Arithmetic of the forward pass and loss: fp32, or mixed precision with bf16 (CPU or GPU) or fp16 (CUDA
    only, with a gradient scaler); parameters, optimiser state and volume rendering stay float32."""
    compile: bool = False
    """Compile the method's fields with torch.compile (falls back to eager code, with a warning, where the
    compiler fails); the first steps then take longer while it compiles. On a CPU it no longer gains: the
    methods' hot loops are compiled by default (benchmarks/train_compile_cpu.py)."""
    gpus: int | None = None
    """Train on N GPUs of this machine: runs 'torchrun --standalone --nproc_per_node N -m nerfkit train' with the
    other options (each process draws --batch-size rays per step; gradients are averaged)."""
    dist_timeout: float = 600.0
    """Multi-process runs: seconds a process waits for the others (gradient averaging, a validation pass or a
    checkpoint on rank 0) before failing with an error instead of hanging."""
    max_bad_steps: int = 20
    """A step whose loss or gradients are not finite is skipped (and logged; with fp16, a finite loss whose
    gradients overflowed is the gradient scaler's to handle); after this many in a row, the newest checkpoint
    older than the last good step is restored (the parameters that step produced may be the cause) and the
    learning rate lowered."""
    restore_lr_factor: float = 0.5
    """Factor on the learning rate at each such restore."""

    def __post_init__(self) -> None:
        checks = {"steps": self.steps >= 1, "batch-size": self.batch_size >= 1, "lr": self.lr is None or self.lr > 0,
                  "lr-final": self.lr_final is None or self.lr_final > 0, "warmup-steps": self.warmup_steps >= 0,
                  "log-every": self.log_every >= 1, "eval-every": self.eval_every >= 0,
                  "eval-images": self.eval_images >= 0, "save-every": self.save_every >= 1,
                  "keep-checkpoints": self.keep_checkpoints >= 1, "chunk": self.chunk is None or self.chunk >= 1,
                  "max-time": self.max_time is None or self.max_time > 0,
                  "save-every-seconds": self.save_every_seconds is None or self.save_every_seconds > 0,
                  "threads": self.threads is None or self.threads >= 1,
                  "gpus": self.gpus is None or self.gpus >= 1, "dist-timeout": self.dist_timeout > 0,
                  "max-bad-steps": self.max_bad_steps >= 1, "restore-lr-factor": 0 < self.restore_lr_factor <= 1}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"--{name} has an invalid value: {getattr(self, name.replace('-', '_'))!r}")


def to_dict(obj: Any) -> Any:
    """A dataclass as plain JSON-able values (paths as strings, tuples as lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(args[0], value) if len(args) == 1 else value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value)
    if tp is Path:
        return Path(value)
    if origin is tuple:
        return tuple(value)
    return value


def from_dict(cls: type, data: dict) -> Any:
    """Rebuilds a dataclass from :func:`to_dict` output (unknown keys are ignored, missing keys default)."""
    hints = typing.get_type_hints(cls)
    kwargs = {f.name: _convert(hints[f.name], data[f.name]) for f in dataclasses.fields(cls)
              if f.init and f.name in data}
    return cls(**kwargs)


def method_config(cfg: TrainConfig) -> Any:
    """The settings of the method ``cfg.method`` names (``cfg.vanilla`` or ``cfg.ngp``)."""
    return getattr(cfg, cfg.method)
