"""A trained Instant-NGP run on CPU, with the hash encoding as the fused loop torch.compile generates (the default
off CUDA) and as the torch reference, side by side: training steps/s and samples/s from the checkpoint's state,
and rendering frames/s by chunk size; then rendering with the colour head on the visible samples only (the default)
against every marched sample, frame by frame.

    python benchmarks/ngp_paths_cpu.py --run RUN [--checkpoint FILE] [--steps 30] [--chunks 1024 4096 16384]

Training: from the checkpoint (model, occupancy grid, batch size), each path runs the same ``--steps`` steps
(same rays, backgrounds and grid updates: both start from the same generator seed) after 5 warm-up steps that
include the compilation; Adam with the run's final learning rate; the trainer's loop without logging or
checkpoints. Rendering: whole test images, one warm-up frame, then ``--frames`` views timed per chunk size; the
images are compared across settings (largest difference printed). Written, with the machine, to
benchmarks/results/ngp_paths_cpu.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, write_record  # noqa: E402

from nerfkit.cli import load_run  # noqa: E402
from nerfkit.data.rays import RaySampler, composite  # noqa: E402
from nerfkit.eval.render import render_camera  # noqa: E402
from nerfkit.train.checkpoint import latest_checkpoint, load_checkpoint  # noqa: E402
from nerfkit.train.trainer import adam, background_colors  # noqa: E402


def train_steps(model, state: dict, sampler: RaySampler, background: str, steps: int, lr: float) -> dict:
    """Warm-up then ``steps`` timed training steps from ``state``; returns the figures."""
    model.load_state_dict(state["model"])
    optimizer = adam(model.param_groups(), lr, model.adam_eps, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    batch_size, start_step = int(state["batch_size"]), int(state["step"])
    samples, elapsed = 0, 0.0
    for i in range(5 + steps):
        t0 = time.perf_counter()
        model.train()
        model.before_step(start_step + i, generator)
        batch = sampler.sample(batch_size, generator)
        bkgd = background_colors(background, batch_size, torch.device("cpu"), generator)
        outputs = model(batch.origins, batch.directions, bkgd, generator)
        losses = model.loss(outputs, composite(batch.rgba, bkgd))
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        if i >= 5:
            elapsed += time.perf_counter() - t0
            samples += int(losses["n_samples"])
    return {"steps_per_s": steps / elapsed, "samples_per_s": samples / elapsed, "rays_per_step": batch_size,
            "samples_per_ray": samples / (steps * batch_size)}


class _ForwardOnly(torch.nn.Module):
    """The field without ``density_and_features``/``color``: rendering then colours every marched sample."""

    def __init__(self, field: torch.nn.Module) -> None:
        super().__init__()
        self.inner = field

    def query_density(self, x):
        return self.inner.query_density(x)

    def forward(self, x, d):
        return self.inner(x, d)


def compare_shading(model, test, frames: int) -> dict:
    """Rendering (compiled encoder, the model's chunk) with the colour head on the visible samples only (the
    default) and on every marched sample, alternating frame by frame; returns frames/s of each."""
    field, plain = model.field, _ForwardOnly(model.field)
    seconds = {"visible": 0.0, "every": 0.0}
    diff = 0.0
    for i in range(frames):
        images = {}
        for name, f in (("visible", field), ("every", plain)):
            model.field = f
            start = time.perf_counter()
            images[name] = render_camera(model, test.cameras, 1 + i, "white")["rgb"]
            seconds[name] += time.perf_counter() - start
        diff = max(diff, float((images["visible"] - images["every"]).abs().max()))
    model.field = field
    out = {f"{name}_frames_per_s": frames / sec for name, sec in seconds.items()}
    out["max_abs_difference"] = diff
    print(f"render colour on visible samples: {out['visible_frames_per_s']:.2f} frames/s; on every marched sample: "
          f"{out['every_frames_per_s']:.2f} frames/s (alternating frames; largest difference {diff:.1e})", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a run folder of 'nerfkit train --method ngp'")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the run's latest")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--chunks", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "ngp_paths_cpu.json")
    args = parser.parse_args()
    if args.steps < 1 or args.frames < 1 or min(args.chunks) < 1:
        sys.exit("--steps, --frames and --chunks must be >= 1")

    cfg, model, scene, device = load_run(args.run, args.checkpoint, "cpu")
    if cfg.method != "ngp":
        sys.exit(f"{args.run} is a '{cfg.method}' run; this benchmark compares the ngp field's encoder paths")
    path = args.checkpoint or latest_checkpoint(args.run / "checkpoints", device)[0]
    state = load_checkpoint(path, device)
    sampler = RaySampler(scene.split("train").to(device))
    test = scene.split("test").to(device)
    lr = cfg.lr_final if cfg.lr_final is not None else model.default_lr_final
    encoder = model.field.encoder
    training, rendering, first = {}, [], None
    for name, compile_ in (("compiled", True), ("reference", False)):
        encoder.compile = compile_
        training[name] = train_steps(model, state, sampler, cfg.data.background, args.steps, lr)
        t = training[name]
        print(f"train  {name:9s}: {t['steps_per_s']:.2f} steps/s, {t['samples_per_s']:,.0f} samples/s "
              f"({t['rays_per_step']} rays/step, {t['samples_per_ray']:.1f} samples/ray)", flush=True)
        model.load_state_dict(state["model"])
        for chunk in args.chunks:
            render_camera(model, test.cameras, 0, "white", chunk)  # warm-up
            start = time.perf_counter()
            images = torch.stack([render_camera(model, test.cameras, 1 + i, "white", chunk)["rgb"]
                                  for i in range(args.frames)])
            fps = args.frames / (time.perf_counter() - start)
            first = images if first is None else first
            diff = float((images - first).abs().max())
            rendering.append({"encoder": name, "chunk": chunk, "frames_per_s": fps, "max_abs_difference": diff})
            print(f"render {name:9s} chunk {chunk:6d}: {fps:5.2f} frames/s at {test.cameras.width}x"
                  f"{test.cameras.height} (largest difference from the first setting {diff:.1e})", flush=True)
    encoder.compile = True
    shading = compare_shading(model, test, args.frames)
    speedup = training["compiled"]["samples_per_s"] / training["reference"]["samples_per_s"]
    print(f"training speed-up of the compiled loop: {speedup:.2f}x")
    record = {"benchmark": "ngp on CPU: hash encoding compiled vs reference, training and rendering",
              "checkpoint_step": int(state["step"]), "data": str(cfg.data.path), "downscale": cfg.data.downscale,
              "size": [test.cameras.width, test.cameras.height], "train_steps": args.steps, "learning_rate": lr,
              "training": training, "training_speedup": speedup, "render_views": list(range(1, 1 + args.frames)),
              "rendering": rendering, "shading": shading, "machine": machine_info()}
    write_record(record, args.output)


if __name__ == "__main__":
    main()
