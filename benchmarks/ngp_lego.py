"""Instant-NGP (``--method ngp``) on the real lego scene: test PSNR against training wall time, training
throughput (samples/s) and rendering speed (frames/s).

CPU protocol (issue target: >= 30 dB within 10 minutes on 2 cores, >= 300k samples/s, >= 2 frames/s):

    python benchmarks/ngp_lego.py --downscale 4 --minutes 10

GPU protocol (full 800x800, all 200 test views; target >= 36.4 dB in <= 120 s, >= 60M samples/s, >= 60 fps):

    python benchmarks/ngp_lego.py --downscale 1 --minutes 2 --device cuda --save-every 20

A checkpoint is written every ``--save-every`` seconds of training; each is evaluated afterwards (training time
excludes evaluation) on every ``--curve-stride``-th test view, and the last one on every ``--test-stride``-th
view (1: all 200). White background, mean per-image PSNR/SSIM. Figures go to
benchmarks/results/ngp_lego_{cpu,cuda}.json with the machine, rewritten (atomically) after training, after
the final checkpoint's evaluation and the rendering speed (measured first, so that a cut-off run keeps them),
and after each curve point: until ``"complete": true`` it is a partial record (``status`` says what is missing).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, machine_label, write_json  # noqa: E402

from nerfkit.cli import load_run  # noqa: E402
from nerfkit.eval.render import evaluate_split, render_camera  # noqa: E402
from nerfkit.train.checkpoint import list_checkpoints  # noqa: E402
from nerfkit.train.config import DataConfig, TrainConfig  # noqa: E402
from nerfkit.train.trainer import resolve_device, train  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nerf_synthetic" / "lego"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--downscale", type=int, default=4, help="4: 200x200, 1: 800x800")
    parser.add_argument("--minutes", type=float, default=10.0, help="training wall time")
    parser.add_argument("--save-every", type=float, default=60.0, help="seconds between curve points")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--test-stride", type=int, default=1, help="final evaluation on every N-th test view")
    parser.add_argument("--curve-stride", type=int, default=20, help="curve points on every N-th test view")
    parser.add_argument("--target-samples", type=int, default=None, help="samples per step (default: method's)")
    parser.add_argument("--steps-per-diagonal", type=int, default=None,
                        help="marching step = box diagonal / N (default: the method's for the device)")
    parser.add_argument("--log2-hashmap-size", type=int, default=None, help="default: the method's for the device")
    parser.add_argument("--n-levels", type=int, default=None, help="default: the method's for the device")
    parser.add_argument("--max-resolution", type=int, default=None, help="default: the method's for the device")
    parser.add_argument("--hidden-dim", type=int, default=None, help="MLP width (default: the method's)")
    parser.add_argument("--n-hidden-color", type=int, default=None,
                        help="hidden layers of the colour MLP (default: the method's)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="keep the run (checkpoints, metrics) here, e.g. for benchmarks/ngp_paths_cpu.py "
                             "(default: a temporary folder, removed at the end)")
    args = parser.parse_args()
    if not (args.data / "transforms_train.json").is_file():
        sys.exit(f"lego not found at {args.data} (pass --data)")

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run_dir or Path(tmp)
        cfg = TrainConfig(output=run, data=DataConfig(path=args.data, downscale=args.downscale, background="random"),
                          method="ngp", steps=10**7, max_time=args.minutes * 60, eval_every=0, eval_images=0,
                          save_every=10**7, save_every_seconds=args.save_every, keep_checkpoints=10**4,
                          log_every=25, progress=False, device=args.device)
        cfg.ngp.target_samples = args.target_samples
        cfg.ngp.occgrid.steps_per_diagonal = args.steps_per_diagonal
        cfg.ngp.field.log2_hashmap_size = args.log2_hashmap_size
        cfg.ngp.field.n_levels = args.n_levels
        cfg.ngp.field.max_resolution = args.max_resolution
        if args.hidden_dim is not None:
            cfg.ngp.field.hidden_dim = args.hidden_dim
        if args.n_hidden_color is not None:
            cfg.ngp.field.n_hidden_color = args.n_hidden_color
        result = train(cfg)
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        resolved = json.loads((run / "config.json").read_text())["ngp"]  # the device's defaults filled in
        logged = [r for r in lines if "samples_per_s" in r]

        # Throughput over the whole run: each logged window's rate weighted by the window's duration.
        spans = [b["elapsed"] - a["elapsed"] for a, b in zip([{"elapsed": 0.0}] + logged[:-1], logged)]
        samples_per_s = sum(r["samples_per_s"] * dt for r, dt in zip(logged, spans)) / max(sum(spans), 1e-9)
        samples_per_ray = sum(r["samples_per_ray"] for r in logged) / max(len(logged), 1)
        out = args.output or Path(__file__).parent / "results" / f"ngp_lego_{resolve_device(args.device).type}.json"
        machine = machine_info()
        checkpoints = list_checkpoints(run / "checkpoints")
        curve: list[dict] = []
        final: dict | None = None  # the last checkpoint's point, on every --test-stride-th view
        fps: float | None = None
        size = ""  # the test views' WxH, once loaded

        def record(complete: bool) -> dict:
            missing = ([] if final is not None else ["final evaluation"]) + \
                ([] if fps is not None else ["rendering speed"])
            if len(curve) < len(checkpoints):
                missing.append(f"{len(checkpoints) - len(curve)} of {len(checkpoints)} curve points")
            status = "complete" if complete else "partial: not yet done (still running, or cut off): " + \
                (", ".join(missing) or "nothing")
            return {
                "benchmark": f"ngp, lego {size}{' ' if size else ''}(downscale {args.downscale})",
                "complete": complete, "status": status,
                "train_seconds": result.elapsed, "steps": result.step,
                "train_samples_per_s": samples_per_s, "samples_per_ray": samples_per_ray,
                "final_test_psnr": final["test_psnr"] if final else None,
                "final_test_ssim": final["test_ssim"] if final else None,
                "final_test_views": final["test_views"] if final else None, "render_fps": fps,
                "curve": sorted(curve, key=lambda c: c["step"]),
                "protocol": "white background, mean per-image PSNR/SSIM; the final point on "
                            + ("all test views" if args.test_stride == 1 else
                               f"every {args.test_stride}-th test view")
                            + f", curve points on every {args.curve_stride}-th",
                "config": resolved, "machine": machine,
            }

        write_json(record(False), out)
        print(f"trained {result.elapsed:.0f} s, {result.step} steps: wrote {out} (partial)", flush=True)
        # The final checkpoint first, then the rendering speed, then the curve's earlier points: a run cut off
        # by a time limit keeps the headline figures.
        for i, path in reversed(list(enumerate(checkpoints))):
            is_final = i == len(checkpoints) - 1
            _, model, scene, device = load_run(run, path, args.device)
            state = torch.load(path, map_location="cpu", weights_only=True)
            test = scene.split("test").to(device)
            size = f"{test.cameras.width}x{test.cameras.height}"
            stride = args.test_stride if is_final else args.curve_stride
            indices = list(range(0, len(test), stride))
            report = evaluate_split(model, test, "white", cfg.chunk, indices)
            point = {"train_seconds": state["elapsed"], "step": state["step"], "test_psnr": report["psnr"],
                     "test_ssim": report["ssim"], "test_views": len(indices)}
            curve.append(point)
            print(f"{state['elapsed']:7.0f} s  step {state['step']:6d}  PSNR {report['psnr']:.2f} dB  "
                  f"SSIM {report['ssim']:.4f}  ({len(indices)} views)", flush=True)
            if is_final:
                final = point
                write_json(record(False), out)
                # Rendering speed: whole test images, after a warm-up frame.
                render_camera(model, test.cameras, 0, "white", cfg.chunk)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start, frames = time.perf_counter(), 0
                while frames < 3 or time.perf_counter() - start < 5.0:
                    render_camera(model, test.cameras, frames % len(test), "white", cfg.chunk)
                    frames += 1
                if device.type == "cuda":
                    torch.cuda.synchronize()
                fps = frames / (time.perf_counter() - start)
                print(f"rendering {fps:.2f} frames/s", flush=True)
            write_json(record(False), out)

    write_json(record(True), out)
    print(f"train: {result.elapsed:.0f} s, {result.step} steps, {samples_per_s:,.0f} samples/s "
          f"({samples_per_ray:.1f} samples/ray)")
    print(f"final test PSNR {final['test_psnr']:.2f} dB, SSIM {final['test_ssim']:.4f} on {final['test_views']} views; "
          f"rendering {fps:.2f} frames/s at {size}")
    print(f"machine: {machine_label(machine)}; wrote {out}")


if __name__ == "__main__":
    main()
