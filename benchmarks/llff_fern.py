"""The real LLFF fern scene on CPU: load it, train a method (vanilla NeRF unless --method ngp) in NDC for a fixed
wall time, evaluate on the held-out views, render the forward-facing spiral video — what ``nerfkit train | eval |
render`` do on it.

    python benchmarks/llff_fern.py [--data ../shared/data/nerf_llff_data/fern] [--seconds 240] [--downscale 8]
                                   [--method vanilla | ngp] [--output benchmarks/results/llff_fern.json]

Protocol: LLFF's hold-out (every 8th image: 3 test views), images at 1/``--downscale`` of full resolution
(504x378 from images_8), mean per-image PSNR/SSIM. Writes benchmarks/results/llff_fern.json (or --output) and,
unless --no-video, the video beside it (the output's name + _spiral.mp4).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from nerfkit.cli import main as nerfkit  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nerf_llff_data" / "fern"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--downscale", type=int, default=8)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--render-scale", type=float, default=0.5, help="video resolution relative to the images")
    parser.add_argument("--no-video", action="store_true")
    parser.add_argument("--method", default="vanilla", choices=["vanilla", "ngp"])
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "llff_fern.json")
    args = parser.parse_args()
    if not (args.data / "poses_bounds.npy").is_file():
        sys.exit(f"fern not found at {args.data} (pass --data)")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        start = time.perf_counter()
        assert nerfkit(["train", "--method", args.method, "--data.path", str(args.data), "--data.downscale", str(args.downscale),
                        "--output", str(run), "--steps", "1000000", "--max-time", str(args.seconds),
                        "--eval-every", "0", "--save-every", "1000000", "--no-progress",
                        "--data.cache-dir", str(Path(tmp) / "cache")]) == 0
        train_wall = time.perf_counter() - start
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert nerfkit(["eval", "--run", str(run)]) == 0
        report = json.loads((run / "eval-test" / "results.json").read_text())
        scene = json.loads((run / "scene.json").read_text())
        video = None
        if not args.no_video:
            video = args.output.with_name(args.output.stem + "_spiral.mp4")
            start = time.perf_counter()
            assert nerfkit(["render", "--run", str(run), "--frames", str(args.frames), "--scale",
                            str(args.render_scale), "--output", str(video)]) == 0
            render_seconds = time.perf_counter() - start
    logged = [r for r in lines if "rays_per_s" in r]
    record = {
        "benchmark": f"--method {args.method} (occupancy grid, NDC) on LLFF fern, CPU, fixed wall time",
        "protocol": f"LLFF hold-out (every 8th image), 1/{args.downscale} resolution, mean per-image PSNR/SSIM",
        "train_seconds": logged[-1]["elapsed"], "train_wall_seconds": train_wall, "steps": logged[-1]["step"],
        "rays_per_s": sum(r["rays_per_s"] for r in logged[-10:]) / len(logged[-10:]),
        "samples_per_ray": logged[-1].get("samples_per_ray"),
        "test_psnr": report["psnr"], "test_ssim": report["ssim"], "test_images": [r["image"] for r in report["images"]],
        "resolution": report["resolution"], "scene": scene,
        "video": None if video is None else {"file": video.name, "frames": args.frames, "scale": args.render_scale,
                                             "seconds": render_seconds},
        "machine": machine_info(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"fern: {record['steps']} steps in {record['train_seconds']:.0f} s, test PSNR {report['psnr']:.2f} dB, "
          f"SSIM {report['ssim']:.4f} on {report['images'][0]['image']}.. ({len(report['images'])} views at "
          f"{report['resolution'][0]}x{report['resolution'][1]})"
          + ("" if video is None else f"; spiral video {video} in {render_seconds:.0f} s"))


if __name__ == "__main__":
    main()
