"""Does memory stay flat over a long run? Host (and device) memory of one training run, logged along it.

    python benchmarks/memory_long_run.py [--steps 20000] [--method ngp] [--device cpu] [-- nerfkit train options]

Trains the method's defaults on the built-in scene (unless options after ``--`` say otherwise) with the trainer's
usual checkpoints and validation passes, and reads the resident host memory (and, on CUDA, the memory torch's
tensors hold) that every log line records. Prints them at every tenth of the run and the growth after warm-up:
the change from the first logged value after ``--warmup`` steps to the end, and the least-squares slope in MiB per
1000 steps over the same span. Writes benchmarks/results/memory_long_run_{device}.json, rewritten (atomically)
every 10 s from the run's log while it trains (``"complete": false`` until the end), so a run cut off by a time
limit still leaves its figures so far.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, machine_label, write_json  # noqa: E402
from train_log import read_log, throughput, train_config  # noqa: E402

from nerfkit.train.trainer import train  # noqa: E402


def slope_per_1000(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of ``(step, MiB)`` points, in MiB per 1000 steps."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    return 1000.0 * sum((x - mean_x) * (y - mean_y) for x, y in points) / var if var else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=1000, help="steps before the growth is measured")
    parser.add_argument("--log-every", type=int, default=100)
    parser.add_argument("--method", default="ngp", choices=["vanilla", "ngp"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("extra", nargs="*", help="after --: nerfkit train options")
    args = parser.parse_args()
    if args.warmup >= args.steps:
        parser.error(f"--warmup {args.warmup} must be below --steps {args.steps}")
    device_kind = args.device.split(":")[0]
    output = args.output or Path(__file__).parent / "results" / f"memory_long_run_{device_kind}.json"

    machine = machine_info()

    def record(lines: list[dict], steps: int, seconds: float, complete: bool) -> dict:
        out = {"benchmark": f"memory over one long run, --method {args.method}", "complete": complete,
               "steps": steps, "steps_planned": args.steps, "train_seconds": seconds, "warmup_steps": args.warmup,
               "nerfkit_train_options": args.extra, "save_every": cfg.save_every, "eval_every": cfg.eval_every,
               "memory_mib": {}, "machine": machine}
        if complete:
            out.update(throughput(lines, args.warmup))
        for key in ("host_mem_mb", "device_mem_mb", "device_reserved_mb"):
            series = [(r["step"], r[key]) for r in lines if key in r]
            after = [(s, v) for s, v in series if s > args.warmup]
            if after:
                out["memory_mib"][key] = {"series": series, "after_warmup": after[0][1], "end": after[-1][1],
                                          "max": max(v for _, v in after),
                                          "growth_after_warmup": after[-1][1] - after[0][1],
                                          "slope_per_1000_steps": slope_per_1000(after)}
        return out

    with tempfile.TemporaryDirectory() as tmp:
        base = train_config(args.extra)
        cfg = dataclasses.replace(base, output=Path(tmp), method=args.method, steps=args.steps,
                                  log_every=args.log_every, progress=False, device=args.device)
        done = threading.Event()

        def write_partial() -> None:  # the figures so far, should the run be cut off
            while not done.wait(10.0):
                try:
                    lines = read_log(Path(tmp))
                except (OSError, ValueError):
                    continue
                if lines:
                    write_json(record(lines, lines[-1]["step"], lines[-1].get("elapsed", 0.0), False), output)

        writer = threading.Thread(target=write_partial, daemon=True)
        writer.start()
        try:
            result = train(cfg)
            lines = read_log(Path(tmp))
        finally:
            done.set()
            writer.join()
    final = record(lines, result.step, result.elapsed, True)
    write_json(final, output)
    print(f"{'memory (MiB)':>18}" + "".join(f"{f'{k}0%':>9}" for k in range(1, 11)) + f"{'growth':>9}"
          f"{'per 1k steps':>14}")
    for key, m in final["memory_mib"].items():
        tenths = [next(v for s, v in m["series"] if s >= args.steps * k // 10) for k in range(1, 11)]
        print(f"{key:>18}" + "".join(f"{v:>9.0f}" for v in tenths)
              + f"{m['growth_after_warmup']:>+9.1f}{m['slope_per_1000_steps']:>+14.2f}")
    print(f"{result.step} steps in {result.elapsed:.0f} s of training; machine: {machine_label(machine)}; "
          f"wrote {output}")


if __name__ == "__main__":
    main()
