"""The training loop: one screen of plumbing around a method's ``forward`` and ``loss``.

The loop knows nothing about the method beyond the protocol in :mod:`nerfkit.methods`:
``model(rays_o, rays_d, render_bkgd, generator) -> outputs``, ``model.loss(outputs, target_rgb) -> {"loss",
"mse", "n_samples"?}`` and the optional hooks (``before_step``, ``param_groups``, ``next_batch_size``,
``default_lr``/``default_lr_final``/``adam_eps``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..data import load_scene
from ..data.rays import RaySampler, composite
from ..data.scene import Scene
from ..eval.metrics import psnr_from_mse
from ..eval.render import evaluate_split
from ..methods import METHODS
from .checkpoint import latest_checkpoint, save_checkpoint
from .config import TrainConfig, method_config, to_dict

__all__ = ["train", "build_model", "resolve_device", "learning_rate", "background_colors", "MetricsLog"]


def resolve_device(name: str) -> torch.device:
    """``'auto'`` -> CUDA when available, else CPU; anything else is checked and returned."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r} is not a device name ('auto', 'cpu', 'cuda', 'cuda:1', ...)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name!r} asks for CUDA, but torch sees no CUDA device")
    return device


def build_model(cfg: TrainConfig, scene: Scene) -> torch.nn.Module:
    """The method named by the config, sized to the scene."""
    return METHODS[cfg.method](method_config(cfg), scene.near, scene.far, scene.aabb)


def learning_rates(cfg: TrainConfig, model: torch.nn.Module) -> tuple[float, float]:
    """``(lr, lr_final)``: the config's, else the method's defaults."""
    lr = cfg.lr if cfg.lr is not None else getattr(model, "default_lr", 3e-3)
    lr_final = cfg.lr_final if cfg.lr_final is not None else getattr(model, "default_lr_final", 3e-4)
    return lr, lr_final


def learning_rate(cfg: TrainConfig, progress: float, step: int, lr0: float, lr1: float) -> float:
    """Exponential decay from ``lr0`` to ``lr1`` over ``progress`` in [0, 1], after ``cfg.warmup_steps`` of linear
    warm-up."""
    lr = lr0 * (lr1 / lr0) ** min(max(progress, 0.0), 1.0)
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        lr *= (step + 1) / cfg.warmup_steps
    return lr


def background_colors(kind: str, n: int, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """``(n, 3)`` background colours: white, black, or uniform random per ray."""
    if kind == "white":
        return torch.ones(n, 3, device=device)
    if kind == "black":
        return torch.zeros(n, 3, device=device)
    if kind == "random":
        return torch.rand(n, 3, device=device, generator=generator)
    raise ValueError(f"unknown background {kind!r} (white, black or random)")


class MetricsLog:
    """JSON lines in ``metrics.jsonl`` (and TensorBoard scalars when ``tensorboard`` is installed)."""

    def __init__(self, folder: Path) -> None:
        self.file = open(folder / "metrics.jsonl", "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(folder / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self.tb = None

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


@dataclass
class TrainResult:
    step: int
    elapsed: float
    val_psnr: float | None
    checkpoint: Path


def train(cfg: TrainConfig) -> TrainResult:
    """Trains the method ``cfg.method`` on ``cfg.data`` and returns where it ended."""
    device = resolve_device(cfg.device)
    if hasattr(method_config(cfg), "resolved"):  # fill in the method's device-dependent defaults
        cfg = dataclasses.replace(cfg, **{cfg.method: method_config(cfg).resolved(device)})
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    scene = load_scene(cfg.data)
    train_split = scene.split("train").to(device)
    val_split = scene.splits.get("val", scene.splits.get("test"))
    sampler = RaySampler(train_split)

    torch.manual_seed(cfg.seed)  # parameter initialisation
    model = build_model(cfg, scene).to(device)
    lr0, lr1 = learning_rates(cfg, model)
    params = model.param_groups() if hasattr(model, "param_groups") else model.parameters()
    optimizer = torch.optim.Adam(params, lr=lr0, eps=getattr(model, "adam_eps", 1e-8))
    batch_size = cfg.batch_size
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.seed)
    start_step, elapsed = 0, 0.0

    cfg.output.mkdir(parents=True, exist_ok=True)
    ckpt_dir = cfg.output / "checkpoints"
    if cfg.resume:
        found = latest_checkpoint(ckpt_dir, map_location=device)
        if found is None:
            raise FileNotFoundError(f"--resume: no checkpoint found in {ckpt_dir}")
        path, state = found
        saved_method = state["config"].get("method")
        if saved_method != cfg.method:
            raise ValueError(f"--resume: {path} was trained with --method {saved_method}, not {cfg.method}; "
                             "resume with the same method or use a new --output folder")
        saved_model, wanted_model = state["config"].get(cfg.method) or {}, to_dict(method_config(cfg))
        if saved_model != wanted_model:
            changed = sorted(k for k, v in wanted_model.items() if saved_model.get(k) != v)
            prefix = f"--{cfg.method}."
            raise ValueError(f"--resume: {path} was trained with different {prefix}* settings "
                             f"({', '.join(prefix + k.replace('_', '-') for k in changed)}); "
                             "resume with the same method options or use a new --output folder")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["rng"]["generator"].cpu())
        torch.set_rng_state(state["rng"]["torch"].cpu())
        start_step, elapsed = int(state["step"]), float(state["elapsed"])
        batch_size = int(state.get("batch_size", batch_size))
        print(f"resumed from {path} at step {start_step}")
    (cfg.output / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))

    def state_dict(step: int) -> dict:
        return {"version": 1, "step": step, "elapsed": elapsed, "batch_size": batch_size, "config": to_dict(cfg),
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "rng": {"generator": generator.get_state(), "torch": torch.get_rng_state()},
                "scene": {"near": scene.near, "far": scene.far, "name": scene.name}}

    log = MetricsLog(cfg.output)
    bar = tqdm(total=cfg.steps, initial=start_step, disable=not cfg.progress, dynamic_ncols=True)
    val_psnr, validated_at, done, checkpoint = None, None, start_step, None
    window_rays, window_time, window_samples = 0, 0.0, 0
    every_s = cfg.save_every_seconds
    next_timed_save = (math.floor(elapsed / every_s) + 1) * every_s if every_s else math.inf
    try:
        for step in range(start_step, cfg.steps):
            progress = step / cfg.steps
            if cfg.max_time is not None:
                progress = max(progress, elapsed / cfg.max_time)
                if elapsed >= cfg.max_time:
                    break
            lr = learning_rate(cfg, progress, step, lr0, lr1)
            for group in optimizer.param_groups:
                group["lr"] = lr

            t0 = time.perf_counter()
            model.train()
            if hasattr(model, "before_step"):
                model.before_step(step, generator)
            batch = sampler.sample(batch_size, generator)
            bkgd = background_colors(cfg.data.background, batch_size, device, generator)
            target = composite(batch.rgba, bkgd)
            outputs = model(batch.origins, batch.directions, bkgd, generator)
            losses = model.loss(outputs, target)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = time.perf_counter() - t0
            elapsed += dt
            window_rays += batch_size
            window_time += dt
            if "n_samples" in losses:
                window_samples += int(losses["n_samples"])
            if hasattr(model, "next_batch_size"):
                batch_size = model.next_batch_size(batch_size, losses)

            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                mse = losses["mse"].item()
                record = {"step": done, "loss": losses["loss"].item(), "psnr": psnr_from_mse(mse), "lr": lr,
                          "rays_per_s": window_rays / max(window_time, 1e-9), "elapsed": elapsed}
                if window_samples:
                    record["samples_per_ray"] = window_samples / window_rays
                    record["samples_per_s"] = window_samples / max(window_time, 1e-9)
                log.write(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", psnr=f"{record['psnr']:.2f}",
                                rays_s=f"{record['rays_per_s']:.0f}")
                window_rays, window_time, window_samples = 0, 0.0, 0
            bar.update(1)
            if val_split is not None and cfg.eval_every > 0 and done % cfg.eval_every == 0 and cfg.eval_images:
                val_psnr, validated_at = _validate(model, val_split, cfg, device, done, log), done
            if done % cfg.save_every == 0 or elapsed >= next_timed_save:
                checkpoint = save_checkpoint(ckpt_dir, done, state_dict(done), cfg.keep_checkpoints)
                while next_timed_save <= elapsed:
                    next_timed_save += every_s
        if val_split is not None and cfg.eval_images and validated_at != done:
            val_psnr = _validate(model, val_split, cfg, device, done, log)
        if checkpoint is None or checkpoint.name != f"step-{done:08d}.pt":
            checkpoint = save_checkpoint(ckpt_dir, done, state_dict(done), cfg.keep_checkpoints)
    finally:
        bar.close()
        log.close()
    return TrainResult(done, elapsed, val_psnr, checkpoint)


def _validate(model, split, cfg: TrainConfig, device, step: int, log: MetricsLog) -> float:
    n = min(cfg.eval_images, len(split))
    indices = [round(i * (len(split) - 1) / max(n - 1, 1)) for i in range(n)] if n > 1 else [0]
    report = evaluate_split(model, split.to(device), cfg.data.eval_background, cfg.chunk, indices=indices)
    log.write({"step": step, "val_psnr": report["psnr"], "val_ssim": report["ssim"]})
    tqdm.write(f"step {step}: val PSNR {report['psnr']:.2f} dB, SSIM {report['ssim']:.4f} "
               f"({n} image{'s' if n > 1 else ''})")
    return report["psnr"]
