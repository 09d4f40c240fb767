"""Vanilla NeRF on the real lego scene at 100x100 on CPU for a fixed wall time.

Prints (and writes to benchmarks/results/vanilla_lego_cpu.json) the training throughput in rays/s and the
test PSNR/SSIM (white background, 100x100, every ``--test-stride``-th test view) after ``--seconds`` of training.

    python benchmarks/vanilla_lego_cpu.py [--seconds 300] [--data ../shared/data/nerf_synthetic/lego]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from nerfkit.eval.render import evaluate_split  # noqa: E402
from nerfkit.train.config import DataConfig, TrainConfig  # noqa: E402
from nerfkit.train.trainer import train  # noqa: E402
from nerfkit.cli import load_run  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nerf_synthetic" / "lego"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seconds", type=float, default=300.0, help="training wall time")
    parser.add_argument("--test-stride", type=int, default=8, help="evaluate every N-th test view")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "vanilla_lego_cpu.json")
    args = parser.parse_args()
    if not (args.data / "transforms_train.json").is_file():
        sys.exit(f"lego not found at {args.data} (pass --data)")

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(output=Path(tmp), data=DataConfig(path=args.data, downscale=8, background="random"),
                          steps=10**6, max_time=args.seconds, eval_every=0, eval_images=0, save_every=10**6,
                          log_every=50, progress=False)
        result = train(cfg)
        lines = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
        rays_per_s = result.step * cfg.batch_size / result.elapsed
        _, model, scene, device = load_run(Path(tmp), None, "cpu")
        test = scene.split("test")
        indices = list(range(0, len(test), args.test_stride))
        report = evaluate_split(model, test, "white", cfg.chunk, indices)

    record = {
        "benchmark": "vanilla NeRF, lego 100x100 (downscale 8), CPU, fixed wall time",
        "train_seconds": result.elapsed, "steps": result.step, "batch_size": cfg.batch_size,
        "train_rays_per_s": rays_per_s,
        "samples_per_ray": cfg.model.n_coarse + (cfg.model.n_coarse + cfg.model.n_fine),
        "test_psnr": report["psnr"], "test_ssim": report["ssim"], "test_views": indices,
        "render_seconds_per_image": report["seconds_per_image"],
        "protocol": "white background, 100x100, mean per-image PSNR/SSIM over the listed test views",
        "model": {"n_coarse": cfg.model.n_coarse, "n_fine": cfg.model.n_fine,
                  "width": cfg.model.coarse.width, "depth": cfg.model.coarse.depth},
        "psnr_curve": [(r["step"], r["elapsed"], r["psnr"]) for r in lines if "psnr" in r][::10],
        "machine": machine_info(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2))
    print(f"{'train time':>22}: {result.elapsed:.0f} s ({result.step} steps of {cfg.batch_size} rays)")
    print(f"{'train throughput':>22}: {rays_per_s:,.0f} rays/s")
    print(f"{'test PSNR / SSIM':>22}: {report['psnr']:.2f} dB / {report['ssim']:.4f} "
          f"({len(indices)} views at 100x100, white background)")
    print(f"{'render':>22}: {report['seconds_per_image']:.2f} s per 100x100 image")
    print(f"{'machine':>22}: {record['machine']['cpu']}, {record['machine']['torch_threads']} threads")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
