"""Instant-NGP (Müller et al. 2022): hash-grid field, occupancy-grid sampling with early stopping.

The recipe: estimator = :class:`~nerfkit.methods.occgrid.OccGridSampler` (step size from the scene box, alpha
threshold, early stop), field = :class:`~nerfkit.fields.NGPField`, renderer = packed
:func:`~nerfkit.render.rendering`, loss = MSE (Smooth-L1 optionally). The number of rays per step follows the
samples it costs, so every step renders about ``target_samples`` samples. Adam with ``eps = 1e-15``; weight decay
on the MLPs only.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..fields.ngp import NGPField, NGPFieldConfig
from .occgrid import OccGridConfig, OccGridSampler, footprint_steps

if TYPE_CHECKING:
    from ..data.scene import Scene

__all__ = ["NGPConfig", "InstantNGP"]


def _ngp_occgrid() -> OccGridConfig:
    return OccGridConfig(resolution=None, steps_per_diagonal=None, alpha_thre=0.0, warmup_steps=256,
                         compile_march=True)


@dataclass
class NGPConfig:
    """Instant-NGP: a multiresolution hash grid and tiny MLPs, sampled through an occupancy grid."""

    field: NGPFieldConfig = dataclasses.field(default_factory=NGPFieldConfig)
    """The hash-grid field."""
    occgrid: OccGridConfig = dataclasses.field(default_factory=_ngp_occgrid)
    """Occupancy-grid sampling (defaults: on a GPU a 128^3 grid and steps of the box diagonal / 1024, as
    Instant-NGP; on a CPU a 64^3 grid, which cuts the cost of grid updates, and steps as long as a pixel's
    footprint at the scene's centre (:func:`~nerfkit.methods.occgrid.footprint_steps`; the diagonal / 384 where
    the cameras give none, as with NDC rays). Lego 200x200 after 600 s of training reached 30.66 dB by that rule
    (the diagonal / 358) and 30.25 / 30.54 / 29.98 dB with / 512 / 384 / 256, rendering 2.44 and 1.80 / 2.37 /
    2.39 frames/s; the built-in scene (80x80, 96 steps by that rule) reached 30.29 / 30.37 / 31.60 dB in 173 s
    with / 256 / 128 / 96, rendering 0.14 / 0.13 / 0.09 s per image (benchmarks/ngp_lego.py and
    methods_builtin.py, 2026-11-30)."""
    target_samples: int | None = None
    """Samples rendered per training step: the number of rays per step adapts to keep near this (default:
    2^18 on a GPU, as Instant-NGP, and 2^14 on a CPU, where more, smaller steps reach a given quality sooner:
    lego 200x200 in 540 s of training reached 28.27 / 29.32 / 30.38 dB with 2^16 / 2^15 / 2^14, benchmarks/ngp_lego.py,
    2026-11-30)."""
    max_batch_size: int = 1 << 16
    """Upper bound on rays per step."""
    weight_decay: float = 1e-6
    """Adam weight decay on the MLPs (not on the hash tables)."""

    def resolved(self, device: torch.device, scene: "Scene | None" = None) -> "NGPConfig":
        """A copy with the device-dependent defaults (``None``) filled in for ``device``; on a CPU the marching
        step follows the training cameras of ``scene`` when it is given."""
        gpu = device.type == "cuda"
        steps = self.occgrid.steps_per_diagonal
        if steps is None and not gpu and scene is not None and "train" in scene.splits:
            box = self.occgrid.aabb if self.occgrid.aabb is not None else scene.aabb
            steps = None if box is None else footprint_steps(scene.split("train").cameras, torch.as_tensor(box))
        occgrid = dataclasses.replace(self.occgrid, resolution=self.occgrid.resolution or (128 if gpu else 64),
                                      steps_per_diagonal=steps or (1024 if gpu else 384))
        return dataclasses.replace(self, occgrid=occgrid, field=self.field.resolved(device),
                                   target_samples=self.target_samples or (1 << 18 if gpu else 1 << 14))

    def __post_init__(self) -> None:
        if (self.target_samples is not None and self.target_samples < 1) or self.max_batch_size < 1 \
                or self.weight_decay < 0:
            raise ValueError("--ngp.target-samples and --ngp.max-batch-size must be >= 1, "
                             "--ngp.weight-decay >= 0")


class InstantNGP(nn.Module):
    """Renders rays with the NGP field through an occupancy grid.

    Args:
        cfg: the recipe's settings.
        near, far: the dataset's bounds along rays.
        aabb: ``(6,)`` scene box (required: the hash grid covers it).
    """

    default_lr = 1e-2
    default_lr_final = 3e-4
    adam_eps = 1e-15
    render_chunk = 1 << 16
    """Rays per call when rendering images: marching in rounds costs per round and call, so a whole 200x200 image
    in one call pays (lego 200x200 on a 2-core CPU, interleaved frames of 2026-11-30, median ms per frame with
    4096 / 16384 / 32768 / 65536 rays: 695 / 604 / 578 / 524; the process peaked at 0.9 GB with 65536)."""

    def __init__(self, cfg: NGPConfig, near: float, far: float, aabb: Tensor | None = None) -> None:
        super().__init__()
        box = cfg.occgrid.aabb if cfg.occgrid.aabb is not None else aabb
        if box is None:
            raise ValueError("the ngp method needs a scene box: the dataset gives none, so pass "
                             "--ngp.occgrid.aabb XMIN YMIN ZMIN XMAX YMAX ZMAX")
        self.cfg = cfg
        self.field = NGPField(cfg.field, torch.as_tensor(box, dtype=torch.float32))
        self.occgrid = OccGridSampler(cfg.occgrid, torch.as_tensor(box, dtype=torch.float32), near, far)

    def param_groups(self) -> list[dict]:
        """Optimizer groups: hash tables without weight decay, MLPs with it."""
        groups = self.field.param_groups()
        return [{"params": groups["grid"], "weight_decay": 0.0},
                {"params": groups["mlp"], "weight_decay": self.cfg.weight_decay}]

    def before_step(self, step: int, generator: torch.Generator | None = None) -> bool:
        """Refreshes the occupancy grid on its schedule; returns whether it changed."""
        return self.occgrid.update(step, self.field.query_density, generator)

    def next_batch_size(self, batch_size: int, losses: dict[str, Tensor]) -> int:
        """Rays for the next step, so that it renders about ``target_samples`` samples."""
        n_samples = int(losses["n_samples"])
        per_ray = max(n_samples / max(batch_size, 1), 1.0)
        target = self.cfg.target_samples or 1 << 18
        wanted = int(target / per_ray)
        # move smoothly: at most double or halve per step
        return int(min(max(wanted, batch_size // 2, 64), batch_size * 2, self.cfg.max_batch_size))

    def forward(self, rays_o: Tensor, rays_d: Tensor, render_bkgd: Tensor,
                generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Renders ``n_rays`` rays: ``rgb (n_rays, 3)``, ``depth (n_rays,)``, ``opacity (n_rays,)``,
        ``n_samples`` (0-d)."""
        out = self.occgrid.render(self.field, rays_o, rays_d, render_bkgd, generator)
        return {k: out[k] for k in ("rgb", "depth", "opacity", "n_samples")}

    def loss(self, outputs: dict[str, Tensor], target_rgb: Tensor) -> dict[str, Tensor]:
        """``loss`` (MSE), ``mse`` (for PSNR) and ``n_samples``."""
        mse = F.mse_loss(outputs["rgb"], target_rgb)
        return {"loss": mse, "mse": mse, "n_samples": outputs["n_samples"]}
