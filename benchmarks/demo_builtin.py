"""Times the main job (what scripts/demo.sh runs after set-up) on the built-in scene and records its test PSNR.

    python benchmarks/demo_builtin.py [--run /tmp/demo-run] [--fresh-cache]

Each stage runs as the CLI would (``python -m nerfkit ...``); the scene generation time is measured separately
by writing the scene into an empty cache first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None, help="run folder (default: a temporary one)")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "demo_builtin.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or Path(tmp) / "run"
        if run.exists():
            shutil.rmtree(run)
        env = dict(os.environ, NERFKIT_CACHE=str(Path(tmp) / "cache"))
        py = [sys.executable, "-m", "nerfkit"]
        scene_s = timed([sys.executable, "-c", "from nerfkit.data import load_scene; "
                         "from nerfkit.train.config import DataConfig; load_scene(DataConfig())"], env)
        train_s = timed(py + ["train", "--output", str(run), "--no-progress"], env)
        eval_s = timed(py + ["eval", "--run", str(run)], env)
        render_s = timed(py + ["render", "--run", str(run)], env)
        report = json.loads((run / "eval-test" / "results.json").read_text())
        train_log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    record = {
        "benchmark": "main job on the built-in scene (nerfkit train + eval + render with default settings)",
        "scene_generation_s": scene_s, "train_s": train_s, "eval_s": eval_s, "render_s": render_s,
        "total_s": scene_s + train_s + eval_s + render_s,
        "train_loop_s": max(r.get("elapsed", 0.0) for r in train_log),
        "test_psnr": report["psnr"], "test_ssim": report["ssim"], "test_images": report["n_images"],
        "resolution": report["resolution"], "protocol": report["protocol"],
        "machine": machine_info(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2))
    for key in ("scene_generation_s", "train_s", "eval_s", "render_s", "total_s"):
        print(f"{key:>20}: {record[key]:.1f}")
    print(f"{'test PSNR / SSIM':>20}: {record['test_psnr']:.2f} dB / {record['test_ssim']:.4f} "
          f"({record['test_images']} views, {record['resolution'][0]}x{record['resolution'][1]}, white background)")
    print(f"{'machine':>20}: {record['machine']['cpu']}, {record['machine']['torch_threads']} threads")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
