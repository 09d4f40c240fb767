"""nerfkit's hot primitives against the naive code a user would otherwise write, side by side, on CPU.

For every primitive both versions run in the same process on the same inputs (fixed seeds); their results are
checked against each other (the largest difference is printed) and each is timed as the median of several calls
after one warm-up call (``time.perf_counter``, torch's default thread count). Printed as a table and written,
with the machine they ran on, to benchmarks/results/primitives_cpu.json (``--quick``: every size ~8x smaller, for
smoke runs, written to primitives_cpu_quick.json).

 1. packed render_weight_from_density  vs  a Python loop over rays with torch.cumsum per ray
 2. packed exclusive_prod              vs  a Python loop over rays with torch.cumprod per ray
 3. packed distortion (O(N))           vs  the quadratic definition with an (n, n) matrix per ray (loop), forward
                                           and forward+backward (autograd of the quadratic form); also vs the
                                           quadratic form batched over all rays at once (R, n, n)
 4. ray_aabb_intersect                 vs  a Python loop over rays (timed on a subset, scaled per ray)
 5. traverse_grids (sphere-shell grid) vs  uniform steps over [near, far] masked by the occupancy of each midpoint
 6. OccGridEstimator.sampling with early stopping (sigma_fn, opaque sphere)  vs  the same without early stopping
 7. importance_sampling (batched)      vs  sample_pdf (timing only: different placement rules, not compared)

    python benchmarks/primitives_cpu.py [--quick] [--repeats 10] [--naive-repeats 3] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, median_seconds  # noqa: E402

from nerfkit import (OccGridEstimator, RayIntervals, accumulate_along_rays, distortion, exclusive_prod,  # noqa: E402
                     importance_sampling, look_at, ray_aabb_intersect, rays_from_pixels, render_weight_from_density,
                     sample_pdf, traverse_grids)
from nerfkit.kernels import kernel_mode  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BOX = (-1.5, -1.5, -1.5, 1.5, 1.5, 1.5)
STEP = math.sqrt(3) * 3 / 1024  # the marching step of nerfacc's examples for a box of side 3
NEAR, FAR = 2.0, 6.0


# --------------------------------------------------------------------------------------------------- helpers
def bench(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` calls, after one warm-up call."""
    return median_seconds(fn, repeats)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max().item()) if a.numel() else 0.0


def packed_intervals(n_rays: int, max_count: int, gen: torch.Generator, fixed: bool = False):
    """Per ray 0..max_count consecutive intervals (``max_count`` each when ``fixed``) starting at NEAR."""
    if fixed:
        counts = torch.full((n_rays,), max_count, dtype=torch.long)
    else:
        counts = torch.randint(0, max_count + 1, (n_rays,), generator=gen)
    starts = torch.cumsum(counts, 0) - counts
    packed_info = torch.stack([starts, counts], dim=-1)
    n = int(counts.sum())
    deltas = 0.001 + 0.02 * torch.rand(n, generator=gen)
    ray_ids = torch.repeat_interleave(torch.arange(n_rays), counts)
    cum = torch.cumsum(deltas.double(), 0)
    base = (cum - deltas.double())[starts.clamp_max(max(n - 1, 0))] if n else cum.new_zeros(n_rays)
    t_ends = (NEAR + cum - base[ray_ids]).float()
    t_starts = t_ends - deltas
    return t_starts, t_ends, packed_info, ray_ids


def camera_rays(n_rays: int, gen: torch.Generator, n_cams: int = 64):
    """Rays through random pixels of ``n_cams`` cameras at distance 4 looking at the origin (60 degree field of
    view, 256x256 pixels: the box [-1.5, 1.5]^3 fills most of each image). Unit directions."""
    az = torch.rand(n_cams, generator=gen) * 2 * math.pi
    el = (torch.rand(n_cams, generator=gen) * 2 - 1) * math.radians(60)
    eye = 4.0 * torch.stack([el.cos() * az.cos(), el.cos() * az.sin(), el.sin()], dim=-1)
    c2w = look_at(eye, torch.zeros(3), torch.tensor([0.0, 0.0, 1.0]))
    size, focal = 256.0, 128.0 / math.tan(math.radians(30))
    cam = torch.randint(0, n_cams, (n_rays,), generator=gen)
    x, y = torch.rand(n_rays, generator=gen) * size, torch.rand(n_rays, generator=gen) * size
    f, c = torch.full((n_rays,), focal), torch.full((n_rays,), size / 2)
    return rays_from_pixels(c2w[cam], f, f, c, c, x, y)


def cell_centres(res: int) -> torch.Tensor:
    """``(res, res, res, 3)`` centres of the cells of BOX."""
    axis = BOX[0] + (torch.arange(res, dtype=torch.float32) + 0.5) * (BOX[3] - BOX[0]) / res
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1)


# ------------------------------------------------------------------------------------------------ benchmarks
def bench_weights(size: dict, reps: int, naive_reps: int, gen: torch.Generator) -> dict:
    t_starts, t_ends, packed_info, _ = packed_intervals(size["rays"], 128, gen)
    sigmas = 10.0 * torch.rand(t_starts.shape, generator=gen)

    def ours():
        return render_weight_from_density(t_starts, t_ends, sigmas, packed_info=packed_info)[0]

    def naive():
        out = torch.zeros_like(sigmas)
        for start, count in packed_info.tolist():
            if count == 0:
                continue
            sd = sigmas[start:start + count] * (t_ends[start:start + count] - t_starts[start:start + count])
            trans = torch.exp(-(torch.cumsum(sd, 0) - sd))
            out[start:start + count] = trans * (1.0 - torch.exp(-sd))
        return out

    a, b = ours(), naive()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    n = sigmas.numel()
    return _row("render_weight_from_density (packed)", f"{size['rays']} rays x 0..128, {n:,} samples",
                bench(ours, reps), bench(naive, naive_reps), n, "Msamples/s", f"max|dw|={max_diff(a, b):.1e}",
                {"max_abs_diff": max_diff(a, b), "n_rays": size["rays"], "n_samples": n},
                naive="Python loop over rays, torch.cumsum per ray")


def bench_exclusive_prod(size: dict, reps: int, naive_reps: int, gen: torch.Generator) -> dict:
    t_starts, _, packed_info, _ = packed_intervals(size["rays"], 128, gen)
    x = 0.9 + 0.1 * torch.rand(t_starts.shape, generator=gen)

    def ours():
        return exclusive_prod(x, packed_info)

    def naive():
        out = torch.ones_like(x)
        for start, count in packed_info.tolist():
            if count > 1:
                out[start + 1:start + count] = torch.cumprod(x[start:start + count - 1], 0)
        return out

    a, b = ours(), naive()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    n = x.numel()
    return _row("exclusive_prod (packed)", f"{size['rays']} rays x 0..128, {n:,} samples",
                bench(ours, reps), bench(naive, naive_reps), n, "Msamples/s", f"max|d|={max_diff(a, b):.1e}",
                {"max_abs_diff": max_diff(a, b), "n_rays": size["rays"], "n_samples": n},
                naive="Python loop over rays, torch.cumprod per ray")


def _quadratic_distortion(w: torch.Tensor, m: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 d_i over the last dimension, with an (n, n) matrix."""
    pair = (w[..., :, None] * w[..., None, :] * (m[..., :, None] - m[..., None, :]).abs()).sum(dim=(-1, -2))
    return pair + (w.square() * d).sum(-1) / 3.0


def bench_distortion(size: dict, reps: int, naive_reps: int, gen: torch.Generator) -> list[dict]:
    n_rays, n_per = size["dist_rays"], 64
    t_starts, t_ends, packed_info, _ = packed_intervals(n_rays, n_per, gen, fixed=True)
    weights = torch.rand(t_starts.shape, generator=gen) / n_per
    spans = packed_info.tolist()
    n = weights.numel()

    def ours(w, s, e):
        return distortion(w, s, e, packed_info=packed_info)[:, 0]

    def naive(w, s, e):
        m, d = 0.5 * (s + e), e - s
        return torch.stack([_quadratic_distortion(w[a:a + c], m[a:a + c], d[a:a + c]) for a, c in spans])

    def batched(w, s, e):
        w, s, e = (v.view(n_rays, n_per) for v in (w, s, e))
        return _quadratic_distortion(w, 0.5 * (s + e), e - s)

    with torch.no_grad():
        a, b, c = ours(weights, t_starts, t_ends), naive(weights, t_starts, t_ends), batched(weights, t_starts, t_ends)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-7)
    rel = float(((a - b).abs() / b.abs().clamp_min(1e-12)).max())
    size_txt = f"{n_rays} rays x {n_per}, {n:,} samples"
    rows = []
    with torch.no_grad():
        t_ours = bench(lambda: ours(weights, t_starts, t_ends), reps)
        rows.append(_row("distortion fwd (packed)", size_txt, t_ours,
                         bench(lambda: naive(weights, t_starts, t_ends), naive_reps), n, "Msamples/s",
                         f"max rel={rel:.1e}", {"max_abs_diff": max_diff(a, b), "max_rel_diff": rel,
                                                "n_rays": n_rays, "n_samples": n},
                         naive="quadratic definition, (n, n) matrix per ray in a Python loop"))
        rows.append(_row("distortion fwd vs batched n*n", size_txt, t_ours,
                         bench(lambda: batched(weights, t_starts, t_ends), reps), n, "Msamples/s",
                         f"max|d|={max_diff(a, c):.1e}", {"max_abs_diff": max_diff(a, c), "n_rays": n_rays,
                                                          "n_samples": n},
                         naive="quadratic definition batched over all rays, (R, n, n) tensor"))

    leaves = [v.clone().requires_grad_(True) for v in (weights, t_starts, t_ends)]

    def grads(fn):
        return torch.autograd.grad(fn(*leaves).sum(), leaves)

    ga, gb = grads(ours), grads(naive)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-3, atol=1e-6)
    gdiff = max(max_diff(x, y) for x, y in zip(ga, gb))
    rows.append(_row("distortion fwd+bwd (packed)", size_txt, bench(lambda: grads(ours), reps),
                     bench(lambda: grads(naive), naive_reps), n, "Msamples/s", f"max|dgrad|={gdiff:.1e}",
                     {"max_abs_grad_diff": gdiff, "grads_of": ["weights", "t_starts", "t_ends"], "n_rays": n_rays,
                      "n_samples": n},
                     naive="autograd of the quadratic definition, per ray in a Python loop"))
    return rows


def bench_aabb(size: dict, reps: int, naive_reps: int, gen: torch.Generator) -> dict:
    n_rays, n_sub = size["aabb_rays"], size["aabb_subset"]
    rays_o, rays_d = camera_rays(n_rays, gen)
    box = torch.tensor(BOX)
    sub_o, sub_d = rays_o[:n_sub], rays_d[:n_sub]

    def ours():
        return ray_aabb_intersect(rays_o, rays_d, box[None])

    def naive():
        t_mins, t_maxs, hits = [], [], []
        for o, d in zip(sub_o, sub_d):
            inv = 1.0 / d
            t0, t1 = (box[:3] - o) * inv, (box[3:] - o) * inv
            t_near, t_far = torch.minimum(t0, t1).max(), torch.maximum(t0, t1).min()
            hit = bool(t_far > t_near)
            t_mins.append(float(t_near) if hit else math.inf)
            t_maxs.append(float(t_far) if hit else math.inf)
            hits.append(hit)
        return torch.tensor(t_mins), torch.tensor(t_maxs), torch.tensor(hits)

    t_mins, t_maxs, hits = ours()
    n_mins, n_maxs, n_hits = naive()
    assert torch.equal(hits[:n_sub, 0], n_hits), "hit masks differ"
    h = n_hits
    diff = max(max_diff(t_mins[:n_sub, 0][h], n_mins[h]), max_diff(t_maxs[:n_sub, 0][h], n_maxs[h]))
    assert diff < 1e-5, diff
    t_ours = bench(ours, reps)
    t_naive = bench(naive, naive_reps) * n_rays / n_sub
    return _row("ray_aabb_intersect", f"{n_rays} rays, 1 box (naive: {n_sub} timed, scaled)", t_ours, t_naive,
                n_rays, "Mrays/s",
                f"hits equal, max|dt|={diff:.1e}",
                {"max_abs_diff": diff, "n_rays": n_rays, "hit_fraction": float(hits.float().mean()),
                 "naive_timed_rays": n_sub, "naive_time_scaled_per_ray": True},
                naive=f"Python loop over rays (slab test with torch ops per ray); timed on {n_sub} rays and "
                      f"scaled per ray to {n_rays}")


def bench_traverse(size: dict, reps: int, naive_reps: int, gen: torch.Generator) -> dict:
    n_rays, res = size["grid_rays"], size["grid_res"]
    rays_o, rays_d = camera_rays(n_rays, gen)
    radius = cell_centres(res).norm(dim=-1)
    binaries = ((radius >= 0.6) & (radius <= 1.2))[None]  # a sphere shell, ~23% of the cells
    aabbs = torch.tensor([BOX])
    near, far = torch.full((n_rays,), NEAR), torch.full((n_rays,), FAR)

    def ours():
        _, samples, _ = traverse_grids(rays_o, rays_d, binaries, aabbs, near, far, STEP)
        return samples

    n_candidates = math.ceil((FAR - NEAR) / STEP - 0.5)  # steps k with midpoint NEAR + (k + 0.5) STEP < FAR
    lo, hi = torch.tensor(BOX[:3]), torch.tensor(BOX[3:])
    flat = binaries.reshape(-1)

    def naive():
        k = torch.arange(n_candidates, dtype=torch.float32)
        t0 = NEAR + k * STEP  # (K,) the same steps for every ray
        mids = t0 + 0.5 * STEP
        x = rays_o[:, None, :] + rays_d[:, None, :] * mids[None, :, None]  # (R, K, 3)
        idx = torch.floor((x - lo) / (hi - lo) * res).long()
        inside = ((idx >= 0) & (idx < res)).all(dim=-1)
        linear = ((idx[..., 0] * res + idx[..., 1]) * res + idx[..., 2]).clamp(0, res ** 3 - 1)
        keep = inside & flat[linear]
        ray_ids, step_ids = torch.nonzero(keep, as_tuple=True)
        return ray_ids, t0[step_ids]

    samples = ours()
    ray_ids, t0_naive = naive()
    t0_ours = samples.vals - 0.5 * STEP
    # Compare the kept (ray, step index) sets, and the step starts where they agree.
    key_ours = samples.ray_indices * (n_candidates + 1) + torch.round((t0_ours - NEAR) / STEP).long()
    key_naive = ray_ids * (n_candidates + 1) + torch.round((t0_naive - NEAR) / STEP).long()
    common = torch.isin(key_ours, key_naive)
    only_ours = int((~common).sum())
    only_naive = int((~torch.isin(key_naive, key_ours)).sum())
    n_kept = int(key_ours.numel())
    order_naive = torch.argsort(key_naive)
    pos = torch.searchsorted(key_naive[order_naive], key_ours[common])
    t_diff = max_diff(t0_ours[common], t0_naive[order_naive][pos])
    # Boundary cases (a midpoint within a rounding error of a cell face or the box) may flip one sample: allow
    # one in 10^5, and say how many differ.
    assert only_ours + only_naive <= max(1, n_kept // 100_000), (only_ours, only_naive, n_kept)
    assert t_diff < 1e-5, t_diff
    t_in, t_out, hit = ray_aabb_intersect(rays_o, rays_d, aabbs, NEAR, FAR)
    marched = float(torch.where(hit[:, 0], (t_out - t_in)[:, 0], 0.0).sum() / STEP / n_rays)
    agreement = (f"same {n_kept:,} samples, max|dt|={t_diff:.1e}" if only_ours + only_naive == 0 else
                 f"{only_ours}+{only_naive} of {n_kept:,} differ, max|dt|={t_diff:.1e}")
    return _row("traverse_grids", f"{n_rays} rays, {res}^3 shell grid", bench(ours, reps), bench(naive, naive_reps),
                n_rays, "Mrays/s", agreement,
                {"n_rays": n_rays, "grid_res": res, "occupied_fraction": float(binaries.float().mean()),
                 "step_size": STEP, "near": NEAR, "far": FAR, "samples_kept": n_kept,
                 "samples_kept_per_ray": n_kept / n_rays, "candidates_per_ray_naive": n_candidates,
                 "steps_in_box_per_ray_ours": marched, "only_in_ours": only_ours, "only_in_naive": only_naive,
                 "max_abs_t_diff": t_diff},
                naive="uniform steps over [near, far] for every ray, masked by the occupancy of each midpoint")


def bench_occgrid(size: dict, reps: int, naive_reps: int, gen: torch.Generator) -> list[dict]:
    n_rays, res = size["grid_rays"], size["grid_res"]
    rays_o, rays_d = camera_rays(n_rays, gen)
    estimator = OccGridEstimator(BOX, resolution=res)
    half_diag = math.sqrt(3) / 2 * (BOX[3] - BOX[0]) / res
    estimator.binaries.copy_((cell_centres(res).norm(dim=-1) <= 1.0 + half_diag)[None])  # an opaque unit sphere
    density = 200.0

    def sigma_fn(t_starts, t_ends, ray_indices):
        x = rays_o[ray_indices] + rays_d[ray_indices] * (0.5 * (t_starts + t_ends))[:, None]
        return torch.where(x.norm(dim=-1) < 1.0, density, 0.0)

    def sample(early_stop: bool):
        return estimator.sampling(rays_o, rays_d, sigma_fn=sigma_fn if early_stop else None, near_plane=NEAR,
                                  far_plane=FAR, render_step_size=STEP)

    def render(ray_indices, t_starts, t_ends):
        sigmas = sigma_fn(t_starts, t_ends, ray_indices)
        weights = render_weight_from_density(t_starts, t_ends, sigmas, ray_indices=ray_indices, n_rays=n_rays)[0]
        return accumulate_along_rays(weights, None, ray_indices, n_rays)[:, 0]

    es, full = sample(True), sample(False)
    op_es, op_full = render(*es), render(*full)
    # Early stopping drops only samples behind transmittance < 1e-4: opacities agree to that.
    diff = max_diff(op_es, op_full)
    assert diff <= 1.1e-4, diff
    assert torch.isin(es[0] * 10**6 + torch.round(es[1] / STEP).long(),
                      full[0] * 10**6 + torch.round(full[1] / STEP).long()).all(), "early-stopped samples not a subset"
    per_ray_es, per_ray_full = es[0].numel() / n_rays, full[0].numel() / n_rays
    extra = {"n_rays": n_rays, "grid_res": res, "sphere_density": density, "early_stop_eps": 1e-4,
             "samples_per_ray_early_stop": per_ray_es, "samples_per_ray_no_early_stop": per_ray_full,
             "max_abs_opacity_diff": diff}
    size_txt = f"{n_rays} rays, {res}^3 grid"
    agreement = f"{per_ray_es:.1f} vs {per_ray_full:.1f} samples/ray, max|dopacity|={diff:.1e}"
    return [
        _row("OccGridEstimator.sampling", size_txt, bench(lambda: sample(True), reps),
             bench(lambda: sample(False), naive_reps), n_rays, "Mrays/s", agreement, extra,
             naive="the same sampling without sigma_fn (no early stopping); nerfkit's time includes sigma_fn"),
        _row("  + render the samples", size_txt, bench(lambda: render(*sample(True)), reps),
             bench(lambda: render(*sample(False)), naive_reps), n_rays, "Mrays/s", "(same)", extra,
             naive="sampling without early stopping, then evaluating and rendering every sample"),
    ]


def bench_importance(size: dict, reps: int, naive_reps: int, gen: torch.Generator) -> dict:
    n_rays, n_in, n_out = size["pdf_rays"], 64, 128
    edges = torch.linspace(NEAR, FAR, n_in + 1).expand(n_rays, -1).contiguous()
    centre = NEAR + (FAR - NEAR) * torch.rand(n_rays, 1, generator=gen)
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    weights = torch.exp(-((mids - centre) / 0.2).square()) + 0.01 * torch.rand(n_rays, n_in, generator=gen)
    cdfs = torch.cat([torch.zeros(n_rays, 1), torch.cumsum(weights, -1)], -1)
    cdfs = cdfs / cdfs[:, -1:]
    intervals = RayIntervals(vals=edges)

    def ours():
        return importance_sampling(intervals, cdfs, n_out)

    def naive():
        return sample_pdf(edges, weights, n_out)

    n = n_rays * n_out
    return _row("importance_sampling (batched)", f"{n_rays} rays, {n_in} -> {n_out}", bench(ours, reps),
                bench(naive, reps), n, "Msamples/s", "not compared (placement rules differ)",
                {"n_rays": n_rays, "n_in": n_in, "n_out": n_out},
                naive="nerfkit.sampling.sample_pdf (the vanilla NeRF path); timing only")


def _row(name, size_txt, t_ours, t_naive, items, unit, agreement, extra, naive) -> dict:
    scale = 1e-6  # items per second -> millions per second
    return {"primitive": name, "size": size_txt, "nerfkit_ms": t_ours * 1e3, "naive_ms": t_naive * 1e3,
            "speedup": t_naive / t_ours, "throughput_unit": unit, "nerfkit_throughput": items / t_ours * scale,
            "naive_throughput": items / t_naive * scale, "agreement": agreement, "naive": naive, **extra}


# ------------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every size ~8x smaller (smoke runs)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls of nerfkit's version (median)")
    parser.add_argument("--naive-repeats", type=int, default=3, help="timed calls of the naive Python loops")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON file (default results/primitives_cpu.json, or primitives_cpu_quick.json)")
    args = parser.parse_args()
    output = args.output or RESULTS / ("primitives_cpu_quick.json" if args.quick else "primitives_cpu.json")

    size = {"rays": 8192, "dist_rays": 2048, "aabb_rays": 65536, "aabb_subset": 2048, "grid_rays": 4096,
            "grid_res": 128, "pdf_rays": 4096}
    if args.quick:
        size = {"rays": 1024, "dist_rays": 256, "aabb_rays": 8192, "aabb_subset": 256, "grid_rays": 512,
                "grid_res": 64, "pdf_rays": 512}

    rows: list[dict] = []
    for fn in (bench_weights, bench_exclusive_prod, bench_distortion, bench_aabb, bench_traverse, bench_occgrid,
               bench_importance):
        gen = torch.Generator().manual_seed(0)
        torch.manual_seed(0)
        out = fn(size, args.repeats, args.naive_repeats, gen)
        rows.extend(out if isinstance(out, list) else [out])
        last = rows[-1]
        print(f"  done: {last['primitive'].strip()} ({last['nerfkit_ms']:.1f} ms vs {last['naive_ms']:.1f} ms)",
              file=sys.stderr)

    record = {
        "benchmark": "nerfkit primitives vs naive references, CPU" + (" (--quick sizes)" if args.quick else ""),
        "quick": args.quick, "sizes": size, "repeats": args.repeats, "naive_repeats": args.naive_repeats,
        "timing": "median seconds per call over the repeats after one warm-up call (time.perf_counter)",
        "kernel_mode": kernel_mode(), "rows": rows, "machine": machine_info(),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(record, indent=2))

    header = ["primitive", "size", "nerfkit ms", "naive ms", "speed-up", "nerfkit throughput", "agreement"]
    table = [[r["primitive"], r["size"], f"{r['nerfkit_ms']:.2f}", f"{r['naive_ms']:.2f}", f"{r['speedup']:.1f}x",
              f"{r['nerfkit_throughput']:.3g} {r['throughput_unit']}", r["agreement"]] for r in rows]
    widths = [max(len(line[i]) for line in [header] + table) for i in range(len(header))]
    for line in [header, ["-" * w for w in widths]] + table:
        print(" | ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
    print("\nnaive references:")
    for r in rows:
        print(f"  {r['primitive'].strip()}: {r['naive']}")
    tg = next(r for r in rows if r["primitive"] == "traverse_grids")
    oc = next(r for r in rows if r["primitive"] == "OccGridEstimator.sampling")
    print(f"\ntraverse_grids: {tg['samples_kept_per_ray']:.1f} samples kept per ray; candidates per ray: "
          f"{tg['candidates_per_ray_naive']} (naive, all of [near, far]) vs {tg['steps_in_box_per_ray_ours']:.1f} "
          f"(nerfkit, the part inside the box); grid {tg['occupied_fraction']:.0%} occupied")
    print(f"OccGridEstimator.sampling: {oc['samples_per_ray_early_stop']:.1f} samples per ray with early stopping, "
          f"{oc['samples_per_ray_no_early_stop']:.1f} without")
    print(f"machine: {record['machine']['cpu']}, {record['machine']['torch_threads']} threads; "
          f"repeats {args.repeats} (naive {args.naive_repeats}), median per call")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
