"""Vanilla NeRF on the real lego scene at 100x100 on CPU for a fixed wall time, with each sampler.

Trains the same model for ``--seconds`` once with coarse-to-fine sampling (stratified + inverse-CDF, two
networks) and once with the occupancy grid (``--vanilla.estimator occgrid``: one network, empty space skipped,
rays stopped once opaque), and prints side by side the samples per ray, the training throughput in rays/s, the
test PSNR/SSIM (white background, 100x100, every ``--test-stride``-th test view) and the rendering time. Writes
everything to benchmarks/results/vanilla_lego_cpu.json.

    python benchmarks/vanilla_lego_cpu.py [--seconds 240] [--estimators coarse-to-fine occgrid]
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
from nerfkit.train.config import DataConfig, TrainConfig, to_dict  # noqa: E402
from nerfkit.train.trainer import train  # noqa: E402
from nerfkit.cli import load_run  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nerf_synthetic" / "lego"


def run(data: Path, seconds: float, estimator: str, test_stride: int) -> dict:
    """Trains for ``seconds`` with ``estimator`` and evaluates on every ``test_stride``-th test view."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(output=Path(tmp), data=DataConfig(path=data, downscale=8, background="random"),
                          method="vanilla",
                          steps=10**6, max_time=seconds, eval_every=0, eval_images=0, save_every=10**6,
                          log_every=50, progress=False)
        cfg.vanilla.estimator = estimator
        result = train(cfg)
        lines = [json.loads(line) for line in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
        _, model, scene, device = load_run(Path(tmp), None, "cpu")
        test = scene.split("test")
        indices = list(range(0, len(test), test_stride))
        report = evaluate_split(model, test, "white", cfg.chunk, indices)
        occupied = model.occgrid.estimator.occupied_fraction() if estimator == "occgrid" else None
    logged = [r for r in lines if "samples_per_ray" in r]
    return {
        "estimator": estimator, "train_seconds": result.elapsed, "steps": result.step,
        "batch_size": cfg.batch_size, "train_rays_per_s": result.step * cfg.batch_size / result.elapsed,
        "samples_per_ray": sum(r["samples_per_ray"] for r in logged) / max(len(logged), 1),
        "samples_per_ray_final": logged[-1]["samples_per_ray"] if logged else None,
        "occupied_fraction": occupied,
        "test_psnr": report["psnr"], "test_ssim": report["ssim"], "test_views": indices,
        "render_seconds_per_image": report["seconds_per_image"],
        "psnr_curve": [(r["step"], r["elapsed"], r["psnr"]) for r in lines if "psnr" in r][::4],
        "model": to_dict(cfg.vanilla),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seconds", type=float, default=240.0, help="training wall time per estimator")
    parser.add_argument("--estimators", nargs="+", default=["coarse-to-fine", "occgrid"],
                        choices=["coarse-to-fine", "occgrid"])
    parser.add_argument("--test-stride", type=int, default=8, help="evaluate every N-th test view")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "vanilla_lego_cpu.json")
    args = parser.parse_args()
    if not (args.data / "transforms_train.json").is_file():
        sys.exit(f"lego not found at {args.data} (pass --data)")

    runs = [run(args.data, args.seconds, estimator, args.test_stride) for estimator in args.estimators]
    record = {
        "benchmark": "vanilla NeRF, lego 100x100 (downscale 8), CPU, fixed wall time per sampler",
        "protocol": "white background, 100x100, mean per-image PSNR/SSIM over every "
                    f"{args.test_stride}th test view",
        "runs": runs,
        "machine": machine_info(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2))
    rows = [("samples per ray", "{samples_per_ray:.1f}"), ("train rays/s", "{train_rays_per_s:,.0f}"),
            ("steps", "{steps}"), ("test PSNR (dB)", "{test_psnr:.2f}"), ("test SSIM", "{test_ssim:.4f}"),
            ("render s/image", "{render_seconds_per_image:.2f}")]
    print(f"{'':>18} " + " ".join(f"{r['estimator']:>16}" for r in runs))
    for label, fmt in rows:
        print(f"{label:>18} " + " ".join(f"{fmt.format(**r):>16}" for r in runs))
    print(f"{len(runs[0]['test_views'])} test views at 100x100, white background; {args.seconds:.0f} s of training "
          f"each; machine: {record['machine']['cpu']}, {record['machine']['torch_threads']} threads")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
