"""Proposal-network sampling (Mip-NeRF 360) with nerfacc 0.5's ``PropNetEstimator`` interface.

Samples are drawn level by level: each proposal density field is evaluated on intervals drawn from the previous
level's distribution, and its transmittance gives the CDF for the next level. Sampling happens in a normalised
coordinate ``s`` in ``[0, 1]`` that maps to distance ``t`` in ``[near_plane, far_plane]`` either linearly
(``'uniform'``) or linearly in disparity ``1 / t`` (``'lindisp'``).

The proposal fields are trained with the interlevel loss: the weight a proposal puts on the span of each final
interval must bound the final rendering weight of that interval.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch
from torch import Tensor, nn

from ..render.volrend import render_transmittance_from_density
from ..sampling.data_specs import RayIntervals
from ..sampling.pdf import importance_sampling, searchsorted

__all__ = ["PropNetEstimator", "get_proposal_requires_grad_fn"]


class PropNetEstimator(nn.Module):
    """Transmittance estimator driven by proposal networks.

    Reference: Barron et al., "Mip-NeRF 360: Unbounded Anti-Aliased Neural Radiance Fields", CVPR 2022.

    Args:
        optimizer: optimiser of the proposal networks' parameters, used by :meth:`update_every_n_steps`.
        scheduler: its learning-rate scheduler (stepped on every :meth:`update_every_n_steps` call).

    The estimator holds no parameters; move it to the rays' device (``.to(device)``) because the first level's
    CDF is created on :attr:`device`.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer("_dummy", torch.empty(0), persistent=False)
        self.optimizer = optimizer
        self.scheduler = scheduler
        # (intervals, cdfs) of every proposal level sampled with requires_grad=True, then (final intervals, None).
        self.prop_cache: list[tuple[RayIntervals, Tensor | None]] = []

    @property
    def device(self) -> torch.device:
        return self._dummy.device

    @torch.no_grad()
    def sampling(
        self,
        prop_sigma_fns: Sequence[Callable[[Tensor, Tensor], Tensor]],
        prop_samples: Sequence[int],
        num_samples: int,
        # rendering options
        n_rays: int,
        near_plane: float,
        far_plane: float,
        sampling_type: Literal["uniform", "lindisp"] = "lindisp",
        # training options
        stratified: bool = False,
        requires_grad: bool = False,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Draws ``num_samples`` intervals per ray, guided by the proposal networks.

        Args:
            prop_sigma_fns: one function per proposal level, ``f(t_starts (n_rays, n), t_ends (n_rays, n)) ->
                sigmas (n_rays, n)`` (post-activation densities).
            prop_samples: number of intervals evaluated at each level (same length as ``prop_sigma_fns``).
            num_samples: number of final intervals per ray.
            n_rays: number of rays.
            near_plane, far_plane: distance range of every ray (``near_plane > 0`` for ``'lindisp'``); tensors
                broadcastable to ``(n_rays, 1)`` also work.
            sampling_type: ``'uniform'`` (linear in ``t``) or ``'lindisp'`` (linear in ``1 / t``).
            stratified: jitter the samples (training).
            requires_grad: run the proposal networks with autograd and cache their outputs for
                :meth:`compute_loss` / :meth:`update_every_n_steps`.
            generator: random source for the jitter (default: torch's global generator).

        Returns:
            ``(t_starts, t_ends)``, each ``(n_rays, num_samples)``, consecutive intervals in
            ``[near_plane, far_plane]`` (no gradients).
        """
        if len(prop_sigma_fns) != len(prop_samples):
            raise ValueError(f"got {len(prop_sigma_fns)} proposal functions but {len(prop_samples)} sample counts")
        if sampling_type not in ("uniform", "lindisp"):
            raise ValueError(f"sampling_type must be 'uniform' or 'lindisp', got {sampling_type!r}")
        if sampling_type == "lindisp" and not isinstance(near_plane, Tensor) and near_plane <= 0:
            raise ValueError(f"'lindisp' sampling needs near_plane > 0, got {near_plane}")

        # Level 0: a uniform distribution over s in [0, 1].
        edges = torch.tensor([0.0, 1.0], device=self.device).expand(n_rays, 2)
        cdfs = edges
        intervals = RayIntervals(vals=edges)
        for level_fn, level_samples in zip(prop_sigma_fns, prop_samples):
            intervals, _ = importance_sampling(intervals, cdfs, level_samples, stratified, generator=generator)
            t_vals = _s_to_t(sampling_type, intervals.vals, near_plane, far_plane)
            t_starts, t_ends = t_vals[:, :-1], t_vals[:, 1:]
            with torch.set_grad_enabled(requires_grad):
                sigmas = level_fn(t_starts, t_ends)
                if sigmas.shape != t_starts.shape:
                    raise ValueError(f"a proposal function returned sigmas of shape {tuple(sigmas.shape)}, "
                                     f"expected {tuple(t_starts.shape)}")
                trans, _ = render_transmittance_from_density(t_starts, t_ends, sigmas)
                cdfs = _cdfs_from_trans(trans)
                if requires_grad:
                    self.prop_cache.append((intervals, cdfs))

        intervals, _ = importance_sampling(intervals, cdfs, num_samples, stratified, generator=generator)
        t_vals = _s_to_t(sampling_type, intervals.vals, near_plane, far_plane)
        if requires_grad:
            self.prop_cache.append((intervals, None))
        return t_vals[:, :-1], t_vals[:, 1:]

    @torch.enable_grad()
    def compute_loss(self, trans: Tensor, loss_scaler: float = 1.0) -> Tensor:
        """Interlevel (proposal) loss of the cached levels, and empties the cache.

        Args:
            trans: ``(n_rays, num_samples)`` transmittance of the final samples from the last
                :meth:`sampling` call with ``requires_grad=True`` (treated as a constant).
            loss_scaler: factor applied to the loss.

        Returns:
            a scalar: the sum over proposal levels of the per-interval mean of
            ``clamp(w - w_prop, 0)^2 / (w + eps)``, times ``loss_scaler``; ``0`` when nothing is cached.
        """
        if not self.prop_cache:
            return torch.zeros((), device=self.device)
        intervals, _ = self.prop_cache.pop()
        cdfs = _cdfs_from_trans(trans).detach()
        loss = torch.zeros((), device=trans.device, dtype=trans.dtype)
        while self.prop_cache:
            prop_intervals, prop_cdfs = self.prop_cache.pop()
            loss = loss + _interlevel_loss(intervals, cdfs, prop_intervals, prop_cdfs).mean()
        return loss * loss_scaler

    @torch.enable_grad()
    def update_every_n_steps(self, trans: Tensor, requires_grad: bool = False, loss_scaler: float = 1.0) -> float:
        """Training-step hook: with ``requires_grad`` take one optimiser step on the proposal loss.

        Args:
            trans: ``(n_rays, num_samples)`` transmittance of the final samples.
            requires_grad: the value passed to this step's :meth:`sampling`; when ``False`` only the scheduler
                steps (and any stale cache is dropped).
            loss_scaler: factor applied to the loss.

        Returns:
            the proposal loss as a float (``0.0`` when not updating).
        """
        if not requires_grad:
            self.prop_cache.clear()
            if self.scheduler is not None:
                self.scheduler.step()
            return 0.0
        if not self.prop_cache:
            raise RuntimeError("update_every_n_steps(requires_grad=True) needs a sampling(requires_grad=True) first")
        if self.optimizer is None:
            raise RuntimeError("PropNetEstimator needs an optimizer to update the proposal networks")
        loss = self.compute_loss(trans, loss_scaler)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return loss.item()


def get_proposal_requires_grad_fn(target: float = 5.0, num_steps: int = 1000) -> Callable[[int], bool]:
    """Schedule of when to train the proposal networks: ``fn(step) -> bool``.

    The allowed gap between two proposal updates grows linearly from 0 at step 0 to ``target`` steps at
    ``num_steps`` and stays there: early on every step updates, later about one step in ``target + 1``. The
    returned function keeps state, so call it once per training step, in order.
    """
    steps_since_update = 0

    def proposal_requires_grad_fn(step: int) -> bool:
        nonlocal steps_since_update
        allowed_gap = min(step / num_steps, 1.0) * target
        update = steps_since_update > allowed_gap
        if update:
            steps_since_update = 0
        steps_since_update += 1
        return update

    return proposal_requires_grad_fn


def _cdfs_from_trans(trans: Tensor) -> Tensor:
    """CDF of the rendering weights at the interval edges: ``(n_rays, n)`` transmittance -> ``(n_rays, n + 1)``."""
    return 1.0 - torch.cat([trans, torch.zeros_like(trans[:, :1])], dim=-1)


def _s_to_t(sampling_type: str, s: Tensor, near: float | Tensor, far: float | Tensor) -> Tensor:
    """Maps normalised ``s (n_rays, k)`` in ``[0, 1]`` to distances in ``[near, far]`` (linear or lindisp)."""
    near_t = torch.as_tensor(near, dtype=s.dtype, device=s.device)
    far_t = torch.as_tensor(far, dtype=s.dtype, device=s.device)
    if sampling_type == "uniform":
        t = near_t + s * (far_t - near_t)
    else:  # linear in disparity
        t = 1.0 / (s / far_t + (1.0 - s) / near_t)
    return torch.minimum(torch.maximum(t, near_t), far_t)


def _interlevel_loss(intervals: RayIntervals, cdfs: Tensor, prop_intervals: RayIntervals, prop_cdfs: Tensor,
                     eps: float = 1e-7) -> Tensor:
    """Per-interval ``clamp(w - w_prop, 0)^2 / (w + eps)``.

    ``w`` is each final interval's weight (CDF difference across it) and ``w_prop`` the proposal weight of all
    proposal intervals that overlap it (the proposal CDF between the proposal edges bracketing it).

    Args:
        intervals, cdfs: final edges and CDF at them, batched ``(n_rays, n + 1)`` (or packed with ``is_left`` /
            ``is_right``).
        prop_intervals, prop_cdfs: a proposal level's edges and CDF, batched ``(n_rays, m + 1)``.

    Returns:
        ``(n_rays, n)`` batched (or ``(n_intervals,)`` packed) loss terms.
    """
    ids_left, ids_right = searchsorted(prop_intervals, intervals)
    if intervals.is_packed:
        if intervals.is_left is None or intervals.is_right is None:
            raise ValueError("packed intervals need is_left and is_right")
        w = cdfs[intervals.is_right] - cdfs[intervals.is_left]
        ids_left, ids_right = ids_left[intervals.is_left], ids_right[intervals.is_right]
        prop_flat = prop_cdfs.reshape(-1)
        w_prop = prop_flat[ids_right] - prop_flat[ids_left]
    else:
        w = cdfs[..., 1:] - cdfs[..., :-1]
        w_prop = prop_cdfs.gather(-1, ids_right[..., 1:]) - prop_cdfs.gather(-1, ids_left[..., :-1])
    return torch.clamp(w - w_prop, min=0.0) ** 2 / (w + eps)
