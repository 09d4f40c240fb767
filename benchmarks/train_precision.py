"""What mixed precision costs and gains: fp32 against bf16 (and fp16 on CUDA) at equal steps, side by side.

    python benchmarks/train_precision.py [--steps 800] [--method vanilla]         # CPU: fp32, bf16
    python benchmarks/train_precision.py --device cuda --method ngp --steps 2000   # GPU: fp32, bf16, fp16
    python benchmarks/train_precision.py --method ngp --precisions fp32 fp16 --cpu-fp16  # fp16's quality, on CPU

Each precision trains the same configuration (the built-in scene and the method's defaults unless options
after ``--`` go to ``nerfkit train``, e.g. ``-- --data.path ../shared/data/nerf_synthetic/lego --data.downscale
4``) for the same number of steps from the same seed; then the test split is rendered in fp32 (white background,
mean per-image PSNR/SSIM). Throughput is measured after ``--warmup`` steps; the memory columns are the process's
resident host memory (and the CUDA memory its tensors hold) logged after warm-up and at the end, which should
not grow. Writes benchmarks/results/train_precision_{device}.json, rewritten (atomically) before the first run
and after each one: until ``"complete": true`` it is a partial record (``runs_completed`` names the runs in it),
so a run cut off by a time limit still leaves the finished runs' figures. A run that fails is recorded under
``runs_failed`` and the others still run.

``--cpu-fp16`` lifts the trainer's refusal of fp16 on a CPU (torch's CPU autocast and gradient scaler run the same
casts and loss scaling as on CUDA, only slowly): what fp16's numerics cost in PSNR, measured without a GPU; its
speed means nothing there. Written to ``train_precision_cpu_fp16.json`` unless ``--output`` says otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, machine_label, write_json  # noqa: E402
from train_log import memory, read_log, throughput, train_config  # noqa: E402

from nerfkit.cli import load_run  # noqa: E402
from nerfkit.eval.render import evaluate_split  # noqa: E402
from nerfkit.train.precision import bound_cpu_kernel_caches  # noqa: E402
from nerfkit.train.trainer import train  # noqa: E402


def run(precision: str, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        base = train_config(args.extra)
        cfg = dataclasses.replace(base, output=Path(tmp), method=args.method, steps=args.steps, eval_every=0,
                                  eval_images=0, save_every=10**7, log_every=args.log_every, progress=False,
                                  precision=precision, device=args.device)
        result = train(cfg)
        lines = read_log(Path(tmp))
        _, model, scene, _ = load_run(Path(tmp), None, args.device)
        split = scene.split("test")
        indices = list(range(0, len(split), args.test_stride))
        report = evaluate_split(model, split.to(model_device(model)), "white", indices=indices)
    return {"precision": precision, "steps": result.step, "train_seconds": result.elapsed,
            "test_psnr": report["psnr"], "test_ssim": report["ssim"], "test_images": report["n_images"],
            "resolution": report["resolution"], "bad_steps": lines[-1].get("bad_steps", 0) if lines else 0,
            **throughput(lines, args.warmup), "memory_mb": memory(lines, args.warmup)}


def model_device(model):
    return next(model.parameters()).device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--warmup", type=int, default=100, help="steps left out of the throughput")
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--method", default="vanilla", choices=["vanilla", "ngp"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=None, choices=["fp32", "bf16", "fp16"],
                        help="default: fp32 bf16 (and fp16 on CUDA)")
    parser.add_argument("--test-stride", type=int, default=1, help="evaluate every N-th test view")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--cpu-fp16", action="store_true",
                        help="allow fp16 on a CPU, for its quality only (see above)")
    parser.add_argument("extra", nargs="*", help="after --: nerfkit train options for every run")
    args = parser.parse_args()
    device_kind = args.device.split(":")[0]
    precisions = args.precisions or (["fp32", "bf16", "fp16"] if device_kind == "cuda" else ["fp32", "bf16"])
    suffix = "_fp16" if args.cpu_fp16 and device_kind == "cpu" else ""
    output = args.output or Path(__file__).parent / "results" / f"train_precision_{device_kind}{suffix}.json"
    if args.cpu_fp16:
        import nerfkit.train.trainer as trainer

        trainer.check_precision = lambda precision, device: None

    if "bf16" in precisions:  # as `nerfkit train --precision bf16` does, but before the first run: its
        # evaluation (SSIM's convolutions) would create oneDNN's caches at their default size
        bound_cpu_kernel_caches("bf16", torch.device(args.device))
    machine = machine_info()
    runs: list[dict] = []
    failed: list[dict] = []

    def record(complete: bool) -> dict:
        # fp32 is the reference once it has run (without fp32 asked for: the first run)
        reference = next((r for r in runs if r["precision"] == "fp32"),
                         runs[0] if runs and "fp32" not in precisions else None)
        for r in runs:
            if reference is not None:
                r["psnr_vs_fp32_db"] = r["test_psnr"] - reference["test_psnr"]
                r["speedup_vs_fp32"] = r["steps_per_s"] / reference["steps_per_s"]
        done = [r["precision"] for r in runs] + [f["precision"] for f in failed]
        pending = [p for p in precisions if p not in done]
        status = (f"complete, {len(failed)} run(s) failed" if failed else "complete") if complete else (
            f"partial: {', '.join(pending)} not finished (still running, or cut off)" if pending else "partial")
        return {"benchmark": f"mixed precision at equal steps, --method {args.method}",
                "protocol": "mean per-image PSNR/SSIM on the test split, rendered in fp32, white background",
                "steps": args.steps, "warmup_steps": args.warmup, "device": args.device,
                "nerfkit_train_options": args.extra, "complete": complete, "status": status,
                "cpu_fp16": bool(args.cpu_fp16 and device_kind == "cpu"),
                "runs_planned": precisions, "runs_completed": [r["precision"] for r in runs],
                "runs_failed": failed, "runs": runs, "machine": machine}

    write_json(record(False), output)
    for p in precisions:
        try:
            runs.append(run(p, args))
        except Exception as err:  # noqa: BLE001 -- recorded; the other precisions still run
            traceback.print_exc()
            failed.append({"precision": p, "error": f"{type(err).__name__}: {err}"[:2000]})
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        write_json(record(False), output)
        print(f"{p} {'failed' if failed and failed[-1]['precision'] == p else 'done'}: wrote {output} (partial)",
              flush=True)
    final = record(True)
    write_json(final, output)
    nan = float("nan")
    print(f"{'precision':>9} {'steps/s':>8} {'rays/s':>9} {'speed-up':>9} {'PSNR':>7} {'dPSNR':>7} {'SSIM':>7} "
          f"{'host MiB (warm -> end)':>23} {'device MiB':>16}")
    for r in runs:
        host = r["memory_mb"].get("host_mem_mb", {})
        dev = r["memory_mb"].get("device_mem_mb", {})
        host_s = f"{host['after_warmup']:.0f} -> {host['end']:.0f}" if host else "n/a"
        dev_s = f"{dev['after_warmup']:.0f} -> {dev['end']:.0f}" if dev else "n/a"
        print(f"{r['precision']:>9} {r['steps_per_s']:>8.2f} {r['rays_per_s']:>9,.0f} "
              f"{r.get('speedup_vs_fp32', nan):>8.2f}x {r['test_psnr']:>7.2f} {r.get('psnr_vs_fp32_db', nan):>+7.2f} "
              f"{r['test_ssim']:>7.4f} {host_s:>23} {dev_s:>16}")
    for f in failed:
        print(f"{f['precision']:>9} failed: {f['error'].splitlines()[0] if f['error'] else ''}")
    views = f"{runs[0]['test_images']} test views at {runs[0]['resolution'][0]}x{runs[0]['resolution'][1]}; " \
        if runs else ""
    print(f"{args.steps} steps each, {views}device {args.device}; machine: {machine_label(machine)}, "
          f"{machine['torch_threads']} threads")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
