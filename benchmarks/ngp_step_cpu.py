"""Where a training step of a trained Instant-NGP run spends its time on the CPU, stage by stage, with all
threads and with one: what a faster step would have to shorten, and which stages the second core speeds up.

    python benchmarks/ngp_step_cpu.py --run RUN [--checkpoint FILE] [--blocks 12] [--steps-per-block N]
                                      [--sweep-rays 900 1800 3600 7200]

RUN is a run folder with checkpoints, e.g. from ``benchmarks/ngp_lego.py --run-dir RUN``. From the checkpoint
(model, occupancy grid, batch size), the trainer's step (grid update, rays, forward, loss, backward, Adam; no
logging or checkpoints) runs in blocks of ``--steps-per-block`` steps (default: the grid's update interval, so
that every block holds one grid update), alternating between the machine's thread
count and one thread (the machine's speed drifts within minutes: only steps timed side by side compare). Each
stage is timed by wrapping the function that does it:

* grid update (``before_step``), rays (``RaySampler.sample``), march (the grid traversal),
* density pass (the field's gradient-free density of every marched sample, for early stopping),
* field forward (the kept samples, with gradients), the rest of rendering (compositing),
* backward, Adam, and the remainder (loss, ``zero_grad``, Python).

Then a profile of a few steps with all threads gives the operators' own time (matrix products, the compiled
loops, ``bincount``, ...). With ``--sweep-rays``, steps of those numbers of rays (all threads) run in blocks
alternating between the sizes, and a straight line through (samples per step, ms per step) splits a step into
what does not grow with its samples (Adam over the table, grid updates, per-call overheads, ...) and a cost per
sample. Written, with the machine, to benchmarks/results/ngp_step_cpu.json.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, write_record  # noqa: E402

import nerfkit.methods.occgrid as occgrid_module  # noqa: E402
import nerfkit.sampling.grid as grid_module  # noqa: E402
from nerfkit.cli import load_run  # noqa: E402
from nerfkit.data.rays import RaySampler, composite  # noqa: E402
from nerfkit.train.checkpoint import latest_checkpoint, load_checkpoint  # noqa: E402
from nerfkit.train.host_memory import reuse_freed_memory  # noqa: E402
from nerfkit.train.trainer import adam, background_colors  # noqa: E402

STAGES = ("grid update", "rays", "march", "density pass", "field forward", "rest of rendering", "backward",
          "adam", "remainder")


class StageClock:
    """Seconds per stage, accumulated by wrapped functions (nested stages are subtracted from their parent)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self._stack: list[list[float]] = []

    def wrap(self, owner, name: str, stage: str) -> None:
        inner = getattr(owner, name)

        def timed(*args, **kwargs):
            self._stack.append([0.0])
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent = time.perf_counter() - start
                nested = self._stack.pop()[0]
                self.seconds[stage] += spent - nested
                if self._stack:
                    self._stack[-1][0] += spent

        setattr(owner, name, timed)


def sweep_sizes(step, sizes: list[int], blocks: int, steps_per_block: int) -> dict:
    """Mean ms per step and samples per step for each number of rays in ``sizes`` (blocks alternating between
    the sizes, in turn forwards and backwards), and the least-squares line ms = fixed + per_sample * samples."""
    for n_rays in sizes:  # warm-up: a new size is a new shape for the compiled loops' first calls
        for _ in range(3):
            step(n_rays)
    ms: dict[int, list[float]] = {n: [] for n in sizes}
    samples: dict[int, list[float]] = {n: [] for n in sizes}
    for block in range(blocks):
        for n_rays in (sizes if block % 2 == 0 else sizes[::-1]):
            start, total = time.perf_counter(), 0
            for _ in range(steps_per_block):
                total += step(n_rays)
            ms[n_rays].append((time.perf_counter() - start) / steps_per_block * 1000)
            samples[n_rays].append(total / steps_per_block)
    xs = [statistics.mean(samples[n]) for n in sizes]
    ys = [statistics.mean(ms[n]) for n in sizes]
    mean_x, mean_y = statistics.mean(xs), statistics.mean(ys)
    per_sample = (sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
                  / max(sum((x - mean_x) ** 2 for x in xs), 1e-12))
    fixed = mean_y - per_sample * mean_x
    rows = [{"rays": n, "samples_per_step": x, "ms_per_step": y, "samples_per_s": x / y * 1000}
            for n, x, y in zip(sizes, xs, ys)]
    print(f"sweep over rays per step ({blocks} alternating blocks of {steps_per_block} steps each):")
    for row in rows:
        print(f"  {row['rays']:6d} rays  {row['samples_per_step']:8.0f} samples  {row['ms_per_step']:7.1f} ms  "
              f"{row['samples_per_s']:9,.0f} samples/s")
    print(f"  a step = {fixed:.1f} ms + {per_sample * 1000:.2f} us per sample")
    return {"sizes": rows, "fixed_ms": fixed, "us_per_sample": per_sample * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a run folder with checkpoints (method ngp)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="default: the run's latest")
    parser.add_argument("--blocks", type=int, default=12, help="timed blocks per thread count")
    parser.add_argument("--steps-per-block", type=int, default=None,
                        help="default: the occupancy grid's update interval (16), one update per block")
    parser.add_argument("--profile-steps", type=int, default=10)
    parser.add_argument("--sweep-rays", type=int, nargs="*", default=[],
                        help="rays per step to sweep (at least 2 sizes), for fixed and per-sample costs")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "ngp_step_cpu.json")
    args = parser.parse_args()
    reuse_freed_memory()  # as training does (nerfkit.train.host_memory)
    if args.blocks < 1 or (args.steps_per_block or 1) < 1 or args.profile_steps < 0:
        sys.exit("--blocks and --steps-per-block must be >= 1, --profile-steps >= 0")
    if args.sweep_rays and (len(set(args.sweep_rays)) < 2 or min(args.sweep_rays) < 1):
        sys.exit("--sweep-rays needs at least 2 different numbers of rays, each >= 1")
    if args.checkpoint is None:
        found = latest_checkpoint(args.run / "checkpoints")
        if found is None:
            sys.exit(f"no checkpoint in {args.run / 'checkpoints'}")
        args.checkpoint = found[0]
    cfg, model, scene, device = load_run(args.run, args.checkpoint, "cpu")
    if cfg.method != "ngp":
        sys.exit(f"{args.run} is a {cfg.method} run; this benchmark profiles --method ngp")
    state = load_checkpoint(args.checkpoint, device)
    model.load_state_dict(state["model"])
    if args.steps_per_block is None:
        args.steps_per_block = model.occgrid.cfg.update_every
    sampler = RaySampler(scene.split("train").to(device))
    lr = cfg.lr_final if cfg.lr_final is not None else model.default_lr_final  # the run's last learning rate
    optimizer = adam(model.param_groups(), lr, model.adam_eps, device)
    generator = torch.Generator().manual_seed(0)
    batch_size, first_step = int(state["batch_size"]), int(state["step"])
    background = cfg.data.background

    clock = StageClock()
    clock.wrap(model, "before_step", "grid update")
    clock.wrap(sampler, "sample", "rays")
    clock.wrap(grid_module, "_march", "march")
    clock.wrap(model.field, "density_and_encoding", "density pass")
    clock.wrap(model.field, "forward", "field forward")
    clock.wrap(occgrid_module, "rendering", "rest of rendering")
    step_index = [first_step]

    def step(n_rays: int = batch_size) -> int:
        model.train()
        model.before_step(step_index[0], generator)
        step_index[0] += 1
        batch = sampler.sample(n_rays, generator)
        bkgd = background_colors(background, n_rays, device, generator)
        outputs = model(batch.origins, batch.directions, bkgd, generator)
        losses = model.loss(outputs, composite(batch.rgba, bkgd))
        optimizer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        losses["loss"].backward()
        clock.seconds["backward"] += time.perf_counter() - start
        start = time.perf_counter()
        optimizer.step()
        clock.seconds["adam"] += time.perf_counter() - start
        return int(losses["n_samples"])

    all_threads = torch.get_num_threads()
    counts = [all_threads] if all_threads == 1 else [all_threads, 1]
    for threads in counts:  # warm-up: compilation (the loops are compiled once per thread count)
        torch.set_num_threads(threads)
        for _ in range(5):
            step()
    per_stage = {t: collections.defaultdict(list) for t in counts}
    totals = {t: [] for t in counts}
    samples = {t: 0 for t in counts}
    for block in range(args.blocks):
        for threads in (counts if block % 2 == 0 else counts[::-1]):
            torch.set_num_threads(threads)
            clock.seconds.clear()
            start = time.perf_counter()
            for _ in range(args.steps_per_block):
                samples[threads] += step()
            total = (time.perf_counter() - start) / args.steps_per_block
            totals[threads].append(total)
            seen = 0.0
            for stage in STAGES[:-1]:
                value = clock.seconds.get(stage, 0.0) / args.steps_per_block
                per_stage[threads][stage].append(value)
                seen += value
            per_stage[threads]["remainder"].append(total - seen)
    torch.set_num_threads(all_threads)

    n_steps = args.blocks * args.steps_per_block
    rows = []
    print(f"{args.checkpoint} (step {first_step}), {batch_size} rays per step; mean ms per step over "
          f"{args.blocks} blocks of {args.steps_per_block} steps, each thread count")
    print(f"{'stage':20s} {all_threads:>2d} threads   1 thread   speed-up")
    for stage in STAGES + ("step",):
        # means over the blocks, so that the stages add up to the step (the grid update runs every 16th step)
        figures = {t: statistics.mean(totals[t] if stage == "step" else per_stage[t][stage]) * 1000
                   for t in counts}
        row = {"stage": stage, **{f"ms_{t}_threads": figures[t] for t in counts}}
        if len(counts) == 2:
            row["speedup"] = figures[1] / max(figures[all_threads], 1e-9)
        rows.append(row)
        print(f"{stage:20s} {figures[all_threads]:10.2f}" + (
            f" {figures[1]:10.2f} {row['speedup']:9.2f}x" if len(counts) == 2 else ""))
    rates = {t: samples[t] / sum(totals[t]) / args.steps_per_block for t in counts}
    faster = sum(a < b for a, b in zip(totals[all_threads], totals[counts[-1]]))
    print("samples/s: " + ", ".join(f"{rates[t]:,.0f} with {t} thread(s)" for t in counts)
          + f"; {samples[all_threads] / n_steps:,.0f} samples per step"
          + (f"; {all_threads} threads faster in {faster} of {args.blocks} paired blocks" if len(counts) == 2 else ""))

    operators = []
    if args.profile_steps:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.profile_steps):
                step()
        events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        print(f"operators, own time on the calling thread, {all_threads} threads (ms per step):")
        for event in events[:15]:
            ms = event.self_cpu_time_total / 1000 / args.profile_steps
            operators.append({"name": event.key, "ms_per_step": ms, "calls_per_step": event.count / args.profile_steps})
            print(f"  {ms:7.2f}  {event.count / args.profile_steps:5.0f} calls  {event.key[:70]}")

    sweep = sweep_sizes(step, args.sweep_rays, args.blocks, args.steps_per_block) if args.sweep_rays else None

    record = {"benchmark": "ngp training step on CPU, stage by stage, all threads vs one",
              "run": str(args.run), "checkpoint": str(args.checkpoint), "checkpoint_step": first_step,
              "rays_per_step": batch_size, "samples_per_step": samples[all_threads] / n_steps,
              "blocks": args.blocks, "steps_per_block": args.steps_per_block,
              "samples_per_s": {str(t): rates[t] for t in counts}, "stages": rows, "operators": operators,
              "median_step_ms": {str(t): statistics.median(totals[t]) * 1000 for t in counts}, "sweep": sweep,
              "machine": machine_info()}
    write_record(record, args.output)


if __name__ == "__main__":
    main()
