"""nerfkit's hot primitives against the naive code a user would otherwise write, side by side, on CPU.

For every primitive both versions run in the same process on the same inputs (fixed seeds); their results are
checked against each other (the largest difference is printed) and each is timed as the median of several calls
after one warm-up call (``time.perf_counter``, torch's default thread count). Printed as a table and written,
with the machine they ran on, to benchmarks/results/primitives_cpu.json (``--quick``: every size ~8x smaller, for
smoke runs, written to primitives_cpu_quick.json).

 1. packed render_weight_from_density  vs  a Python loop over rays with torch.cumsum per ray
 2. packed render_weight_from_alpha    vs  a Python loop over rays with torch.cumprod of 1 - alpha per ray
 3. packed inclusive_sum, exclusive_sum  vs  a Python loop over rays with torch.cumsum per ray (two rows)
 4. packed exclusive_prod              vs  a Python loop over rays with torch.cumprod per ray
 5. packed inclusive_prod              vs  a Python loop over rays with torch.cumprod per ray; exclusive_prod
                                           also on image-like ray lengths (many short rays, a few long), with
                                           its time in one padded block (as before 2026-12-01) recorded beside
 6. accumulate_along_rays (packed weights x rgb)  vs  a Python loop over rays summing each ray's slice
 7. rendering (packed, cheap analytic rgb_sigma_fn)  vs  the field on all samples, then a Python loop over rays:
                                           weights via torch.cumsum per ray, colour / opacity / depth sums
 8. packed distortion (O(N))           vs  the quadratic definition with an (n, n) matrix per ray (loop), forward
                                           and forward+backward (autograd of the quadratic form); also vs the
                                           quadratic form batched over all rays at once (R, n, n)
 9. ray_aabb_intersect                 vs  a Python loop over rays (timed on a subset, scaled per ray)
10. traverse_grids (sphere-shell grid) vs  uniform steps over [near, far] masked by the occupancy of each midpoint
11. OccGridEstimator.sampling with early stopping (sigma_fn, opaque sphere)  vs  the same without early stopping
12. searchsorted (packed RayIntervals keys, packed RaySamples queries)  vs  a Python loop over rays with
                                           torch.searchsorted per ray (ids must be equal)
13. importance_sampling (batched)      vs  sample_pdf (timing; different padding of the pdf); its samples and
                                           edges are checked against a float64 brute-force inverse CDF per ray
                                           (torch.searchsorted + linear interpolation) at the same CDF levels
    searchsorted and importance_sampling of packed input with image-like ray lengths  vs  the same functions
                                           with one padded (n_rays, longest ray) block (as before 2026-12-01)
14. PropNetEstimator.sampling (two analytic density-bump proposal functions, deterministic)  vs  the same
                                           scheme written batched by hand: per level the intervals, transmittance
                                           via torch.cumsum/exp, and a torch.searchsorted inverse CDF

    python benchmarks/primitives_cpu.py [--quick] [--repeats 10] [--naive-repeats 3] [--output PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, median_seconds  # noqa: E402

from nerfkit import (OccGridEstimator, PropNetEstimator, RayIntervals, RaySamples,  # noqa: E402
                     accumulate_along_rays, distortion, exclusive_prod, exclusive_sum, importance_sampling,
                     inclusive_prod, inclusive_sum, look_at, ray_aabb_intersect, rays_from_pixels,
                     render_weight_from_alpha, render_weight_from_density, rendering, sample_pdf, searchsorted,
                     traverse_grids)
from nerfkit.kernels import kernel_mode  # noqa: E402
from nerfkit.render.pack import packed_to_padded  # noqa: E402

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


def bench_weight_from_alpha(size: dict, reps: int, naive_reps: int, gen: torch.Generator) -> dict:
    t_starts, t_ends, packed_info, _ = packed_intervals(size["rays"], 128, gen)
    sigmas = 10.0 * torch.rand(t_starts.shape, generator=gen)
    alphas = 1.0 - torch.exp(-sigmas * (t_ends - t_starts))

    def ours():
        return render_weight_from_alpha(alphas, packed_info=packed_info)

    def naive():
        weights, trans = torch.zeros_like(alphas), torch.ones_like(alphas)
        for start, count in packed_info.tolist():
            if count == 0:
                continue
            a = alphas[start:start + count]
            t = torch.cumprod(1.0 - a, 0)
            trans[start + 1:start + count] = t[:-1]
            weights[start:start + count] = trans[start:start + count] * a
        return weights, trans

    (wa, ta), (wb, tb) = ours(), naive()
    torch.testing.assert_close(wa, wb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ta, tb, rtol=1e-5, atol=1e-6)
    dw, dt = max_diff(wa, wb), max_diff(ta, tb)
    n = alphas.numel()
    return _row("render_weight_from_alpha (packed)", f"{size['rays']} rays x 0..128, {n:,} samples",
                bench(ours, reps), bench(naive, naive_reps), n, "Msamples/s", f"max|dw|={dw:.1e}, max|dT|={dt:.1e}",
                {"max_abs_diff": dw, "max_abs_trans_diff": dt, "n_rays": size["rays"], "n_samples": n},
                naive="Python loop over rays, torch.cumprod of 1 - alpha per ray")


def bench_sums(size: dict, reps: int, naive_reps: int, gen: torch.Generator) -> list[dict]:
    # The inputs of the weights row: sigma * dt of the same packed intervals.
    t_starts, t_ends, packed_info, _ = packed_intervals(size["rays"], 128, gen)
    sigmas = 10.0 * torch.rand(t_starts.shape, generator=gen)
    x = sigmas * (t_ends - t_starts)
    spans = packed_info.tolist()
    n = x.numel()

    def naive(exclusive: bool):
        out = torch.zeros_like(x)
        for start, count in spans:
            if count == 0:
                continue
            c = torch.cumsum(x[start:start + count], 0)
            if exclusive:
                out[start + 1:start + count] = c[:-1]
            else:
                out[start:start + count] = c
        return out

    rows = []
    for name, fn, exclusive in (("inclusive_sum (packed)", inclusive_sum, False),
                                ("exclusive_sum (packed)", exclusive_sum, True)):
        a, b = fn(x, packed_info), naive(exclusive)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        d = max_diff(a, b)
        rows.append(_row(name, f"{size['rays']} rays x 0..128, {n:,} samples",
                         bench(lambda: fn(x, packed_info), reps), bench(lambda: naive(exclusive), naive_reps), n,
                         "Msamples/s", f"max|d|={d:.1e}",
                         {"max_abs_diff": d, "max_abs_value": float(a.abs().max()), "n_rays": size["rays"],
                          "n_samples": n},
                         naive="Python loop over rays, torch.cumsum per ray" + (" (shifted by one)" if exclusive
                                                                                else "")))
    return rows


def bench_prods(size: dict, reps: int, naive_reps: int, gen: torch.Generator) -> list[dict]:
    """exclusive_prod and inclusive_prod on the common layout; exclusive_prod also on an image-like one (many short
    rays, a few long), where one padded (n_rays, longest ray) block would hold ~100x the samples: there its time
    with that one block (what it did before 2026-12-01) is recorded too."""
    t_starts, _, packed_info, _ = packed_intervals(size["rays"], 128, gen)
    short = torch.randint(0, 9, (8 * size["rays"],), generator=gen)
    image_counts = torch.cat([short, torch.full((size["rays"] // 128,), 1024)])[torch.randperm(
        8 * size["rays"] + size["rays"] // 128, generator=gen)]
    image_info = torch.stack([torch.cumsum(image_counts, 0) - image_counts, image_counts], -1)
    layouts = {"common": (packed_info, f"{size['rays']} rays x 0..128"),
               "image": (image_info, f"{8 * size['rays']} rays x 0..8 + {size['rays'] // 128} x 1024")}

    def naive(x, spans, exclusive: bool):
        out = torch.ones_like(x)
        for start, count in spans:
            if exclusive and count > 1:
                out[start + 1:start + count] = torch.cumprod(x[start:start + count - 1], 0)
            elif not exclusive and count > 0:
                out[start:start + count] = torch.cumprod(x[start:start + count], 0)
        return out

    def one_block(x, info):  # exclusive, in one padded block
        rows, mask = packed_to_padded(x, info, fill=1.0)
        return torch.cumprod(torch.cat([torch.ones_like(rows[:, :1]), rows[:, :-1]], 1), 1)[mask]

    rows = []
    for layout, name, fn, exclusive in (("common", "exclusive_prod (packed)", exclusive_prod, True),
                                        ("common", "inclusive_prod (packed)", inclusive_prod, False),
                                        ("image", "exclusive_prod (packed, image-like)", exclusive_prod, True)):
        info, text = layouts[layout]
        n = int(info[:, 1].sum())
        x = 0.9 + 0.1 * torch.rand(n, generator=gen)
        spans = info.tolist()
        a, b = fn(x, info), naive(x, spans, exclusive)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        extra = {"max_abs_diff": max_diff(a, b), "n_rays": info.shape[0], "n_samples": n}
        if layout == "image":
            torch.testing.assert_close(one_block(x, info), a, rtol=0, atol=0)
            extra.update(one_block_ms=bench(lambda: one_block(x, info), max(1, reps // 3)) * 1e3,
                         one_block_padded_over_samples=info.shape[0] * int(info[:, 1].max()) / n)
        rows.append(_row(name, f"{text}, {n:,} samples",
                         bench(lambda: fn(x, info), reps), bench(lambda: naive(x, spans, exclusive), naive_reps), n,
                         "Msamples/s", f"max|d|={max_diff(a, b):.1e}" + (
                             f"; one padded block: {extra['one_block_ms']:.1f} ms" if layout == "image" else ""),
                         extra, naive="Python loop over rays, torch.cumprod per ray" + (" (shifted by one)"
                                                                                       if exclusive else "")))
    return rows


def bench_accumulate(size: dict, reps: int, naive_reps: int, gen: torch.Generator) -> dict:
    n_rays = size["rays"]
    t_starts, _, packed_info, ray_ids = packed_intervals(n_rays, 128, gen)
    n = t_starts.numel()
    weights = torch.rand(n, generator=gen) / 64
    rgbs = torch.rand(n, 3, generator=gen)

    def ours():
        return accumulate_along_rays(weights, rgbs, ray_ids, n_rays)

    def naive():
        out = torch.zeros(n_rays, 3)
        for r, (start, count) in enumerate(packed_info.tolist()):
            if count:
                out[r] = (weights[start:start + count, None] * rgbs[start:start + count]).sum(0)
        return out

    a, b = ours(), naive()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    return _row("accumulate_along_rays (packed)", f"{n_rays} rays x 0..128, {n:,} samples x 3",
                bench(ours, reps), bench(naive, naive_reps), n, "Msamples/s", f"max|d|={max_diff(a, b):.1e}",
                {"max_abs_diff": max_diff(a, b), "n_rays": n_rays, "n_samples": n, "channels": 3},
                naive="Python loop over rays, sum of weight x rgb over each ray's slice")


def bench_rendering(size: dict, reps: int, naive_reps: int, gen: torch.Generator) -> dict:
    n_rays = size["rays"]
    t_starts, t_ends, packed_info, ray_ids = packed_intervals(n_rays, 128, gen)
    n = t_starts.numel()
    centre = NEAR + 0.2 + 0.8 * torch.rand(n_rays, generator=gen)  # a density bump per ray, inside its samples
    colour = torch.randn(n_rays, 3, generator=gen)

    def rgb_sigma_fn(s, e, rid):  # cheap analytic field: a Gaussian density bump, colour per ray
        mid = 0.5 * (s + e)
        sig = 40.0 * torch.exp(-((mid - centre[rid]) / 0.15).square())
        return torch.sigmoid(colour[rid] + mid[:, None]), sig

    def ours():
        return rendering(t_starts, t_ends, ray_ids, n_rays, rgb_sigma_fn=rgb_sigma_fn)[:3]

    eps = torch.finfo(torch.float32).eps

    def naive():
        rgb, sig = rgb_sigma_fn(t_starts, t_ends, ray_ids)
        colors, opacities, depths = torch.zeros(n_rays, 3), torch.zeros(n_rays, 1), torch.zeros(n_rays, 1)
        for r, (start, count) in enumerate(packed_info.tolist()):
            if count == 0:
                continue
            s, e = t_starts[start:start + count], t_ends[start:start + count]
            sd = sig[start:start + count] * (e - s)
            w = torch.exp(-(torch.cumsum(sd, 0) - sd)) * (1.0 - torch.exp(-sd))
            colors[r] = (w[:, None] * rgb[start:start + count]).sum(0)
            opacities[r] = w.sum()
            depths[r] = (w * 0.5 * (s + e)).sum() / opacities[r].clamp_min(eps)
        return colors, opacities, depths

    a, b = ours(), naive()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    dc, do, dd = (max_diff(x, y) for x, y in zip(a, b))
    return _row("rendering (packed, analytic field)", f"{n_rays} rays x 0..128, {n:,} samples",
                bench(ours, reps), bench(naive, naive_reps), n, "Msamples/s",
                f"max|drgb|={dc:.1e}, |dacc|={do:.1e}, |ddepth|={dd:.1e}",
                {"max_abs_color_diff": dc, "max_abs_opacity_diff": do, "max_abs_depth_diff": dd,
                 "mean_opacity": float(a[1].mean()), "n_rays": n_rays, "n_samples": n},
                naive="the same field on all samples, then a Python loop over rays: weights via torch.cumsum per "
                      "ray, colour / opacity / expected-depth sums")


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


def bench_searchsorted(size: dict, reps: int, naive_reps: int, gen: torch.Generator) -> dict:
    """Packed keys (0..129 per ray, some rays with 0 or 1 key) and packed queries (0..128 per ray, a quarter of them
    exactly equal to one of the ray's keys, some outside the keys' range)."""
    n_rays = size["rays"]
    k_counts = torch.randint(0, 130, (n_rays,), generator=gen)
    q_counts = torch.randint(0, 129, (n_rays,), generator=gen)
    k_starts, q_starts = torch.cumsum(k_counts, 0) - k_counts, torch.cumsum(q_counts, 0) - q_counts
    k_rid = torch.repeat_interleave(torch.arange(n_rays), k_counts)
    q_rid = torch.repeat_interleave(torch.arange(n_rays), q_counts)
    k_vals = NEAR + (FAR - NEAR) * torch.rand(k_rid.shape, generator=gen)
    q_vals = NEAR - 0.5 + (FAR - NEAR + 1.0) * torch.rand(q_rid.shape, generator=gen)
    # A quarter of the queries (on rays with keys) take the exact value of a random key of their ray: ties.
    has_keys = k_counts[q_rid] > 0
    tie = has_keys & (torch.rand(q_rid.shape, generator=gen) < 0.25)
    pick = k_starts[q_rid] + (torch.rand(q_rid.shape, generator=gen) * k_counts[q_rid]).long().clamp_max(
        (k_counts[q_rid] - 1).clamp_min(0))
    q_vals = torch.where(tie, k_vals[pick.clamp_max(max(k_vals.numel() - 1, 0))], q_vals)

    def sort_per_ray(vals, rid):  # sorted by value, then (stable) by ray: each ray's slice is sorted
        o = torch.argsort(vals)
        return vals[o][torch.argsort(rid[o], stable=True)]

    k_vals, q_vals = sort_per_ray(k_vals, k_rid), sort_per_ray(q_vals, q_rid)
    keys = RayIntervals(vals=k_vals, packed_info=torch.stack([k_starts, k_counts], -1), ray_indices=k_rid)
    queries = RaySamples(vals=q_vals, packed_info=torch.stack([q_starts, q_counts], -1), ray_indices=q_rid)
    spans = list(zip(k_starts.tolist(), k_counts.tolist(), q_starts.tolist(), q_counts.tolist()))

    def ours():
        return searchsorted(keys, queries)

    def naive():
        # nerfacc semantics for packed queries: ids are absolute into the flat keys, clipped into the ray's range
        # (left = right = the ray's start when it has no keys).
        left, right = torch.zeros_like(q_rid), torch.zeros_like(q_rid)
        for ks, kc, qs, qc in spans:
            if qc == 0:
                continue
            if kc == 0:
                left[qs:qs + qc] = ks
                right[qs:qs + qc] = ks
                continue
            r = torch.searchsorted(k_vals[ks:ks + kc], q_vals[qs:qs + qc], right=True).clamp_max(kc - 1)
            left[qs:qs + qc] = ks + (r - 1).clamp_min(0)
            right[qs:qs + qc] = ks + r
        return left, right

    (la, ra), (lb, rb) = ours(), naive()
    n_left_diff, n_right_diff = int((la != lb).sum()), int((ra != rb).sum())
    assert n_left_diff == 0 and n_right_diff == 0, (n_left_diff, n_right_diff)
    n_q = q_vals.numel()
    return _row("searchsorted (packed)", f"{n_rays} rays, {k_vals.numel():,} keys, {n_q:,} queries",
                bench(ours, reps), bench(naive, naive_reps), n_q, "Mqueries/s", "ids equal",
                {"ids_left_differing": n_left_diff, "ids_right_differing": n_right_diff, "n_rays": n_rays,
                 "n_keys": k_vals.numel(), "n_queries": n_q, "tied_queries": int(tie.sum()),
                 "queries_outside_keys": int(((q_vals < NEAR) | (q_vals > FAR)).sum()),
                 "rays_without_keys": int((k_counts == 0).sum())},
                naive="Python loop over rays, torch.searchsorted(right=True) per ray, clipped into the ray's range")


def _inverse_cdf_f64(edges: torch.Tensor, cdfs: torch.Tensor, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Brute force, float64, ray by ray: samples at the CDF levels u_i = c_0 + (i + 1/2) / n (c_last - c_0) of the
    piecewise-linear CDF (torch.searchsorted + linear interpolation), and nerfacc's edges (midpoints of the samples,
    half a spacing beyond the outer ones, clipped to the ray)."""
    samples, out_edges = [], []
    for t, c in zip(edges.double(), cdfs.double()):
        u = c[0] + (torch.arange(n_out, dtype=torch.float64) + 0.5) / n_out * (c[-1] - c[0])
        i = torch.searchsorted(c, u, right=True).clamp(1, c.numel() - 1)
        frac = (u - c[i - 1]) / (c[i] - c[i - 1])
        s = (t[i - 1] + frac * (t[i] - t[i - 1])).clamp(t[0], t[-1])
        first = torch.clamp(s[:1] - 0.5 * (s[1:2] - s[:1]), min=t[0])
        last = torch.clamp(s[-1:] + 0.5 * (s[-1:] - s[-2:-1]), max=t[-1])
        samples.append(s)
        out_edges.append(torch.cat([first, 0.5 * (s[1:] + s[:-1]), last]))
    return torch.stack(samples), torch.stack(out_edges)


def bench_image_like_pdf(size: dict, reps: int, naive_reps: int, gen: torch.Generator) -> list[dict]:
    """searchsorted and importance_sampling of packed input with image-like ray lengths (many short rays, a few
    long): against the same functions with one padded (n_rays, longest ray) block, as they worked before
    2026-12-01 (the grouping switched off), results compared exactly."""
    from nerfkit.sampling import pdf

    n_short, n_long = 2 * size["rays"], max(size["rays"] // 512, 2)
    counts = torch.cat([torch.randint(2, 9, (n_short,), generator=gen), torch.full((n_long,), 1024)])
    counts = counts[torch.randperm(counts.shape[0], generator=gen)]
    n = int(counts.sum())
    info = torch.stack([torch.cumsum(counts, 0) - counts, counts], -1)
    ray_of = torch.repeat_interleave(torch.arange(counts.shape[0]), counts)

    def sorted_per_ray(x):
        return x[torch.argsort(ray_of.double() * 4 + x.double())]

    keys = RayIntervals(vals=sorted_per_ray(torch.rand(n, generator=gen) * 3), packed_info=info)
    cdfs = sorted_per_ray(torch.rand(n, generator=gen))
    queries = RaySamples(vals=torch.rand(n, generator=gen) * 3.2 - 0.1, packed_info=info)
    calls = {"searchsorted (packed, image-like)": lambda: searchsorted(keys, queries),
             "importance_sampling (packed, image-like)": lambda: importance_sampling(keys, cdfs, 16)}
    grouped_fns = (pdf._searchsorted_flat, pdf._length_groups)
    rows = []
    for name, call in calls.items():
        ours = call()
        pdf._searchsorted_flat, pdf._length_groups = (lambda *a: None), (lambda *a: None)
        try:
            one_block = call()
            t_block = bench(call, naive_reps)
        finally:
            pdf._searchsorted_flat, pdf._length_groups = grouped_fns
        if name.startswith("searchsorted"):
            agree = all(torch.equal(a, b) for a, b in zip(ours, one_block))
            diff = 0.0 if agree else float("nan")
        else:
            diff = max(max_diff(ours[0].vals, one_block[0].vals), max_diff(ours[1].vals, one_block[1].vals))
            agree = diff == 0.0
        assert agree, (name, diff)
        rows.append(_row(name, f"{n_short} rays x 2..8 + {n_long} x 1024 keys, {n:,} entries", bench(call, reps),
                         t_block, n, "Mentries/s", "identical to one padded block", {
                             "n_rays": counts.shape[0], "n_entries": n,
                             "one_block_padded_over_entries": counts.shape[0] * 1024 / n},
                         naive="the same function with one padded (n_rays, longest ray) block (before 2026-12-01)"))
    return rows


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

    # stratified=False is deterministic (the strata centres), so it can be checked against a float64 brute force
    # at the same CDF levels; sample_pdf differs by its padding of the pdf (1e-5 per bin), shown without it too.
    out_intervals, out_samples = ours()
    ref_samples, ref_edges = _inverse_cdf_f64(edges, cdfs, n_out)
    ds = max_diff(out_samples.vals.double(), ref_samples)
    de = max_diff(out_intervals.vals.double(), ref_edges)
    assert ds < 1e-4 and de < 1e-4, (ds, de)
    d_pdf = max_diff(sample_pdf(edges, weights, n_out, padding=0.0).double(), ref_samples)
    d_pdf_padded = max_diff(naive().double(), ref_samples)
    n = n_rays * n_out
    return _row("importance_sampling (batched)", f"{n_rays} rays, {n_in} -> {n_out}", bench(ours, reps),
                bench(naive, reps), n, "Msamples/s", f"vs float64: max|ds|={ds:.1e}, max|dedge|={de:.1e}",
                {"n_rays": n_rays, "n_in": n_in, "n_out": n_out, "max_abs_diff": ds, "max_abs_edge_diff": de,
                 "reference": "float64 brute-force inverse CDF per ray, same CDF levels (stratified=False)",
                 "sample_pdf_no_padding_max_abs_diff": d_pdf, "sample_pdf_default_padding_max_abs_diff": d_pdf_padded},
                naive="nerfkit.sampling.sample_pdf (the vanilla NeRF path; pads the pdf by 1e-5 per bin); timing "
                      "only. Agreement: importance_sampling vs a float64 brute-force inverse CDF per ray")


def bench_propnet(size: dict, reps: int, naive_reps: int, gen: torch.Generator) -> dict:
    """nerfacc's proposal sampling (uniform in t, deterministic) with two analytic proposal densities: a Gaussian
    bump per ray (the second level's narrower and denser) on a thin background density."""
    n_rays, prop_samples, num_samples = size["pdf_rays"], (256, 96), 48
    centre = NEAR + 1.0 + (FAR - NEAR - 2.0) * torch.rand(n_rays, 1, generator=gen)
    bumps = ((0.3, 30.0), (0.15, 60.0))  # (width, peak density) of each level's bump

    def make_fn(width, peak):
        def sigma_fn(t_starts, t_ends):
            mid = 0.5 * (t_starts + t_ends)
            return 0.05 + peak * torch.exp(-((mid - centre) / width).square())
        return sigma_fn

    fns = [make_fn(*b) for b in bumps]
    estimator = PropNetEstimator()

    def ours():
        return estimator.sampling(fns, list(prop_samples), num_samples, n_rays, NEAR, FAR, sampling_type="uniform")

    def inverse_cdf(s_edges, cdf, n):
        """Samples at the strata centres of a piecewise-linear CDF, and nerfacc's edges around them: midpoints,
        half a spacing beyond the outer samples, clipped to the input's first and last edge."""
        u = ((torch.arange(n, dtype=cdf.dtype) + 0.5) / n).expand(cdf.shape[0], -1).contiguous()
        i = torch.searchsorted(cdf.contiguous(), u, right=True).clamp(1, cdf.shape[1] - 1)
        c0, c1 = cdf.gather(1, i - 1), cdf.gather(1, i)
        s0, s1 = s_edges.gather(1, i - 1), s_edges.gather(1, i)
        s = s0 + (u - c0) / (c1 - c0).clamp_min(1e-10) * (s1 - s0)
        first = torch.maximum(s[:, :1] - 0.5 * (s[:, 1:2] - s[:, :1]), s_edges[:, :1])  # clipped to the ray's
        last = torch.minimum(s[:, -1:] + 0.5 * (s[:, -1:] - s[:, -2:-1]), s_edges[:, -1:])  # first / last edge
        return torch.cat([first, 0.5 * (s[:, 1:] + s[:, :-1]), last], 1)

    def naive():
        s = torch.linspace(0.0, 1.0, prop_samples[0] + 1).expand(n_rays, -1)  # level 0: uniform intervals
        for level, fn in enumerate(fns):
            t = NEAR + s * (FAR - NEAR)
            sd = fn(t[:, :-1], t[:, 1:]) * (t[:, 1:] - t[:, :-1])
            trans = torch.exp(-(torch.cumsum(sd, 1) - sd))
            cdf = torch.cat([1.0 - trans, torch.ones(n_rays, 1)], 1)  # what passes the last interval stays in it
            n_next = prop_samples[level + 1] if level + 1 < len(fns) else num_samples
            s = inverse_cdf(s, cdf, n_next)
        t = (NEAR + s * (FAR - NEAR)).clamp(NEAR, FAR)
        return t[:, :-1], t[:, 1:]

    (sa, ea), (sb, eb) = ours(), naive()
    d = max(max_diff(sa, sb), max_diff(ea, eb))
    assert d < 1e-4, d

    def frac_in_bump(s, e):  # fraction of the final intervals whose midpoint lies within 2 widths of the bump
        return float(((0.5 * (s + e) - centre).abs() <= 2 * bumps[-1][0]).float().mean())

    fa, fb = frac_in_bump(sa, ea), frac_in_bump(sb, eb)
    n = n_rays * num_samples
    return _row("PropNetEstimator.sampling", f"{n_rays} rays, {prop_samples[0]}+{prop_samples[1]} -> {num_samples}",
                bench(ours, reps), bench(naive, naive_reps), n_rays, "Mrays/s",
                f"max|dt|={d:.1e}, in bump {fa:.1%} vs {fb:.1%}",
                {"max_abs_diff": d, "n_rays": n_rays, "prop_samples": list(prop_samples), "num_samples": num_samples,
                 "n_samples_out": n, "sampling_type": "uniform", "stratified": False,
                 "bumps_width_peak": [list(b) for b in bumps], "background_density": 0.05,
                 "fraction_in_bump_nerfkit": fa, "fraction_in_bump_naive": fb},
                naive="the same scheme batched by hand: per level uniform-in-t intervals, transmittance via "
                      "torch.cumsum/exp (cdf = 1 - T, the rest in the last interval), torch.searchsorted inverse CDF "
                      "at the strata centres, edges at the samples' midpoints")


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
    wall_start = time.perf_counter()
    for fn in (bench_weights, bench_weight_from_alpha, bench_sums, bench_prods,
               bench_accumulate, bench_rendering, bench_distortion, bench_aabb, bench_traverse, bench_occgrid,
               bench_searchsorted, bench_importance, bench_image_like_pdf, bench_propnet):
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
        "kernel_mode": kernel_mode(), "wall_seconds": time.perf_counter() - wall_start, "rows": rows,
        "machine": machine_info(),
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
    print(f"benchmark wall time {record['wall_seconds']:.1f} s")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
