"""Occupancy-grid estimator (Instant-NGP's ray marching with empty-space skipping), with nerfacc 0.5's API.

The grid keeps a running (EMA) estimate of each cell's opacity over ``levels`` nested boxes (level ``l`` is the
region of interest scaled by ``2 ** l`` about its centre); cells above a threshold are "occupied". Rays are
marched in small steps and only steps in occupied cells are returned, then (optionally) pruned by early ray
termination using the field's density.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..render.volrend import render_visibility_from_alpha, render_visibility_from_density
from ..sampling.grid import occupied_steps

__all__ = ["OccGridEstimator"]


class OccGridEstimator(nn.Module):
    """Multi-level binary occupancy grid.

    Args:
        roi_aabb: ``(6,)`` region of interest ``[xmin, ymin, zmin, xmax, ymax, zmax]`` covered by level 0.
        resolution: cells per axis (an int, or one per axis).
        levels: number of nested levels; level ``l`` covers the region scaled by ``2 ** l`` about its centre
            (for unbounded scenes).
        compiled_march: off CUDA, march with the fused loops of :mod:`nerfkit.kernels.grid_compiled` (see
            :func:`nerfkit.sampling.traverse_grids`'s ``compiled``); a nerfkit addition to nerfacc's arguments.

    Buffers (saved and restored with the model's ``state_dict``): ``aabbs (levels, 6)``,
    ``occs (levels * cells,)`` EMA opacity per cell (``-1`` marks cells no camera sees),
    ``binaries (levels, rx, ry, rz)`` occupancy (all cells occupied until the first update).
    """

    def __init__(self, roi_aabb: Sequence[float] | Tensor, resolution: int | Sequence[int] = 128,
                 levels: int = 1, compiled_march: bool = False) -> None:
        super().__init__()
        self.compiled_march = compiled_march
        roi = torch.as_tensor(roi_aabb, dtype=torch.float32).flatten()
        if roi.shape != (6,) or not torch.isfinite(roi).all() or not (roi[3:] > roi[:3]).all():
            raise ValueError(f"roi_aabb must be 6 finite numbers [xmin, ymin, zmin, xmax, ymax, zmax] with "
                             f"max > min, got {roi.tolist()}")
        res = [int(resolution)] * 3 if isinstance(resolution, (int, float)) else [int(r) for r in resolution]
        if len(res) != 3 or min(res) < 1:
            raise ValueError(f"resolution must be a positive int or three of them, got {resolution}")
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels}")
        self.levels = int(levels)
        self.cells_per_lvl = res[0] * res[1] * res[2]
        centre, half = (roi[:3] + roi[3:]) / 2, (roi[3:] - roi[:3]) / 2
        scales = 2.0 ** torch.arange(levels, dtype=torch.float32)[:, None]
        aabbs = torch.cat([centre - half * scales, centre + half * scales], dim=-1)
        grid = torch.stack(torch.meshgrid(*[torch.arange(r) for r in res], indexing="ij"), dim=-1).reshape(-1, 3)
        self.register_buffer("resolution", torch.tensor(res, dtype=torch.long))
        self.register_buffer("aabbs", aabbs)
        self.register_buffer("occs", torch.zeros(levels * self.cells_per_lvl))
        self.register_buffer("binaries", torch.ones(levels, *res, dtype=torch.bool))  # all occupied until updated
        self.register_buffer("grid_coords", grid, persistent=False)
        self.register_buffer("grid_indices", torch.arange(self.cells_per_lvl), persistent=False)

    # ----------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sampling(
        self,
        # rays
        rays_o: Tensor,
        rays_d: Tensor,
        # radiance field (for early termination and alpha pruning)
        sigma_fn: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
        alpha_fn: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
        # ray bounds
        near_plane: float = 0.0,
        far_plane: float = 1e10,
        t_min: Tensor | None = None,
        t_max: Tensor | None = None,
        # marching options
        render_step_size: float = 1e-3,
        early_stop_eps: float = 1e-4,
        alpha_thre: float = 0.0,
        stratified: bool = False,
        cone_angle: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """:meth:`sampling` (a nerfkit addition to nerfacc's API), which also says which of the samples given to
        ``sigma_fn`` (or ``alpha_fn``) it kept.

        Args:
            rays_o, rays_d: ``(n_rays, 3)`` origins and directions.
            sigma_fn: ``f(t_starts (N,), t_ends (N,), ray_indices (N,)) -> sigmas (N,)``; with it (or
                ``alpha_fn``) samples behind an opaque surface (transmittance ``< early_stop_eps``) and
                samples with opacity ``< alpha_thre`` are dropped (the threshold is capped by the grid's mean
                opacity estimate, so a young grid prunes gently).
            alpha_fn: the same, returning opacities ``(N,)``.
            near_plane, far_plane: bounds on ``t`` for every ray; t_min, t_max: optional ``(n_rays,)`` per-ray
                bounds, intersected with them.
            render_step_size: the marching step; cone_angle: steps grow as ``cone_angle * t`` far away.
            stratified: shift each ray's steps by a random fraction of a step (training).
            generator: random source for ``stratified``.

        Returns:
            ``ray_indices (N,)`` int64, ``t_starts (N,)``, ``t_ends (N,)``: packed samples grouped by ray.
        """
        return self.sampling_with_indices(
            rays_o, rays_d, sigma_fn, alpha_fn, near_plane, far_plane, t_min, t_max, render_step_size,
            early_stop_eps, alpha_thre, stratified, cone_angle, generator)[:3]

    @torch.no_grad()
    def sampling_with_indices(
        self,
        # rays
        rays_o: Tensor,
        rays_d: Tensor,
        # radiance field (for early termination and alpha pruning)
        sigma_fn: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
        alpha_fn: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
        # ray bounds
        near_plane: float = 0.0,
        far_plane: float = 1e10,
        t_min: Tensor | None = None,
        t_max: Tensor | None = None,
        # marching options
        render_step_size: float = 1e-3,
        early_stop_eps: float = 1e-4,
        alpha_thre: float = 0.0,
        stratified: bool = False,
        cone_angle: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """:meth:`sampling` (a nerfkit addition to nerfacc's API; the same arguments), which also says which of
        the samples given to ``sigma_fn`` (or ``alpha_fn``) it kept.

        Returns:
            ``ray_indices (N,)`` int64, ``t_starts (N,)``, ``t_ends (N,)``: packed samples grouped by ray, and
            ``kept (N,)`` int64, where each of them was in what ``sigma_fn`` (or ``alpha_fn``) was given (``None``
            where neither was called: nothing was dropped), so that a field can reuse what it computed there.
        """
        if sigma_fn is not None and alpha_fn is not None:
            raise ValueError("give at most one of sigma_fn and alpha_fn")
        n_rays = rays_o.shape[0]
        near = torch.full((n_rays,), float(near_plane), device=rays_o.device, dtype=rays_o.dtype)
        far = torch.full((n_rays,), float(far_plane), device=rays_o.device, dtype=rays_o.dtype)
        if t_min is not None:
            near = torch.maximum(near, t_min)
        if t_max is not None:
            far = torch.minimum(far, t_max)
        if stratified:  # steps are anchored at the near plane: this shifts them by a random fraction of a step
            near = near + torch.rand(near.shape, device=near.device, dtype=near.dtype,
                                     generator=generator) * render_step_size
        ray_indices, t_starts, t_ends, packed_info = occupied_steps(
            rays_o, rays_d, self.binaries, self.aabbs, near, far, render_step_size, cone_angle,
            compiled=self.compiled_march)
        if (sigma_fn is not None or alpha_fn is not None) and ray_indices.numel() > 0:
            # Early in training every opacity is small: never prune harder than the grid's mean opacity (read
            # only where it can matter: a threshold of 0 prunes nothing either way).
            if alpha_thre > 0:
                alpha_thre = min(alpha_thre, float(self.occs.mean().item()))
            if sigma_fn is not None:
                sigmas = sigma_fn(t_starts, t_ends, ray_indices)
                _check_shape("sigma_fn", sigmas, t_starts)
                keep = render_visibility_from_density(t_starts, t_ends, sigmas, packed_info,
                                                      early_stop_eps=early_stop_eps, alpha_thre=alpha_thre)
            else:
                alphas = alpha_fn(t_starts, t_ends, ray_indices)
                _check_shape("alpha_fn", alphas, t_starts)
                keep = render_visibility_from_alpha(alphas, packed_info, early_stop_eps=early_stop_eps,
                                                    alpha_thre=alpha_thre)
            kept = torch.nonzero(keep)[:, 0]
            return (ray_indices.index_select(0, kept), t_starts.index_select(0, kept), t_ends.index_select(0, kept),
                    kept)
        return ray_indices, t_starts, t_ends, None

    # ------------------------------------------------------------------------------------------------ updates
    @torch.no_grad()
    def update_every_n_steps(self, step: int, occ_eval_fn: Callable[[Tensor], Tensor], occ_thre: float = 1e-2,
                             ema_decay: float = 0.95, warmup_steps: int = 256, n: int = 16,
                             generator: torch.Generator | None = None) -> None:
        """Refreshes the grid every ``n`` training steps.

        During the first ``warmup_steps`` every (visible) cell is evaluated; after, a quarter of the cells
        drawn uniformly plus as many drawn among the occupied ones. A cell's value becomes
        ``max(ema_decay * old, occ_eval_fn(random point in the cell))`` (a cell drawn more than once keeps the
        largest of its draws, whatever the order of the writes: the update is deterministic) and the occupied cells
        are those above ``min(occ_thre, mean value)``.

        Args:
            step: the training step.
            occ_eval_fn: ``f(x (M, 3)) -> (M,)`` or ``(M, 1)`` opacity of a step at ``x``, typically
                ``density(x) * render_step_size``.
        """
        if not self.training:
            raise RuntimeError("OccGridEstimator.update_every_n_steps is for training (call .train()); call "
                               "_update() directly to refresh the grid at inference")
        if step % n == 0:
            self._update(step, occ_eval_fn, occ_thre, ema_decay, warmup_steps, generator)

    @torch.no_grad()
    def _update(self, step: int, occ_eval_fn: Callable[[Tensor], Tensor], occ_thre: float = 1e-2,
                ema_decay: float = 0.95, warmup_steps: int = 256, generator: torch.Generator | None = None) -> None:
        if step < warmup_steps:
            per_level = self._all_cells()
        else:
            per_level = self._uniform_and_occupied_cells(self.cells_per_lvl // 4, generator)
        res = self.resolution.to(torch.float32)
        for lvl, indices in enumerate(per_level):
            if indices.numel() == 0:
                continue
            jitter = torch.rand(indices.shape[0], 3, device=self.occs.device, generator=generator)
            unit = (self._cell_coords(indices).to(torch.float32) + jitter) / res
            lo, hi = self.aabbs[lvl, :3], self.aabbs[lvl, 3:]
            occ = occ_eval_fn(lo + unit * (hi - lo)).reshape(-1).to(self.occs.dtype)
            if occ.shape[0] != indices.shape[0]:
                raise ValueError(f"occ_eval_fn returned {occ.shape[0]} values for {indices.shape[0]} points")
            cell_ids = lvl * self.cells_per_lvl + indices
            values = torch.maximum(self.occs.index_select(0, cell_ids) * ema_decay, torch.nan_to_num(occ, nan=0.0))
            # cells drawn twice: the largest value, not whichever write lands last (a race between threads)
            self.occs.scatter_reduce_(0, cell_ids, values, reduce="amax", include_self=False)
        visible = self.occs >= 0
        mean = torch.where(visible, self.occs, 0.0).sum() / visible.sum().clamp_min(1)  # 0 when no cell is visible
        threshold = torch.clamp(mean, max=occ_thre)
        self.binaries.copy_((self.occs > threshold).view(self.binaries.shape))

    def _cell_coords(self, indices: Tensor) -> Tensor:
        """``(M, 3)`` integer coordinates of cells ``indices (M,)`` within a level (``grid_coords``' rows),
        computed rather than gathered: gathering 78k random rows of 64^3 took 2.7 ms on a CPU (4.8 ms with
        advanced indexing), the arithmetic a fraction of that."""
        _, ry, rz = self.binaries.shape[1:]
        return torch.stack([indices // (ry * rz), (indices // rz) % ry, indices % rz], dim=-1)

    def _all_cells(self) -> list[Tensor]:
        """Indices of every visible cell, per level."""
        return [self.grid_indices[self.occs[lvl * self.cells_per_lvl:(lvl + 1) * self.cells_per_lvl] >= 0]
                for lvl in range(self.levels)]

    def _uniform_and_occupied_cells(self, n: int, generator: torch.Generator | None) -> list[Tensor]:
        """Per level: ``n`` cells drawn uniformly (less those marked invisible) and up to ``n`` drawn among the
        occupied ones."""
        out = []
        for lvl in range(self.levels):
            uniform = torch.randint(self.cells_per_lvl, (n,), device=self.occs.device, generator=generator)
            # cells marked invisible (occs < 0, mark_invisible_cells) are never drawn: they stay at -1, unoccupied
            uniform = uniform[self.occs[lvl * self.cells_per_lvl + uniform] >= 0]
            occupied = torch.nonzero(self.binaries[lvl].reshape(-1))[:, 0]
            if occupied.shape[0] > n:
                pick = torch.randint(occupied.shape[0], (n,), device=occupied.device, generator=generator)
                occupied = occupied[pick]
            out.append(torch.cat([uniform, occupied]))
        return out

    @torch.no_grad()
    def mark_invisible_cells(self, K: Tensor, c2w: Tensor, width: int, height: int, near_plane: float = 0.0,
                             chunk: int = 32 ** 3, opengl: bool = False) -> None:
        """Marks cells that no camera sees, or that lie in front of some camera's near plane, as invisible
        (``occs = -1``): they are never updated nor occupied. Meant to run once, before training.

        A cell counts as seen when its bounding sphere reaches into some camera's image beyond ``near_plane`` (a
        conservative test: no visible cell is ever marked). As in nerfacc, a cell is also marked when it is too
        near to any camera: its whole bounding sphere projects inside that camera's image but lies within
        ``near_plane`` of it, so that the camera's rays, which start at the near plane, could never explain it
        (even if another camera sees it). ``near_plane`` is a distance along the rays, whose directions nerfkit
        normalises (nerfacc tests the depth along the camera axis instead, which also marks off-axis cells that
        the camera's rays do reach).

        Args:
            K: ``(3, 3)`` or ``(n, 3, 3)`` intrinsics (pixels).
            c2w: ``(n, 3, 4)`` (or ``(n, 4, 4)``) camera-to-world matrices, in the OpenCV convention (camera
                looks along +z, y down) as in nerfacc; pass ``opengl=True`` for nerfkit's own (and Blender's)
                convention (looks along -z, y up).
            width, height: image size in pixels.
        """
        c2w = c2w.reshape(-1, *c2w.shape[-2:])[:, :3, :4].to(self.aabbs)
        if opengl:
            c2w = c2w * torch.tensor([1.0, -1.0, -1.0, 1.0], device=c2w.device)
        K = K.to(self.aabbs).expand(c2w.shape[0], 3, 3)
        rot_t = c2w[:, :3, :3].transpose(1, 2)  # world -> camera rotation
        res = self.resolution.to(torch.float32)
        for lvl in range(self.levels):
            lo, hi = self.aabbs[lvl, :3], self.aabbs[lvl, 3:]
            radius = float(((hi - lo) / res).norm() / 2)
            for start in range(0, self.cells_per_lvl, chunk):
                idx = self.grid_indices[start:start + chunk]
                centres = lo + (self._cell_coords(idx).to(torch.float32) + 0.5) / res * (hi - lo)
                cam = torch.einsum("cij,cnj->cni", rot_t, centres[None] - c2w[:, None, :, 3])  # (n_cams, M, 3)
                depth, distance = cam[..., 2], cam.norm(dim=-1)
                uv = torch.einsum("cij,cnj->cni", K[:, :2, :3], cam) / depth.clamp_min(1e-9)[..., None]
                # Margins: the projected radius of the cell's bounding sphere (generous for cells near the camera).
                margin_u = K[:, None, 0, 0] * radius / depth.clamp_min(1e-9)
                margin_v = K[:, None, 1, 1] * radius / depth.clamp_min(1e-9)
                seen = ((distance + radius >= near_plane) & (depth > 0)
                        & (uv[..., 0] >= -margin_u) & (uv[..., 0] <= width + margin_u)
                        & (uv[..., 1] >= -margin_v) & (uv[..., 1] <= height + margin_v))
                # A cell straddling the camera plane is kept: its sphere contains points in front.
                seen = seen | ((depth.abs() <= radius) & (distance + radius >= near_plane))
                too_near = ((depth > radius) & (distance + radius < near_plane)
                            & (uv[..., 0] >= margin_u) & (uv[..., 0] <= width - margin_u)
                            & (uv[..., 1] >= margin_v) & (uv[..., 1] <= height - margin_v))
                valid = seen.any(dim=0) & ~too_near.any(dim=0)
                ids = lvl * self.cells_per_lvl + idx
                self.occs[ids] = torch.where(valid, self.occs[ids].clamp_min(0.0),
                                             torch.full_like(self.occs[ids], -1.0))
        self.binaries &= (self.occs >= 0).view(self.binaries.shape)

    # ---------------------------------------------------------------------------------------------- inspection
    def occupied_fraction(self) -> float:
        """Fraction of occupied cells over all levels."""
        return float(self.binaries.float().mean().item())


def _check_shape(name: str, values: Tensor, like: Tensor) -> None:
    if values.shape != like.shape:
        raise ValueError(f"{name} returned shape {tuple(values.shape)}, expected {tuple(like.shape)} "
                         "(one value per sample)")

