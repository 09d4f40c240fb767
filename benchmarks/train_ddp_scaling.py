"""Multi-process (DDP) scaling of a fixed training workload: 1 against N processes, launched with torchrun.

    python benchmarks/train_ddp_scaling.py --device cuda --processes 1 2 4 8     # GPUs: one process per GPU
    python benchmarks/train_ddp_scaling.py --device cpu --processes 1 2          # CPU smoke test (gloo)

Strong scaling: every run trains the same global batch (``--batch-size`` rays per step, split evenly over the
processes; for ngp its samples per step are split too) for the same steps from the same seed: the same rays
each step, and the same training up to the per-process random draws (stratification, random backgrounds), so
the gain is the throughput. On a CPU the cores are shared out
(``--threads cores / N`` per process), so that every run uses the whole machine. Throughput is measured after
``--warmup`` steps; the final training PSNR shows the runs agree. Process counts above the GPUs present are
skipped and said so (one GPU: no scaling figure). Options after ``--`` go to ``nerfkit train``. Writes
benchmarks/results/train_ddp_scaling_{device}.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402
from train_log import memory, read_log, throughput, train_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def run(n: int, args) -> dict:
    per_process = args.batch_size // n
    options = ["--steps", str(args.steps), "--batch-size", str(per_process), "--method", args.method,
               "--device", args.device, "--eval-images", "0", "--save-every", str(10**7), "--log-every",
               str(args.log_every), "--no-progress"]
    if args.method == "ngp":
        target = train_config(["--method", "ngp", *args.extra]).ngp.target_samples or args.target_samples or \
            (1 << 18 if args.device.startswith("cuda") else 1 << 14)
        options += ["--ngp.target-samples", str(target // n)]
    if args.device.startswith("cpu"):
        options += ["--threads", str(max(1, (os.cpu_count() or 1) // n))]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "-m",
               "nerfkit", "train", "--output", tmp, *args.extra, *options]
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        lines = read_log(Path(tmp))
    last = [r for r in lines if "psnr" in r][-1]
    return {"processes": n, "batch_per_process": per_process, "global_batch": per_process * n,
            "wall_seconds": wall, "train_seconds": last["elapsed"], "final_train_psnr": last["psnr"],
            **throughput(lines, args.warmup), "memory_mb_rank0": memory(lines, args.warmup)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--method", default="vanilla", choices=["vanilla", "ngp"])
    parser.add_argument("--batch-size", type=int, default=None,
                        help="global rays per step (default: 8192 on CUDA, 2048 on CPU)")
    parser.add_argument("--target-samples", type=int, default=None,
                        help="ngp: global samples per step, when --ngp.target-samples is not given after -- "
                        "(default: the method's, 2^18 on CUDA, 2^14 on CPU)")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=100, help="steps left out of the throughput")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per run")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("extra", nargs="*", help="after --: nerfkit train options for every run")
    args = parser.parse_args()
    device_kind = args.device.split(":")[0]
    args.batch_size = args.batch_size or (8192 if device_kind == "cuda" else 2048)
    output = args.output or Path(__file__).parent / "results" / f"train_ddp_scaling_{device_kind}.json"

    available = torch.cuda.device_count() if device_kind == "cuda" else os.cpu_count() or 1
    counts = [n for n in args.processes if n <= available]
    skipped = [n for n in args.processes if n > available]
    limitation = (f"{available} {'GPU' if device_kind == 'cuda' else 'core'}(s) here: runs with "
                  f"{', '.join(map(str, skipped))} processes skipped") if skipped else None
    runs = [run(n, args) for n in counts]
    base = next((r for r in runs if r["processes"] == 1), None)
    for r in runs:
        if base is not None:
            r["speedup"] = r["steps_per_s"] / base["steps_per_s"]
            r["efficiency"] = r["speedup"] / r["processes"]
    record = {"benchmark": f"DDP strong scaling, --method {args.method}, fixed global batch {args.batch_size}",
              "steps": args.steps, "warmup_steps": args.warmup, "device": args.device, "limitation": limitation,
              "nerfkit_train_options": args.extra, "runs": runs, "machine": machine_info()}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2))
    print(f"{'processes':>9} {'rays/proc':>9} {'steps/s':>8} {'rays/s':>10} {'speed-up':>9} {'efficiency':>10} "
          f"{'train PSNR':>10}")
    for r in runs:
        print(f"{r['processes']:>9} {r['batch_per_process']:>9} {r['steps_per_s']:>8.2f} {r['rays_per_s']:>10,.0f} "
              f"{r.get('speedup', float('nan')):>8.2f}x {r.get('efficiency', float('nan')):>10.2f} "
              f"{r['final_train_psnr']:>10.2f}")
    if limitation:
        print(f"limitation: {limitation}")
    print(f"{args.steps} steps, global batch {args.batch_size}; device {args.device}; machine: "
          f"{record['machine']['cpu']}{', ' + record['machine']['gpu'] if 'gpu' in record['machine'] else ''}")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
