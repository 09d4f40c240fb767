"""``nerfkit train | eval | render``: the command-line interface, generated from dataclass configs by tyro."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from .data.scene import DataError
from .train.checkpoint import DivergenceError
from .train.config import TrainConfig
from .train.distributed import DistributedError

__all__ = ["EvalConfig", "RenderConfig", "main", "load_run"]


@dataclass
class EvalConfig:
    """Evaluate a trained run: PSNR and SSIM over a split, rendered RGB/depth/opacity images, a JSON report."""

    run: Path = Path("runs/builtin")
    """Run folder written by 'nerfkit train'."""
    split: Literal["test", "val", "train"] = "test"
    """Split to evaluate."""
    checkpoint: Path | None = None
    """A specific checkpoint file (default: the run's latest)."""
    output: Path | None = None
    """Where to write images and results.json (default: RUN/eval-SPLIT)."""
    max_images: int | None = None
    """Evaluate only the first N images (default: all)."""
    chunk: int | None = None
    """Rays rendered at once (default: the method's; 1024 for vanilla, 65536 for ngp)."""
    device: str = "auto"
    """'auto', 'cpu', 'cuda', ..."""

    def __post_init__(self) -> None:
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"--max-images must be >= 1, got {self.max_images}")
        if self.chunk is not None and self.chunk < 1:
            raise ValueError(f"--chunk must be >= 1, got {self.chunk}")


@dataclass
class RenderConfig:
    """Render a video of a trained run: an orbit around the scene at the test cameras' distance, or for
    forward-facing scenes (LLFF) a spiral in front of it."""

    run: Path = Path("runs/builtin")
    """Run folder written by 'nerfkit train'."""
    checkpoint: Path | None = None
    """A specific checkpoint file (default: the run's latest)."""
    output: Path | None = None
    """Video file, .mp4 or .gif (default: RUN/orbit.mp4 or RUN/spiral.mp4)."""
    path: Literal["auto", "orbit", "spiral"] = "auto"
    """Camera path: 'orbit' circles the scene, 'spiral' circles the average camera twice looking at the scene's
    focus depth (LLFF's render path); 'auto' takes spiral for forward-facing scenes, else orbit."""
    frames: int = 48
    """Number of frames in the video (one full orbit, or the whole spiral)."""
    fps: int = 24
    """Frames per second."""
    elevation: float | None = None
    """Orbit elevation in degrees (default: the test cameras' mean; orbit only)."""
    scale: float = 1.0
    """Resolution relative to the test images."""
    chunk: int | None = None
    """Rays rendered at once (default: the method's; 1024 for vanilla, 65536 for ngp)."""
    device: str = "auto"
    """'auto', 'cpu', 'cuda', ..."""

    def __post_init__(self) -> None:
        for name, ok in {"frames": self.frames >= 1, "fps": self.fps >= 1, "scale": 0 < self.scale <= 8,
                         "chunk": self.chunk is None or self.chunk >= 1}.items():
            if not ok:
                raise ValueError(f"--{name} has an invalid value: {getattr(self, name)!r}")


def load_run(run: Path, checkpoint: Path | None, device_name: str):
    """Rebuilds ``(config, model, scene, device)`` from a run folder and a checkpoint."""
    from .data import load_scene
    from .train.checkpoint import latest_checkpoint, load_checkpoint
    from .train.config import from_dict
    from .train.host_memory import reuse_freed_memory
    from .train.trainer import build_model, resolve_device

    if not run.is_dir():
        raise DataError(f"run folder not found: {run} (train one with 'nerfkit train --output {run}')")
    device = resolve_device(device_name)
    if checkpoint is not None:
        if not checkpoint.is_file():
            raise DataError(f"checkpoint not found: {checkpoint}")
        state = load_checkpoint(checkpoint, device)
    else:
        found = latest_checkpoint(run / "checkpoints", device)
        if found is None:
            raise DataError(f"no checkpoint in {run / 'checkpoints'}")
        checkpoint, state = found
    cfg = from_dict(TrainConfig, state["config"])
    if cfg.reuse_host_memory:  # rendering allocates as training does
        reuse_freed_memory()
    scene = load_scene(cfg.data)
    model = build_model(cfg, scene).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    print(f"loaded {checkpoint} (step {state['step']})")
    return cfg, model, scene, device


def run_train(cfg: TrainConfig, argv: list[str]) -> int:
    from .train.distributed import launch
    from .train.trainer import train

    if cfg.gpus is not None:  # the same command under torchrun, one process per GPU
        return launch(cfg.gpus, argv, cfg.device)
    result = train(cfg)
    psnr = "n/a" if result.val_psnr is None else f"{result.val_psnr:.2f} dB"
    if result.is_main:
        print(f"trained {result.step} steps in {result.elapsed:.1f} s; validation PSNR {psnr}; "
              f"checkpoint {result.checkpoint}")
    return 0


def run_eval(cfg: EvalConfig) -> None:
    from .eval.render import evaluate_split

    train_cfg, model, scene, device = load_run(cfg.run, cfg.checkpoint, cfg.device)
    split = scene.split(cfg.split).to(device)
    n = len(split) if cfg.max_images is None else min(cfg.max_images, len(split))
    out_dir = cfg.output or cfg.run / f"eval-{cfg.split}"
    report = evaluate_split(model, split, train_cfg.data.eval_background, cfg.chunk, list(range(n)), out_dir,
                            (scene.near, scene.far))
    print(json.dumps({k: v for k, v in report.items() if k != "images"}, indent=2))
    print(f"{cfg.split} PSNR {report['psnr']:.2f} dB, SSIM {report['ssim']:.4f} over {n} images "
          f"({split.cameras.width}x{split.cameras.height}); images and results.json in {out_dir}")


def run_render(cfg: RenderConfig) -> None:
    import numpy as np
    from tqdm.auto import tqdm

    from .cameras import Cameras
    from .eval.render import render_camera
    from .eval.video import orbit_cameras, spiral_cameras, write_video

    train_cfg, model, scene, device = load_run(cfg.run, cfg.checkpoint, cfg.device)
    path_kind = cfg.path if cfg.path != "auto" else ("spiral" if scene.forward_facing else "orbit")
    reference = scene.splits.get("test", scene.split("train")).cameras
    if cfg.scale != 1.0:
        reference = reference.scaled(cfg.scale)
    if path_kind == "spiral":
        # Every camera of the capture once (splits may share images), with the reference's intrinsics and NDC.
        poses, seen = [], set()
        for split in scene.splits.values():
            keep = [i for i, name in enumerate(split.names) if name not in seen]
            seen.update(split.names)
            poses.append(split.cameras.c2w[keep])
        poses = torch.cat(poses).to(reference.c2w)
        n = len(poses)
        everyone = Cameras(poses, reference.fx[:1].expand(n), reference.fy[:1].expand(n), reference.cx[:1].expand(n),
                           reference.cy[:1].expand(n), reference.width, reference.height, ndc=reference.ndc)
        near, far = scene.info.get("depth_bounds", (scene.near, scene.far))
        cameras = spiral_cameras(everyone, cfg.frames, near, far).to(device)
    else:
        cameras = orbit_cameras(reference, cfg.frames, cfg.elevation).to(device)
        cameras.ndc = reference.ndc  # NDC scenes render NDC rays whatever the path
    frames = []
    for i in tqdm(range(cfg.frames), desc="rendering"):
        rgb = render_camera(model, cameras, i, train_cfg.data.eval_background, cfg.chunk)["rgb"]
        frames.append((rgb.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8))
    path = write_video(cfg.output or cfg.run / f"{path_kind}.mp4", frames, cfg.fps)
    # The path's cameras, in the scene's frame and mapped back to the dataset's own frame (scene.transform).
    c2w = cameras.c2w.detach().cpu().double()
    poses = {"path": path_kind, "width": cameras.width, "height": cameras.height,
             "fx": float(cameras.fx[0]), "fy": float(cameras.fy[0]), "cx": float(cameras.cx[0]),
             "cy": float(cameras.cy[0]), "convention": "camera-to-world 3x4, OpenGL (x right, y up, looking down -z)",
             "scene_frame": c2w.tolist(), "dataset_frame": scene.to_dataset_frame(c2w).tolist(),
             "scene_transform": scene.transform.tolist()}
    path.with_suffix(".json").write_text(json.dumps(poses, indent=1))
    print(f"wrote {path} ({cfg.frames} frames, {cameras.width}x{cameras.height}) and its cameras "
          f"{path.with_suffix('.json').name}")


def main(argv: list[str] | None = None) -> int:
    import tyro

    commands = {"train": TrainConfig, "eval": EvalConfig, "render": RenderConfig}
    try:
        cfg = tyro.extras.subcommand_cli_from_dict(commands, prog="nerfkit", args=argv,
                                                   description="nerfkit: train, evaluate and render NeRFs.")
        if isinstance(cfg, TrainConfig):
            return run_train(cfg, sys.argv[1:] if argv is None else argv)
        elif isinstance(cfg, EvalConfig):
            run_eval(cfg)
        else:
            run_render(cfg)
    except (ValueError, DataError, FileNotFoundError) as err:
        print(f"nerfkit: error: {err}", file=sys.stderr)
        return 2
    except (DistributedError, DivergenceError) as err:  # a training process lost its peers; training diverged
        print(f"nerfkit: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
