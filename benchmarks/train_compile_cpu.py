"""Training throughput with ``--compile`` against eager code, side by side in one run (CPU by default).

    python benchmarks/train_compile_cpu.py [--steps 400] [--warmup 100] [--methods vanilla ngp]
    python benchmarks/train_compile_cpu.py --device cuda              # on a GPU machine

Each method trains on the built-in scene with its default settings, eagerly and with --compile (the same seed,
so the same rays); throughput is measured over the log windows after ``--warmup`` steps, whose extra time with
--compile is the compilation. Options after ``--`` go to ``nerfkit train`` for both runs (e.g. ``--
--data.builtin.resolution 24`` for a smoke test). Writes benchmarks/results/train_compile_{device}.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402
from train_log import memory, read_log, throughput, train_config  # noqa: E402

from nerfkit.train.trainer import train  # noqa: E402


def run(method: str, compile_: bool, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        base = train_config(args.extra)
        cfg = dataclasses.replace(base, output=Path(tmp), method=method, steps=args.steps, eval_every=0,
                                  eval_images=0, save_every=10**7, log_every=args.log_every, progress=False,
                                  compile=compile_, device=args.device)
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = train(cfg)
        wall = time.perf_counter() - start
        lines = read_log(Path(tmp))
    fell_back = [str(w.message) for w in caught if "--compile" in str(w.message)]
    last = [r for r in lines if "psnr" in r][-1]
    return {"method": method, "compile": compile_, "steps": result.step, "train_seconds": result.elapsed,
            "wall_seconds": wall, "final_train_psnr": last["psnr"], "fell_back_to_eager": fell_back,
            **throughput(lines, args.warmup), "memory_mb": memory(lines, args.warmup)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=100, help="steps left out of the throughput")
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--methods", nargs="+", default=["vanilla", "ngp"], choices=["vanilla", "ngp"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("extra", nargs="*", help="after --: nerfkit train options for every run")
    args = parser.parse_args()
    output = args.output or Path(__file__).parent / "results" / f"train_compile_{args.device.split(':')[0]}.json"

    runs = [run(m, c, args) for m in args.methods for c in (False, True)]
    for eager, compiled in zip(runs[::2], runs[1::2]):
        compiled["speedup"] = compiled["steps_per_s"] / eager["steps_per_s"]
        compiled["compile_seconds"] = compiled["warmup_seconds"] - eager["warmup_seconds"]
    record = {"benchmark": "training throughput, --compile vs eager, built-in scene, method defaults",
              "steps": args.steps, "warmup_steps": args.warmup, "device": args.device, "nerfkit_train_options":
              args.extra, "runs": runs, "machine": machine_info()}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2))
    print(f"{'method':>8} {'mode':>9} {'steps/s':>8} {'rays/s':>9} {'samples/s':>10} {'speed-up':>9} "
          f"{'compile s':>10} {'train PSNR':>11}")
    for r in runs:
        mode = "compiled" if r["compile"] else "eager"
        if r["fell_back_to_eager"]:
            mode = "fallback"
        print(f"{r['method']:>8} {mode:>9} {r['steps_per_s']:>8.2f} {r['rays_per_s']:>9,.0f} "
              f"{r.get('samples_per_s', 0):>10,.0f} {r.get('speedup', 1.0):>8.2f}x "
              f"{r.get('compile_seconds', 0.0):>10.1f} {r['final_train_psnr']:>11.2f}")
    print(f"throughput over steps {args.warmup}-{args.steps}; device {args.device}; machine: "
          f"{record['machine']['cpu']}, {record['machine']['torch_threads']} threads")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
