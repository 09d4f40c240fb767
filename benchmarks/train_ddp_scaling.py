"""Multi-process (DDP) scaling of a fixed training workload: 1 against N processes, launched with torchrun.

    python benchmarks/train_ddp_scaling.py --device cuda --processes 1 2 4 8     # GPUs: one process per GPU
    python benchmarks/train_ddp_scaling.py --device cpu --processes 1 2          # CPU smoke test (gloo)

Strong scaling: every run trains the same global batch (``--batch-size`` rays per step, split evenly over the
processes; for ngp its samples per step are split too) for the same steps from the same seed: the same rays
each step, and the same training up to the per-process random draws (stratification, random backgrounds), so
the gain is the throughput. On a CPU the cores are shared out
(``--threads cores / N`` per process), so that every run uses the whole machine. Throughput is measured after
``--warmup`` steps; the final training PSNR shows the runs agree. Process counts above the GPUs present (on a
CPU: the cores; or above ``--max-processes``) are not run: each is listed under ``skipped`` with the reason, and
``limitation`` says so (one GPU: "only 1 GPU present: 2, 4, 8 processes not run", no scaling figure). Options
after ``--`` go to ``nerfkit train``. Writes benchmarks/results/train_ddp_scaling_{device}.json, rewritten
(atomically) before the first run and after each one: until ``"complete": true`` it is a partial record
(``runs_completed`` names the runs in it), so a run cut off by a time limit still leaves the finished runs'
figures (and the limitation). A run that fails is recorded under ``runs_failed`` and the others still run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, write_json  # noqa: E402
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


def plan(requested: list[int], device_kind: str, max_processes: int | None) -> tuple[list[int], list[dict], str | None]:
    """The process counts to run, those skipped (each with its reason) and the record's limitation (None when
    every requested count runs)."""
    if device_kind == "cuda":
        present = torch.cuda.device_count()
        what = f"{present} GPU{'s' if present != 1 else ''}"
        why = f"one process per GPU, and only {what} present" if present else "no GPU present"
    else:
        present = os.cpu_count() or 1
        what = f"{present} CPU core{'s' if present != 1 else ''}"
        why = f"more processes than the {what} here"
    limit = present if max_processes is None else min(present, max_processes)
    counts = [n for n in requested if n <= limit]
    skipped = []
    for n in requested:
        if n > present:
            skipped.append({"processes": n, "reason": why})
        elif n > limit:
            skipped.append({"processes": n, "reason": f"above --max-processes {max_processes}"})
    if not skipped:
        return counts, skipped, None
    names = ", ".join(str(s["processes"]) for s in skipped)
    if limit < present:
        head = f"--max-processes {max_processes} ({what} present)"
    elif device_kind == "cuda":
        head = f"only {what} present" if present else "no GPU present"
    else:
        head = f"only {what} here"
    tail = "" if any(n == 1 for n in counts) and len(counts) > 1 else "; no scaling figure"
    return counts, skipped, f"{head}: {names} processes not run{tail}"


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
    parser.add_argument("--max-processes", type=int, default=None,
                        help="run no more processes than this (default: the GPUs present, on a CPU the cores); "
                        "larger counts are recorded as skipped, e.g. 1 for a smoke test standing in for one GPU")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("extra", nargs="*", help="after --: nerfkit train options for every run")
    args = parser.parse_args()
    device_kind = args.device.split(":")[0]
    args.batch_size = args.batch_size or (8192 if device_kind == "cuda" else 2048)
    output = args.output or Path(__file__).parent / "results" / f"train_ddp_scaling_{device_kind}.json"

    counts, skipped, limitation = plan(args.processes, device_kind, args.max_processes)
    if limitation:
        print(f"limitation: {limitation}", flush=True)
    machine = machine_info()
    runs: list[dict] = []
    failed: list[dict] = []

    def record(complete: bool) -> dict:
        base = next((r for r in runs if r["processes"] == 1), None)
        for r in runs:
            if base is not None:
                r["speedup"] = r["steps_per_s"] / base["steps_per_s"]
                r["efficiency"] = r["speedup"] / r["processes"]
        finished = [r["processes"] for r in runs] + [f["processes"] for f in failed]
        pending = [n for n in counts if n not in finished]
        status = (f"complete, {len(failed)} run(s) failed" if failed else "complete") if complete else (
            f"partial: {', '.join(map(str, pending))} processes not finished (still running, or cut off)"
            if pending else "partial")
        return {"benchmark": f"DDP strong scaling, --method {args.method}, fixed global batch {args.batch_size}",
                "steps": args.steps, "warmup_steps": args.warmup, "device": args.device, "limitation": limitation,
                "processes_requested": args.processes, "skipped": skipped, "complete": complete, "status": status,
                "runs_planned": counts, "runs_completed": [r["processes"] for r in runs], "runs_failed": failed,
                "nerfkit_train_options": args.extra, "runs": runs, "machine": machine}

    write_json(record(False), output)
    for n in counts:
        try:
            runs.append(run(n, args))
            outcome = "done"
        except Exception as err:  # noqa: BLE001 -- recorded; the other counts still run
            traceback.print_exc()
            failed.append({"processes": n, "error": f"{type(err).__name__}: {err}"[:4000]})
            outcome = "failed"
        write_json(record(False), output)
        print(f"{n} process{'es' if n > 1 else ''} {outcome}: wrote {output} (partial)", flush=True)
    write_json(record(True), output)
    print(f"{'processes':>9} {'rays/proc':>9} {'steps/s':>8} {'rays/s':>10} {'speed-up':>9} {'efficiency':>10} "
          f"{'train PSNR':>10}")
    for r in runs:
        print(f"{r['processes']:>9} {r['batch_per_process']:>9} {r['steps_per_s']:>8.2f} {r['rays_per_s']:>10,.0f} "
              f"{r.get('speedup', float('nan')):>8.2f}x {r.get('efficiency', float('nan')):>10.2f} "
              f"{r['final_train_psnr']:>10.2f}")
    for f in failed:
        print(f"{f['processes']:>9} failed: {f['error'].splitlines()[0] if f['error'] else ''}")
    if limitation:
        print(f"limitation: {limitation}")
    print(f"{args.steps} steps, global batch {args.batch_size}; device {args.device}; machine: "
          f"{machine['cpu']}{', ' + machine['gpu'] if 'gpu' in machine else ''}")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
