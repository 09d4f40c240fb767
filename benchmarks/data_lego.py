"""Loading the real lego scene and serving training rays from it, on CPU: time and peak memory.

Stages, each timed, with the process's peak resident memory (VmHWM) after it:
1. import and set-up (the baseline memory);
2. opening the scene with ``load_scene`` (every split's cameras; image headers checked) and decoding the 100
   training images at full resolution (800x800 RGBA; parallel threads, one uint8 array; full resolution is
   never cached) — ``--repeat`` times; the val/test pixels are decoded only when evaluation needs them;
3. serving ``--batches`` batches of ``--rays`` rays (``RaySampler.sample``: random pixels of random images,
   rays through them, colours as float) — the per-batch cost of the data path in training;
4. loading at ``--downscale`` (default 4) twice: first building the cached shrunk copy, then from the cache.
Writes benchmarks/results/data_lego.json.

    python benchmarks/data_lego.py [--data ../shared/data/nerf_synthetic/lego] [--batches 1000] [--rays 65536]
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

import torch  # noqa: E402

from nerfkit.data import RaySampler, load_scene  # noqa: E402
from nerfkit.data.config import DataConfig  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "nerf_synthetic" / "lego"


def memory_mb() -> dict:
    """Current and peak resident memory of this process, in MB (from /proc/self/status)."""
    out = {}
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024.0
    return {"rss_mb": out.get("VmRSS"), "peak_mb": out.get("VmHWM")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--rays", type=int, default=1 << 16)
    parser.add_argument("--downscale", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "data_lego.json")
    args = parser.parse_args()
    if not (args.data / "transforms_train.json").is_file():
        sys.exit(f"lego not found at {args.data} (pass --data)")

    result = {"machine": machine_info(), "data": str(args.data), "stages": {}}
    result["stages"]["baseline"] = memory_mb()
    with tempfile.TemporaryDirectory() as cache:
        loads = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            scene = load_scene(DataConfig(path=args.data, cache_dir=Path(cache)))
            train = scene.split("train")
            images = train.images
            loads.append(time.perf_counter() - start)
            if _ < args.repeat - 1:
                del scene, train, images
        result["stages"]["load_full"] = {
            "seconds": loads, "n_train": len(train), "resolution": [train.cameras.width, train.cameras.height],
            "splits": {k: len(v) for k, v in scene.splits.items()},
            "images_dtype": str(images.dtype), "train_image_bytes": images.numel() * images.element_size(),
            "bytes_per_channel": images.element_size(), **memory_mb()}
        print(f"load lego ({len(train)} training images at {train.cameras.width}x{train.cameras.height}): "
              + ", ".join(f"{s:.2f} s" for s in loads)
              + f"; train images {images.numel() / 2**20:.0f} MiB as {images.dtype}; peak RSS "
              f"{result['stages']['load_full']['peak_mb']:.0f} MB")
        del scene
        sampler = RaySampler(train)
        gen = torch.Generator().manual_seed(0)
        sampler.sample(args.rays, gen)  # warm-up
        start = time.perf_counter()
        checksum = 0.0
        for _ in range(args.batches):
            batch = sampler.sample(args.rays, gen)
            checksum += float(batch.rgba[0, 0])
        seconds = time.perf_counter() - start
        result["stages"]["serve"] = {"batches": args.batches, "rays_per_batch": args.rays, "seconds": seconds,
                                     "ms_per_batch": 1000 * seconds / args.batches,
                                     "rays_per_s": args.batches * args.rays / seconds, **memory_mb()}
        print(f"serve {args.batches} batches of {args.rays} rays: {seconds:.2f} s "
              f"({1000 * seconds / args.batches:.2f} ms per batch, {args.batches * args.rays / seconds / 1e6:.1f}M "
              f"rays/s); peak RSS {result['stages']['serve']['peak_mb']:.0f} MB")
        del sampler, train, images
        shrunk = []
        for _ in range(2):
            start = time.perf_counter()
            scene = load_scene(DataConfig(path=args.data, downscale=args.downscale, cache_dir=Path(cache)))
            scene.split("train").images
            shrunk.append(time.perf_counter() - start)
        result["stages"]["load_downscaled"] = {"downscale": args.downscale, "first_seconds": shrunk[0],
                                               "cached_seconds": shrunk[1], **memory_mb()}
        print(f"load at 1/{args.downscale}: {shrunk[0]:.2f} s building the cache, {shrunk[1]:.2f} s from it")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"machine: {result['machine']['cpu']} ({result['machine']['cpu_count']} cores); wrote {args.out}")


if __name__ == "__main__":
    main()
