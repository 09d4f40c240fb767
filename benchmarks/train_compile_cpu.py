"""Training throughput with ``--compile`` against eager code, side by side in one run (CPU by default).

    python benchmarks/train_compile_cpu.py [--steps 400] [--warmup 100] [--methods vanilla ngp]
    python benchmarks/train_compile_cpu.py --device cuda              # on a GPU machine

Each method trains on the built-in scene with its default settings, eagerly and with --compile (the same seed,
so the same rays); throughput is measured over the log windows after ``--warmup`` steps, whose extra time with
--compile is the compilation. Options after ``--`` go to ``nerfkit train`` for both runs (e.g. ``--
--data.builtin.resolution 24`` for a smoke test). Writes benchmarks/results/train_compile_{device}.json,
rewritten (atomically) before the first run and after each one: until ``"complete": true`` it is a partial record
(``runs_completed`` names the runs in it), so a run cut off by a time limit still leaves the finished runs'
figures. A run that fails is recorded under ``runs_failed`` and the others still run.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, write_json  # noqa: E402
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


def label(method: str, compile_: bool) -> str:
    return f"{method} {'compiled' if compile_ else 'eager'}"


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

    machine = machine_info()
    planned = [(m, c) for m in args.methods for c in (False, True)]
    runs: list[dict] = []
    failed: list[dict] = []

    def record(complete: bool) -> dict:
        done = {(r["method"], r["compile"]): r for r in runs}
        for m in args.methods:  # the compiled run against the eager one, once both have run
            eager, compiled = done.get((m, False)), done.get((m, True))
            if eager is not None and compiled is not None:
                compiled["speedup"] = compiled["steps_per_s"] / eager["steps_per_s"]
                compiled["compile_seconds"] = compiled["warmup_seconds"] - eager["warmup_seconds"]
        finished = set(done) | {(f["method"], f["compile"]) for f in failed}
        pending = [label(*k) for k in planned if k not in finished]
        status = (f"complete, {len(failed)} run(s) failed" if failed else "complete") if complete else (
            f"partial: {', '.join(pending)} not finished (still running, or cut off)" if pending else "partial")
        return {"benchmark": "training throughput, --compile vs eager, built-in scene, method defaults",
                "steps": args.steps, "warmup_steps": args.warmup, "device": args.device, "nerfkit_train_options":
                args.extra, "complete": complete, "status": status, "runs_planned": [label(*k) for k in planned],
                "runs_completed": [label(r["method"], r["compile"]) for r in runs], "runs_failed": failed,
                "runs": runs, "machine": machine}

    write_json(record(False), output)
    for m, c in planned:
        try:
            runs.append(run(m, c, args))
            outcome = "done"
        except Exception as err:  # noqa: BLE001 -- recorded; the other runs still go
            traceback.print_exc()
            failed.append({"method": m, "compile": c, "error": f"{type(err).__name__}: {err}"[:2000]})
            outcome = "failed"
        write_json(record(False), output)
        print(f"{label(m, c)} {outcome}: wrote {output} (partial)", flush=True)
    write_json(record(True), output)
    print(f"{'method':>8} {'mode':>9} {'steps/s':>8} {'rays/s':>9} {'samples/s':>10} {'speed-up':>9} "
          f"{'compile s':>10} {'train PSNR':>11}")
    for r in runs:
        mode = "compiled" if r["compile"] else "eager"
        if r["fell_back_to_eager"]:
            mode = "fallback"
        print(f"{r['method']:>8} {mode:>9} {r['steps_per_s']:>8.2f} {r['rays_per_s']:>9,.0f} "
              f"{r.get('samples_per_s', 0):>10,.0f} {r.get('speedup', 1.0):>8.2f}x "
              f"{r.get('compile_seconds', 0.0):>10.1f} {r['final_train_psnr']:>11.2f}")
    for f in failed:
        print(f"{label(f['method'], f['compile'])} failed: {f['error'].splitlines()[0] if f['error'] else ''}")
    print(f"throughput over steps {args.warmup}-{args.steps}; device {args.device}; machine: "
          f"{machine['cpu']}, {machine['torch_threads']} threads")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
