"""The hash encoding's CPU paths side by side: the torch reference against the fused loop torch.compile generates
(``nerfkit.kernels.hashgrid_compiled``, what ``--method ngp`` uses off CUDA).

Both run in the same process on the same points and table (the ngp field's CPU defaults unless told otherwise:
8 levels, 2^17 rows per level, resolutions 16..512, 2 features), points drawn in the middle half of the cube as
an object's surface samples would be. Timed: the forward pass without gradients (the occupancy grid's density
queries, early stopping, rendering) and forward + backward into the table (training). Each figure is the median
of ``--repeats`` calls after a warm-up call; the compiled path's first call (its compilation) is printed apart.
Results are checked against each other (largest difference printed). The compiled path also runs with its loops
over the levels coarse to fine (``compiled, level order``) instead of folded (finest, coarsest, ...; see
``nerfkit.kernels.hashgrid_compiled``), the two alternating call by call, on these points and on points along
rays (``--rays`` rays of 16 consecutive samples 1/358 of the cube's diagonal apart, as a training batch's marched
samples: coherent, so that coarse levels stay in the caches) and on points in one tiny cube (side 1/2000: every
level's few rows they touch stay in the caches, so the difference to uniform points is the time spent waiting for
table rows). Written, with the machine, to benchmarks/results/hashgrid_cpu.json.

    python benchmarks/hashgrid_cpu.py [--points 100000] [--repeats 10]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, median_seconds, write_record  # noqa: E402

import nerfkit.kernels.hashgrid_compiled as hashgrid_compiled  # noqa: E402
from nerfkit.encoders import HashGridEncoder  # noqa: E402
from nerfkit.train.host_memory import reuse_freed_memory  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, float]:
    """(first call's seconds, median seconds of ``repeats`` later calls)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start, median_seconds(fn, repeats, warmup=False)


def level_order(n_levels: int) -> list[int]:
    """The levels coarse to fine (the compiled loops' order before the folded one)."""
    return list(range(n_levels))


def alternating(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds of ``repeats`` calls of each of ``fns`` (name -> (setup, call)), the calls alternating."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, (setup, fn) in fns.items():
            setup()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--levels", type=int, default=8)
    parser.add_argument("--log2-hashmap-size", type=int, default=17)
    parser.add_argument("--max-resolution", type=int, default=512)
    parser.add_argument("--rays", type=int, default=2500, help="rays of the points along rays")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "hashgrid_cpu.json")
    args = parser.parse_args()

    reuse_freed_memory()  # as training does (nerfkit.train.host_memory)
    torch.manual_seed(0)
    reference = HashGridEncoder(3, args.levels, 2, args.log2_hashmap_size, 16, args.max_resolution, init_scale=0.1)
    compiled = HashGridEncoder(3, args.levels, 2, args.log2_hashmap_size, 16, args.max_resolution, compile=True)
    compiled.load_state_dict(reference.state_dict())
    x = torch.rand(args.points, 3) * 0.5 + 0.25
    grad_out = torch.randn(args.points, reference.out_dim)
    starts = torch.rand(args.rays, 1, 3) * 0.5 + 0.25
    dirs = torch.nn.functional.normalize(torch.randn(args.rays, 1, 3), dim=-1)
    along = (starts + dirs * (3 ** 0.5 / 358) * torch.arange(16.0)[:, None]).clamp(0.0, 1.0).reshape(-1, 3)
    grad_along = torch.randn(along.shape[0], reference.out_dim)
    one_cube = 0.5 + torch.rand(args.points, 3) / 2000  # the same rows again and again: the table in cache

    def forward(enc, points=x):
        with torch.no_grad():
            return enc(points)

    def train_step(enc, points=x, grad=grad_out):
        enc.embeddings.grad = None
        enc(points).backward(grad)
        return enc.embeddings.grad

    rows = {}
    for name, enc in (("reference", reference), ("compiled", compiled)):
        first_fwd, fwd = timed(lambda: forward(enc), args.repeats)
        first_step, step = timed(lambda: train_step(enc), args.repeats)
        rows[name] = {"forward_ms": fwd * 1e3, "forward_backward_ms": step * 1e3,
                      "first_forward_s": first_fwd, "first_forward_backward_s": first_step}
    folded = hashgrid_compiled.folded_order

    def use_order(order) -> None:
        hashgrid_compiled.folded_order = order
        hashgrid_compiled._loop_constants.cache_clear()  # the order is part of the constants derived once

    orders = {"compiled": lambda: use_order(folded), "compiled, level order": lambda: use_order(level_order)}
    rows["compiled_alternating"] = {}
    for points, (pts, grad) in {"uniform": (x, grad_out), "along_rays": (along, grad_along),
                                "in_one_tiny_cube": (one_cube, grad_out)}.items():
        fwd = alternating({k: (v, lambda: forward(compiled, pts)) for k, v in orders.items()}, 3 * args.repeats)
        step = alternating({k: (v, lambda: train_step(compiled, pts, grad)) for k, v in orders.items()},
                           3 * args.repeats)
        rows["compiled_alternating"][points] = {
            "points": pts.shape[0], **{name: {"forward_ms": fwd[name] * 1e3, "forward_backward_ms": step[name] * 1e3}
                                       for name in orders}}
    use_order(folded)
    out_diff = float((forward(reference) - forward(compiled)).abs().max())
    grad_diff = float((train_step(reference) - train_step(compiled)).abs().max())
    for key in ("forward_ms", "forward_backward_ms"):
        rows["speedup_" + key.removesuffix("_ms")] = rows["reference"][key] / rows["compiled"][key]

    record = {"benchmark": "hash encoding on CPU: torch reference vs compiled loop", "points": args.points,
              "levels": args.levels, "log2_hashmap_size": args.log2_hashmap_size,
              "resolutions": reference.level_resolutions, "repeats": args.repeats, **rows,
              "max_abs_difference": {"forward": out_diff, "table_gradient": grad_diff}, "reuse_freed_memory": reuse_freed_memory(), "machine": machine_info()}
    print(f"{args.points:,} points, {args.levels} levels, 2^{args.log2_hashmap_size} rows, resolutions "
          f"{reference.level_resolutions[0]}..{reference.level_resolutions[-1]}")
    print(f"{'':12s}{'forward':>12s}{'fwd+bwd':>12s}")
    for name in ("reference", "compiled"):
        print(f"{name:12s}{rows[name]['forward_ms']:10.1f}ms{rows[name]['forward_backward_ms']:10.1f}ms")
    print(f"{'speed-up':12s}{rows['speedup_forward']:11.2f}x{rows['speedup_forward_backward']:11.2f}x")
    for points, block in rows["compiled_alternating"].items():
        print(f"compiled, folded vs level order (alternating calls), {block['points']:,} points {points}:")
        for name in orders:
            print(f"  {name:22s}{block[name]['forward_ms']:10.1f}ms{block[name]['forward_backward_ms']:10.1f}ms")
    print(f"compiled path's first calls (compilation): forward {rows['compiled']['first_forward_s']:.1f} s, "
          f"forward+backward {rows['compiled']['first_forward_backward_s']:.1f} s")
    print(f"largest difference: output {out_diff:.1e}, table gradient {grad_diff:.1e}")
    write_record(record, args.output)


if __name__ == "__main__":
    main()
