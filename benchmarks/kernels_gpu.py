"""Fused Triton kernels against their torch references on the GPU, side by side in one run.

For each kernel-backed operation (packed scans, packed weights from density forward + backward, grid marching,
hash encoding forward + backward), times the torch reference (``NERFKIT_KERNELS=torch``) and the Triton kernel
(``NERFKIT_KERNELS=triton``) on the same inputs, checks that they agree, and writes
benchmarks/results/kernels_{device}.json with the GPU's name: rewritten (atomically) after each operation, with
``"complete": false`` until the last, so a run cut off by a time limit keeps the operations already timed. An
operation that fails is recorded under ``failed`` and the others still run.

    python benchmarks/kernels_gpu.py                      # on a CUDA machine
    TRITON_INTERPRET=1 python benchmarks/kernels_gpu.py --device cpu --quick   # a smoke run of the script itself

Not yet run on a GPU: no GPU machine had been lent when it was written.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info, median_seconds, write_json  # noqa: E402

import nerfkit  # noqa: E402
from nerfkit.encoders import HashGridEncoder  # noqa: E402


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, object]:
    """Median milliseconds of ``fn`` over ``repeats`` calls after one warm-up (which also compiles kernels), and
    the warm-up's result."""
    out = fn()
    return median_seconds(fn, repeats, warmup=False, device=device) * 1e3, out


def with_backend(backend: str, fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        previous = os.environ.get("NERFKIT_KERNELS")
        os.environ["NERFKIT_KERNELS"] = backend
        try:
            return fn()
        finally:
            if previous is None:
                del os.environ["NERFKIT_KERNELS"]
            else:
                os.environ["NERFKIT_KERNELS"] = previous
    return run


def packed_inputs(n_rays: int, max_count: int, device: torch.device, g: torch.Generator):
    counts = torch.randint(0, max_count + 1, (n_rays,), generator=g)
    ray_indices = torch.repeat_interleave(torch.arange(n_rays), counts).to(device)
    n = int(counts.sum())
    t_starts = torch.rand(n, generator=g).to(device) * 4
    t_ends = t_starts + torch.rand(n, generator=g).to(device) * 0.05
    sigmas = (torch.rand(n, generator=g) * 5).to(device)
    return nerfkit.pack_info(ray_indices, n_rays), ray_indices, t_starts, t_ends, sigmas


def max_diff(a, b) -> float:
    if isinstance(a, (tuple, list)):
        return max(max_diff(x, y) for x, y in zip(a, b))
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


OPERATIONS = ["exclusive_sum (packed)", "exclusive_prod (packed)", "render_weight_from_density fwd+bwd",
              "traverse_grids", "HashGridEncoder fwd+bwd"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    scale = 64 if args.quick else 1
    repeats = 2 if args.quick else args.repeats
    g = torch.Generator().manual_seed(0)
    rows = []
    failed = []
    machine = machine_info()
    name = f"kernels_{device.type}{'_quick' if args.quick else ''}.json"
    out = args.output or Path(__file__).parent / "results" / name

    def record(complete: bool) -> dict:
        done = [r["operation"] for r in rows] + [f["operation"] for f in failed]
        pending = [op for op in OPERATIONS if op not in done]
        status = (f"complete, {len(failed)} failed" if failed else "complete") if complete else (
            f"partial: {', '.join(pending)} not finished (still running, or cut off)" if pending else "partial")
        return {"benchmark": "Triton kernels vs torch references", "device": str(device), "quick": args.quick,
                "complete": complete, "status": status, "operations_planned": OPERATIONS,
                "operations_completed": [r["operation"] for r in rows], "failed": failed, "rows": rows,
                "machine": machine}

    def compare(name: str, size: str, fn: Callable[[], object], items: int, unit: str) -> None:
        torch_ms = None
        try:
            torch_ms, ref = timed(with_backend("torch", fn), device, repeats)
            triton_ms, out_ = timed(with_backend("triton", fn), device, repeats)
            diff = max_diff(ref, out_)
        except Exception as err:  # noqa: BLE001 -- recorded; the other operations still run
            traceback.print_exc()
            failed.append({"operation": name, "size": size, "torch_ms": torch_ms,
                           "error": f"{type(err).__name__}: {err}"[:2000]})
            print(f"  {name}: failed ({type(err).__name__})", flush=True)
        else:
            rows.append({"operation": name, "size": size, "torch_ms": torch_ms, "triton_ms": triton_ms,
                         "speedup": torch_ms / max(triton_ms, 1e-9), "max_abs_diff": diff,
                         f"triton_{unit}_per_s": items / (triton_ms / 1e3)})
            print(f"  {name}: torch {torch_ms:.2f} ms, triton {triton_ms:.2f} ms, max|diff| {diff:.1e}", flush=True)
        write_json(record(False), out)

    write_json(record(False), out)

    # 1. Packed scans and weights (forward + backward).
    info, ray_indices, t_starts, t_ends, sigmas = packed_inputs(65536 // scale, 128, device, g)
    n = t_starts.shape[0]
    compare("exclusive_sum (packed)", f"{n:,} samples", lambda: nerfkit.exclusive_sum(sigmas, info), n, "samples")
    compare("exclusive_prod (packed)", f"{n:,} samples", lambda: nerfkit.exclusive_prod(sigmas / 5, info), n,
            "samples")

    def weights_fwd_bwd():
        s = sigmas.detach().requires_grad_(True)
        w, _, _ = nerfkit.render_weight_from_density(t_starts, t_ends, s, packed_info=info)
        (w * t_starts).sum().backward()
        return w.detach(), s.grad

    compare("render_weight_from_density fwd+bwd", f"{n:,} samples", weights_fwd_bwd, n, "samples")

    # 2. Grid marching: a 128^3 sphere-shell grid, rays from a ring of cameras.
    res = 128 // (4 if args.quick else 1)
    coords = (torch.stack(torch.meshgrid(*[torch.arange(res)] * 3, indexing="ij"), -1).float() + 0.5) / res * 3 - 1.5
    radius = coords.norm(dim=-1)
    binaries = ((radius > 0.6) & (radius < 1.2))[None].to(device)
    aabbs = torch.tensor([[-1.5, -1.5, -1.5, 1.5, 1.5, 1.5]], device=device)
    n_rays = 16384 // scale
    angles = torch.rand(n_rays, generator=g) * 2 * math.pi
    rays_o = torch.stack([4 * torch.cos(angles), 4 * torch.sin(angles), torch.randn(n_rays, generator=g) * 0.5], -1)
    target = torch.randn(n_rays, 3, generator=g) * 0.5
    rays_d = torch.nn.functional.normalize(target - rays_o, dim=-1)
    rays_o, rays_d = rays_o.to(device), rays_d.to(device)
    step = math.sqrt(3) * 3 / 1024

    def march():
        _, samples, _ = nerfkit.traverse_grids(rays_o, rays_d, binaries, aabbs, step_size=step)
        return samples.vals

    compare("traverse_grids", f"{n_rays:,} rays, {res}^3 grid", march, n_rays, "rays")

    # 3. Hash encoding forward + backward (Instant-NGP's default sizes).
    enc = HashGridEncoder(3, 16, 2, 19 if not args.quick else 14, 16, 2048).to(device)
    x = torch.rand(2 ** 18 // scale, 3, generator=g).to(device)

    def encode():
        enc.zero_grad()
        y = enc(x)
        y.square().sum().backward()
        return y.detach(), enc.embeddings.grad

    compare("HashGridEncoder fwd+bwd", f"{x.shape[0]:,} points, 16 levels", encode, x.shape[0], "points")

    write_json(record(True), out)
    print(f"{'operation':>38} | {'size':>28} | {'torch ms':>9} | {'triton ms':>9} | {'speed-up':>8} | max|diff|")
    for r in rows:
        print(f"{r['operation']:>38} | {r['size']:>28} | {r['torch_ms']:>9.2f} | {r['triton_ms']:>9.2f} | "
              f"{r['speedup']:>7.1f}x | {r['max_abs_diff']:.1e}")
    for f in failed:
        print(f"{f['operation']:>38} | {f['size']:>28} | failed: {f['error'].splitlines()[0] if f['error'] else ''}")
    print(f"machine: {machine.get('gpu', machine['cpu'])}; wrote {out}")


if __name__ == "__main__":
    main()
