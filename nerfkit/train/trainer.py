"""The training loop: one screen of plumbing around a method's ``forward`` and ``loss``.

The loop knows nothing about the method beyond the protocol in :mod:`nerfkit.methods`:
``model(rays_o, rays_d, render_bkgd, generator) -> outputs``, ``model.loss(outputs, target_rgb) -> {"loss",
"mse", "n_samples"?}`` and the optional hooks (``before_step``, ``param_groups``, ``next_batch_size``,
``default_lr``/``default_lr_final``/``adam_eps``).

Training at scale costs a few lines each, tagged in comments: ``(DDP)`` one process per GPU under torchrun
(:mod:`nerfkit.train.distributed`), ``(AMP)`` mixed precision (:mod:`nerfkit.train.precision`), ``(compile)``
torch.compile of the fields (:mod:`nerfkit.train.compile`), ``(guard)`` skipping non-finite steps and rolling
back after repeated ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
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
from .checkpoint import (DivergenceError, latest_checkpoint, rng_state, save_checkpoint, set_aside_newer,
                         set_rng_state)
from .compile import compile_fields
from .config import TrainConfig, from_dict, method_config, to_dict
from .distributed import World, init_world
from .host_memory import reuse_freed_memory
from .precision import autocast, bound_cpu_kernel_caches, check_precision, grad_scaler

__all__ = ["train", "build_model", "resolve_device", "learning_rate", "adam", "background_colors", "MetricsLog"]


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


def adam(params, lr: float, eps: float, device: torch.device) -> torch.optim.Adam:
    """Adam, as one fused kernel over all parameters on CPU and CUDA (lego ngp on a 2-core CPU: 2.7 ms a step
    against 9.4 ms for the default multi-tensor path, for the 2^17-row hash tables and MLPs)."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.Adam(params, lr=lr, eps=eps, **({"fused": True} if fused else {}))


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
    """JSON lines in ``metrics.jsonl`` (and TensorBoard scalars when ``tensorboard`` is installed).

    Resuming at ``resume_step`` first drops the lines of later steps (written by a run that was stopped before
    its next checkpoint, so the log does not repeat steps) and any line cut short. Non-finite numbers are
    written as ``null``. With ``enabled=False`` (ranks other than 0) nothing is written.
    """

    def __init__(self, folder: Path, enabled: bool = True, resume_step: int | None = None) -> None:
        self.file = self.tb = None
        if not enabled:
            return
        path = folder / "metrics.jsonl"
        if resume_step is not None and path.is_file():
            kept = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        kept.append(line + "\n")
                except (json.JSONDecodeError, AttributeError):
                    pass
            path.write_text("".join(kept), encoding="utf-8")
        self.file = open(path, "a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(folder / "tensorboard"), purge_step=resume_step)
        except ImportError:  # tensorboard is optional
            self.tb = None

    def write(self, record: dict) -> None:
        if self.file is None:
            return
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


@dataclass
class TrainResult:
    step: int
    elapsed: float
    val_psnr: float | None
    checkpoint: Path
    is_main: bool = True
    """False on the processes of a multi-process run other than rank 0 (which logs, validates and saves)."""


def train(cfg: TrainConfig) -> TrainResult:
    """Trains the method ``cfg.method`` on ``cfg.data`` and returns where it ended.

    Started by torchrun (``RANK``/``WORLD_SIZE`` in the environment), this process is one rank of a
    DistributedDataParallel run; a collective that waits more than ``cfg.dist_timeout`` for a lost peer raises
    :class:`~nerfkit.train.distributed.DistributedError`.
    """
    device = resolve_device(cfg.device)
    check_precision(cfg.precision, device)
    bound_cpu_kernel_caches(cfg.precision, device)  # (AMP) bf16 on a CPU: memory stays flat as shapes vary
    world = init_world(device, cfg.dist_timeout)  # (DDP) rank 0 of 1 outside torchrun
    try:
        return _train(cfg, world)
    except RuntimeError as err:
        if world.lost_peer(err):
            raise world.explain(err) from err
        raise
    finally:
        world.close()


def _train(cfg: TrainConfig, world: World) -> TrainResult:
    device = world.device
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.reuse_host_memory:
        reuse_freed_memory()
    if not world.is_main:
        world.barrier()  # (DDP) rank 0 writes any cached scene files first
    scene = load_scene(cfg.data)
    if world.is_main:
        world.barrier()
    ckpt_dir = cfg.output / "checkpoints"
    found = None
    if cfg.resume:
        found = latest_checkpoint(ckpt_dir, map_location=device, warn=world.is_main)
        # (DDP) every rank resumes from the same checkpoint: the newest one all of them could read
        step_found = int(found[1]["step"]) if found is not None else -1
        agreed = -int(world.max(-float(step_found)))
        if agreed != step_found and agreed >= 0:
            found = latest_checkpoint(ckpt_dir, map_location=device, max_step=agreed, warn=False)
        if found is None or agreed < 0:
            raise FileNotFoundError(f"--resume: no checkpoint found in {ckpt_dir}")
        if found[1]["config"].get("method") == cfg.method:  # (another method is refused below)
            cfg = dataclasses.replace(cfg, **{cfg.method: _unset_from_checkpoint(
                method_config(cfg), found[1]["config"].get(cfg.method) or {})})
    if hasattr(method_config(cfg), "resolved"):  # fill in the method's defaults for the device and the scene
        cfg = dataclasses.replace(cfg, **{cfg.method: method_config(cfg).resolved(device, scene)})
    train_split = scene.split("train").to(device)
    val_split = scene.eval_split()  # its pixels are decoded at the first validation
    sampler = RaySampler(train_split, world.rank, world.size)  # (DDP) this rank's share of a global batch

    torch.manual_seed(cfg.seed)  # parameter initialisation
    module = build_model(cfg, scene).to(device)
    if cfg.compile:  # (compile) the fields, in place; eager again, with a warning, where compilation fails
        compile_fields(module)
    lr0, lr1 = learning_rates(cfg, module)
    params = module.param_groups() if hasattr(module, "param_groups") else module.parameters()
    optimizer = adam(params, lr0, getattr(module, "adam_eps", 1e-8), device)
    scaler = grad_scaler(cfg.precision, device)  # (AMP) loss scaling for fp16; a pass-through otherwise
    batch_size = cfg.batch_size
    # Two random streams: the rays, drawn as one global batch from the same seed on every rank, and the rest
    # (backgrounds, stratification, grid updates), different on each rank.
    data_generator = torch.Generator(device=device)
    data_generator.manual_seed(cfg.seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.seed + 1 + world.rank)
    start_step, elapsed, lr_scale, bad_steps, overflow_steps, initial, initial_scaler = 0, 0.0, 1.0, 0, 0, None, {}
    guard = (0, 0)  # the divergence guard's (good_at, streak), see the training loop

    if world.is_main:
        cfg.output.mkdir(parents=True, exist_ok=True)
    if found is not None:
        path, state = found
        _check_resumable(cfg, path, state)
        _load_training_state(state, module, optimizer, scaler)
        _restore_rng(state, cfg, world, data_generator, generator)
        start_step, elapsed = int(state["step"]), float(state["elapsed"])
        batch_size = int(state.get("batch_size", batch_size))
        lr_scale, bad_steps = float(state.get("lr_scale", 1.0)), int(state.get("bad_steps", 0))
        overflow_steps = int(state.get("overflow_steps", 0))
        guard = int(state.get("good_at", start_step)), int(state.get("streak", 0))
        if world.is_main:
            for moved in set_aside_newer(ckpt_dir, start_step):  # unreadable, and they would outrank new saves
                warnings.warn(f"set the unreadable checkpoint aside as {moved}", stacklevel=2)
            print(f"resumed from {path} at step {start_step}")
    else:  # what the divergence guard falls back to before the first checkpoint
        initial = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
        initial_scaler = scaler.state_dict()  # (AMP) fp16's starting loss scale comes back with it
    if world.is_main:
        (cfg.output / "config.json").write_text(json.dumps(to_dict(cfg), indent=2))
        (cfg.output / "scene.json").write_text(json.dumps(scene.summary(), indent=2))
    model = world.wrap(module)  # (DDP) gradients are averaged over ranks in backward(); hooks go to `module`
    all_params = [p for group in optimizer.param_groups for p in group["params"]]

    def save(step: int) -> Path:
        nonlocal initial
        world.check_in_sync(module, step, batch_size, lr_scale)  # (DDP) every rank holds the same model
        rng = {"data": data_generator.get_state(), "ranks": world.gather(rng_state(generator, device))}
        path = ckpt_dir / f"step-{step:08d}.pt"
        if world.is_main:
            path = save_checkpoint(ckpt_dir, step, {
                "version": 2, "step": step, "elapsed": elapsed, "batch_size": batch_size, "lr_scale": lr_scale,
                "bad_steps": bad_steps, "overflow_steps": overflow_steps, "good_at": good_at, "streak": streak,
                "world_size": world.size, "config": to_dict(cfg),
                "model": module.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                "rng": rng, "scene": scene.summary()},
                cfg.keep_checkpoints)
        initial = None  # from now on the guard restores checkpoints only, never discards a run's training
        world.barrier()
        return path

    def validate(step: int) -> float | None:
        psnr = _validate(module, val_split, cfg, device, step, log) if world.is_main else None
        world.barrier()  # (DDP) the other ranks wait here for rank 0
        return psnr

    def restore(before: int) -> int:
        """Divergence guard: loads the newest checkpoint older than step ``before`` into the model, optimiser and
        scaler (or, before the run's first checkpoint, the initial state), and returns its step."""
        found = latest_checkpoint(ckpt_dir, map_location=device, max_step=before - 1, warn=world.is_main)
        if found is not None:
            path, state = found
            _load_training_state(state, module, optimizer, scaler)
            restored, name = int(state["step"]), path.name
        elif initial is not None and before > 0:
            module.load_state_dict(initial)
            optimizer.state.clear()
            if initial_scaler:
                scaler.load_state_dict(initial_scaler)
            restored, name = 0, "the initial state"
        else:
            raise DivergenceError(f"training diverged: {cfg.max_bad_steps} steps in a row had a non-finite loss or "
                                  f"gradients (from step {before + 1}), and no checkpoint from before step {before} "
                                  "is left to restore (keep more with --keep-checkpoints, or lower --lr)")
        log.write({"step": done, "restored": name, "restored_step": restored, "lr_scale": lr_scale})
        if world.is_main:
            tqdm.write(f"step {done}: {cfg.max_bad_steps} bad steps in a row; restored {name} (step {restored}), "
                       f"learning rate x{lr_scale:g}")
        world.barrier()
        return restored

    log = MetricsLog(cfg.output, enabled=world.is_main, resume_step=start_step if cfg.resume else None)
    bar = tqdm(total=cfg.steps, initial=start_step, disable=not (cfg.progress and world.is_main),
               dynamic_ncols=True)
    val_psnr, validated_at, done, checkpoint = None, None, start_step, None
    good_at, streak = guard  # the step the current parameters come from; bad steps in a row
    window_rays, window_time, window_samples = 0, 0.0, 0.0
    every_s = cfg.save_every_seconds
    next_timed_save = (math.floor(elapsed / every_s) + 1) * every_s if every_s else math.inf
    try:
        for step in range(start_step, cfg.steps):
            progress = step / cfg.steps
            if cfg.max_time is not None:
                progress = max(progress, elapsed / cfg.max_time)
                if elapsed >= cfg.max_time:
                    break
            lr = learning_rate(cfg, progress, step, lr0, lr1) * lr_scale
            for group in optimizer.param_groups:
                group["lr"] = lr

            t0 = time.perf_counter()
            model.train()
            if hasattr(module, "before_step") and module.before_step(step, generator) is not False:
                world.broadcast_buffers(module)  # (DDP) rank 0's occupancy grid on every rank
            batch = sampler.sample(batch_size, data_generator)
            bkgd = background_colors(cfg.data.background, batch_size, device, generator)
            target = composite(batch.rgba, bkgd)
            with autocast(cfg.precision, device):  # (AMP) forward and loss in bf16/fp16 where asked
                outputs = model(batch.origins, batch.directions, bkgd, generator)
                losses = module.loss(outputs, target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses["loss"]).backward()
            scaler.unscale_(optimizer)
            # (guard) one finiteness check of the loss and gradients, summed over ranks with the step's figures,
            # so that every rank takes the same decision; read back to the host once
            loss_bad, grads_bad, n_samples, loss_sum, mse_sum = world.all_reduce_(
                _step_stats(losses, all_params, device)).tolist()
            # (AMP) with fp16 the scaler skips steps whose gradients overflowed and lowers its scale: that is
            # calibration, not divergence, as long as the loss is finite and the scale has not fallen to 1 (where
            # the gradients themselves are out of range)
            overflow = grads_bad > 0 and loss_bad == 0 and scaler.is_enabled()
            overflow_scale = scaler.get_scale() if overflow else None  # the scale the gradients overflowed at
            bad = loss_bad > 0 or (grads_bad > 0 and not overflow) or (overflow and overflow_scale <= 1.0)
            if not bad:
                scaler.step(optimizer)
            scaler.update()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            dt = world.max(time.perf_counter() - t0)  # (DDP) one clock for time-based decisions
            elapsed += dt
            window_rays += batch_size * world.size
            window_time += dt
            if "n_samples" in losses:
                window_samples += n_samples
            done = step + 1
            if overflow and not bad:
                overflow_steps += 1
                log.write({"step": done, "skipped": "fp16 gradient overflow", "loss_scale": scaler.get_scale(),
                           "overflow_steps": overflow_steps})
            if bad:
                bad_steps, streak = bad_steps + 1, streak + 1
                log.write({"step": done, "skipped": "non-finite loss or gradients", "bad_steps": bad_steps})
                if streak == 1 and world.is_main:
                    tqdm.write(f"step {done}: non-finite loss or gradients, step skipped ({bad_steps} so far)")
                if streak >= cfg.max_bad_steps:
                    lr_scale *= cfg.restore_lr_factor
                    good_at, streak = restore(good_at), 0
            elif not overflow:  # (an fp16 overflow changed nothing: neither a good step nor a bad one)
                good_at, streak = done, 0
                if hasattr(module, "next_batch_size"):  # (DDP) from the mean samples per rank: ranks agree
                    batch_size = module.next_batch_size(batch_size, {**losses, "n_samples": n_samples / world.size})

            if done % cfg.log_every == 0 or done == cfg.steps:
                mse = mse_sum / world.size
                record = {"step": done, "loss": loss_sum / world.size, "psnr": psnr_from_mse(mse),
                          "lr": lr, "rays_per_s": window_rays / max(window_time, 1e-9), "elapsed": elapsed,
                          "bad_steps": bad_steps, **_memory_mb(device)}
                if scaler.is_enabled():  # (AMP) fp16's loss scale and the steps it skipped
                    record.update(loss_scale=scaler.get_scale(), overflow_steps=overflow_steps)
                if window_samples:
                    record["samples_per_ray"] = window_samples / window_rays
                    record["samples_per_s"] = window_samples / max(window_time, 1e-9)
                log.write(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", psnr=f"{record['psnr']:.2f}",
                                rays_s=f"{record['rays_per_s']:.0f}")
                window_rays, window_time, window_samples = 0, 0.0, 0.0
            bar.update(1)
            if val_split is not None and cfg.eval_every > 0 and done % cfg.eval_every == 0 and cfg.eval_images:
                val_psnr, validated_at = validate(done), done
            if done % cfg.save_every == 0 or elapsed >= next_timed_save:
                checkpoint = save(done)
                if every_s:
                    next_timed_save = (math.floor(elapsed / every_s) + 1) * every_s
        if val_split is not None and cfg.eval_images and validated_at != done:
            val_psnr = validate(done)
        if checkpoint is None or checkpoint.name != f"step-{done:08d}.pt":
            checkpoint = save(done)
    finally:
        bar.close()
        log.close()
    return TrainResult(done, elapsed, val_psnr, checkpoint, world.is_main)


def _load_training_state(state: dict, module, optimizer, scaler) -> None:
    """Model (with the estimator's buffers), optimiser and gradient scaler from a checkpoint."""
    module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])


def _unset_from_checkpoint(current, saved: dict):
    """A copy of the method settings ``current`` whose unset ones (``None``: the device's and scene's defaults)
    take the values of the checkpoint's ``saved`` settings: a resumed run keeps the defaults it was started with,
    even where they have changed since (ngp's CPU marching step and MLP width did on 2026-11-30)."""
    saved_cfg = from_dict(type(current), saved)

    def fill(now, then):
        changes = {}
        for field in dataclasses.fields(now):
            value, old = getattr(now, field.name), getattr(then, field.name)
            if dataclasses.is_dataclass(value) and dataclasses.is_dataclass(old):
                changes[field.name] = fill(value, old)
            elif value is None and old is not None:
                changes[field.name] = old
        return dataclasses.replace(now, **changes)

    return fill(current, saved_cfg)


def _check_resumable(cfg: TrainConfig, path: Path, state: dict) -> None:
    """Refuses to resume a checkpoint of another method or other method settings."""
    saved_method = state["config"].get("method")
    if saved_method != cfg.method:
        raise ValueError(f"--resume: {path} was trained with --method {saved_method}, not {cfg.method}; "
                         "resume with the same method or use a new --output folder")
    # Settings added since the checkpoint was written take their defaults (from_dict), so they do not count.
    wanted_model = to_dict(method_config(cfg))
    saved_model = to_dict(from_dict(type(method_config(cfg)), state["config"].get(cfg.method) or {}))
    if saved_model != wanted_model:
        changed = sorted(k for k, v in wanted_model.items() if saved_model.get(k) != v)
        prefix = f"--{cfg.method}."
        raise ValueError(f"--resume: {path} was trained with different {prefix}* settings "
                         f"({', '.join(prefix + k.replace('_', '-') for k in changed)}); "
                         "resume with the same method options or use a new --output folder")


def _restore_rng(state: dict, cfg: TrainConfig, world: World, data_generator: torch.Generator,
                 generator: torch.Generator) -> None:
    """Puts back the random streams a checkpoint saved, so that the run continues exactly."""
    rng = state["rng"]
    if "ranks" not in rng:  # version 1: one stream for everything
        set_rng_state(rng, generator, world.device)
        data_generator.set_state(rng["generator"].cpu())
        return
    data_generator.set_state(rng["data"].cpu())
    if len(rng["ranks"]) == world.size:
        set_rng_state(rng["ranks"][world.rank], generator, world.device)
    else:
        generator.manual_seed(cfg.seed + 1 + world.rank + 1_000_003 * int(state["step"]))
        if world.is_main:
            warnings.warn(f"--resume: the checkpoint was written by {len(rng['ranks'])} process(es), this run has "
                          f"{world.size}; training continues, but not bit for bit as an uninterrupted run would; "
                          f"each process keeps the checkpoint's {state.get('batch_size', cfg.batch_size)} rays a "
                          f"step, so a step now draws {state.get('batch_size', cfg.batch_size) * world.size} rays "
                          f"in all (it drew {state.get('batch_size', cfg.batch_size) * len(rng['ranks'])})",
                          stacklevel=2)


def _step_stats(losses: dict, params: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """``[loss non-finite, gradients non-finite, samples, loss, mse]`` (float64 on ``device``, no host sync):
    the flags are 1 when the loss, or the sum of all gradients' entries, is not finite (a NaN or an infinity
    anywhere makes the sum so; so would finite gradients whose sum overflows, which is divergence too). Sums, not
    norms: one read of each gradient without squares (lego ngp's 8 MiB table gradient on a 2-core CPU: ~0.1 ms
    against ~0.5 ms for ``torch._foreach_norm``, 2026-11-30)."""
    loss = losses["loss"].detach().float()
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if grads:
        grads_bad = ~torch.isfinite(torch.stack([g.sum(dtype=torch.float32) for g in grads]).sum())
    else:
        grads_bad = torch.zeros((), dtype=torch.bool, device=device)
    n_samples = torch.as_tensor(losses.get("n_samples", 0.0), dtype=torch.float64).to(device)
    return torch.stack([(~torch.isfinite(loss)).double(), grads_bad.double(), n_samples, loss.double(),
                        losses["mse"].detach().double()])


def _memory_mb(device: torch.device) -> dict[str, float]:
    """This process's resident host memory (Linux), and the CUDA memory its tensors hold and torch's caching
    allocator has reserved (which shows growth the tensors alone may hide), in MiB."""
    out = {}
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            out["host_mem_mb"] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        pass
    if device.type == "cuda":
        out["device_mem_mb"] = torch.cuda.memory_allocated(device) / 2**20
        out["device_reserved_mb"] = torch.cuda.memory_reserved(device) / 2**20
    return out


def _validate(model, split, cfg: TrainConfig, device, step: int, log: MetricsLog) -> float:
    n = min(cfg.eval_images, len(split))
    indices = [round(i * (len(split) - 1) / max(n - 1, 1)) for i in range(n)] if n > 1 else [0]
    report = evaluate_split(model, split.to(device), cfg.data.eval_background, cfg.chunk, indices=indices)
    log.write({"step": step, "val_psnr": report["psnr"], "val_ssim": report["ssim"]})
    tqdm.write(f"step {step}: val PSNR {report['psnr']:.2f} dB, SSIM {report['ssim']:.4f} "
               f"({n} image{'s' if n > 1 else ''})")
    return report["psnr"]
