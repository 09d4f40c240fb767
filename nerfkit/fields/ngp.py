"""The Instant-NGP field: multiresolution hash grid -> small density MLP -> geometry features + SH(direction)
-> small colour MLP.

Bounded scenes map the scene box to the unit cube (points outside have no density); unbounded scenes contract
space first (Mip-NeRF 360's contraction with the max-norm, which suits axis-aligned grids): the box maps to the
inner half of the cube and everything beyond it to the outer shell.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..encoders import HashGridEncoder, SHEncoder
from .outputs import at_least_float32

__all__ = ["NGPFieldConfig", "NGPField", "trunc_exp", "contract"]


class _TruncExp(torch.autograd.Function):
    """``exp(x)`` whose gradient is computed with ``x`` clamped at 15, so huge densities cannot blow it up."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return grad * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: Tensor) -> Tensor:
    """``exp(x)`` with a gradient truncated at ``x = 15`` (Instant-NGP's density activation), computed in at
    least float32 (its backward runs outside autocast, where ``exp(15)`` would overflow fp16)."""
    return _TruncExp.apply(at_least_float32(x))


def contract(x: Tensor) -> Tensor:
    """Scene contraction: ``x`` where ``|x|_inf <= 1``, else ``(2 - 1 / |x|_inf) * x / |x|_inf``.

    ``x (..., 3)`` -> ``(..., 3)`` in ``[-2, 2]^3``.
    """
    norm = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-9)
    return torch.where(norm <= 1.0, x, (2.0 - 1.0 / norm) * (x / norm))


@dataclass
class NGPFieldConfig:
    """Instant-NGP field architecture."""

    n_levels: int | None = None
    """Hash-grid levels (unset: 16 on a GPU, as Instant-NGP; 8 on a CPU, where each level costs time)."""
    n_features_per_level: int = 2
    """Features stored per grid vertex and level."""
    log2_hashmap_size: int | None = None
    """log2 of the rows of each level's table (unset: 19 on a GPU, 17 on a CPU)."""
    base_resolution: int = 16
    """Coarsest grid resolution."""
    max_resolution: int | None = None
    """Finest grid resolution over the scene box, or over the contracted cube when unbounded (unset: 2048 on a
    GPU, 512 on a CPU)."""
    hidden_dim: int | None = None
    """Width of both MLPs (unset: 64 on a GPU, as Instant-NGP; 32 on a CPU, where the MLPs are a third of a
    training step: lego 200x200 in 600 s trained 7203 steps at 197k samples/s to 30.90 dB with 32, 5580 steps at
    153k samples/s to 30.87 dB with 64, and 32 led at every minute of the curve; benchmarks/ngp_lego.py,
    2026-11-30)."""
    geo_feat_dim: int = 15
    """Geometry features passed from the density MLP to the colour MLP."""
    n_hidden_color: int = 2
    """Hidden layers of the colour MLP."""
    sh_degree: int = 4
    """Degree of the spherical-harmonics direction encoding (degree^2 features)."""
    compile_encoder: bool = True
    """Off CUDA, encode positions with the fused loop torch.compile generates (nerfkit.kernels.hashgrid_compiled;
    on lego 200x200 with a 2-core CPU: training 1.6x and rendering 1.6x faster than with the torch reference,
    after ~20 s of compilation once per process; without a working compiler it warns once and uses the
    reference). CUDA uses the fused Triton kernel either way."""
    unbounded: bool = False
    """Contract space outside the scene box instead of treating it as empty."""
    density_bias: float = -1.0
    """Added to the raw density before trunc_exp (a low initial density)."""

    def resolved(self, device: torch.device) -> "NGPFieldConfig":
        """A copy with the unset (device-dependent) settings filled in for ``device``."""
        gpu = device.type == "cuda"
        return dataclasses.replace(
            self, n_levels=self.n_levels or (16 if gpu else 8),
            log2_hashmap_size=self.log2_hashmap_size or (19 if gpu else 17),
            max_resolution=self.max_resolution or (2048 if gpu else 512),
            hidden_dim=self.hidden_dim or (64 if gpu else 32))

    def __post_init__(self) -> None:
        checks = {"n-levels": self.n_levels is None or self.n_levels >= 1,
                  "n-features-per-level": self.n_features_per_level >= 1,
                  "log2-hashmap-size": self.log2_hashmap_size is None or 4 <= self.log2_hashmap_size <= 30,
                  "base-resolution": self.base_resolution >= 2,
                  "max-resolution": self.max_resolution is None or self.max_resolution >= self.base_resolution,
                  "hidden-dim": self.hidden_dim is None or self.hidden_dim >= 1,
                  "geo-feat-dim": self.geo_feat_dim >= 0, "n-hidden-color": self.n_hidden_color >= 1,
                  "sh-degree": 1 <= self.sh_degree <= 4}
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"--ngp.field.{name} has an invalid value: {getattr(self, name.replace('-', '_'))!r}")


class NGPField(nn.Module):
    """``(positions, directions) -> (rgb, sigma)`` over a scene box.

    Args:
        cfg: the architecture.
        aabb: ``(6,)`` scene box ``[xmin, ymin, zmin, xmax, ymax, zmax]``.

    ``positions (..., 3)`` in world units, ``directions (..., 3)`` unit vectors; returns ``rgb (..., 3)`` in
    ``[0, 1]`` and ``sigma (...)`` >= 0 per unit length, float32 also under autocast (the hash table is read in
    float32, the MLPs run in bf16/fp16, the output activations in float32).
    """

    def __init__(self, cfg: NGPFieldConfig, aabb: Tensor) -> None:
        super().__init__()
        cfg = cfg.resolved(torch.device("cuda" if torch.cuda.is_available() else "cpu")) \
            if None in (cfg.n_levels, cfg.log2_hashmap_size, cfg.max_resolution, cfg.hidden_dim) else cfg
        self.cfg = cfg
        self.register_buffer("aabb", torch.as_tensor(aabb, dtype=torch.float32).reshape(6))
        self.encoder = HashGridEncoder(3, cfg.n_levels, cfg.n_features_per_level, cfg.log2_hashmap_size,
                                       cfg.base_resolution, cfg.max_resolution, compile=cfg.compile_encoder)
        self.density_mlp = nn.Sequential(nn.Linear(self.encoder.out_dim, cfg.hidden_dim), nn.ReLU(),
                                         nn.Linear(cfg.hidden_dim, 1 + cfg.geo_feat_dim))
        self.dir_encoder = SHEncoder(cfg.sh_degree)
        layers: list[nn.Module] = []
        width = self.dir_encoder.out_dim + cfg.geo_feat_dim
        for _ in range(cfg.n_hidden_color):
            layers += [nn.Linear(width, cfg.hidden_dim), nn.ReLU()]
            width = cfg.hidden_dim
        layers.append(nn.Linear(width, 3))
        self.color_mlp = nn.Sequential(*layers)

    def normalize(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """World positions -> grid coordinates in ``[0, 1]^3`` and a mask of the points the field covers."""
        lo, hi = self.aabb[:3], self.aabb[3:]
        x = (positions - lo) / (hi - lo)  # the box -> [0, 1]^3
        if self.cfg.unbounded:
            x = (contract(x * 2.0 - 1.0) + 2.0) / 4.0
            return x, torch.ones_like(x[..., 0], dtype=torch.bool)
        inside = ((x >= 0.0) & (x <= 1.0)).all(dim=-1)
        return x.clamp(0.0, 1.0), inside

    def density_and_features(self, positions: Tensor, encoded: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``sigma (...)`` and the geometry features ``(..., geo_feat_dim)`` at ``positions (..., 3)``: the first
        half of :meth:`forward` (renderers shade only the samples that stay visible, with :meth:`color`).
        ``encoded``: the hash encoding of these positions from :meth:`density_and_encoding`, if at hand."""
        x, inside = self.normalize(positions)
        flat = None if encoded is None else encoded.reshape(-1, self.encoder.out_dim)
        h = self.density_mlp(self.encoder(x.reshape(-1, 3), flat)).reshape(*x.shape[:-1], -1)
        # float32 before the exponential: under fp16 autocast exp would overflow past 11 (65504)
        sigma = trunc_exp(at_least_float32(h[..., 0]) + self.cfg.density_bias) * inside
        return sigma, h[..., 1:]

    def query_density(self, positions: Tensor) -> Tensor:
        """``sigma (...)`` at ``positions (..., 3)``."""
        return self._density(positions)[0]

    @torch.no_grad()
    def density_and_encoding(self, positions: Tensor) -> tuple[Tensor, Tensor | None]:
        """``sigma (...)`` at ``positions (..., 3)`` and, where the encoder can take it back
        (:meth:`~nerfkit.encoders.HashGridEncoder.takes_encoded`), their hash encoding ``(..., L * F)``, else
        ``None``. Training's early-stopping pass computes the encoding of every marched sample; passing the kept
        samples' rows back to :meth:`forward` spares encoding them again (lego ngp on a 2-core CPU: ~5 of ~90 ms a
        training step)."""
        sigma, encoded, flat = self._density(positions)
        return sigma, encoded.reshape(*sigma.shape, -1) if self.encoder.takes_encoded(flat) else None

    def _density(self, positions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``sigma (...)``, the encoding ``(M, L * F)`` and the grid coordinates ``(M, 3)`` it was computed at;
        the density MLP's last layer computes only its density output (the features are not needed)."""
        x, inside = self.normalize(positions)
        flat = x.reshape(-1, 3)
        encoded = self.encoder(flat)
        last = self.density_mlp[-1]
        raw = F.linear(self.density_mlp[:-1](encoded), last.weight[:1], last.bias[:1]).reshape(x.shape[:-1])
        return trunc_exp(at_least_float32(raw) + self.cfg.density_bias) * inside, encoded, flat

    def encode_directions(self, directions: Tensor) -> Tensor:
        """The spherical-harmonics encoding ``(..., sh_degree^2)`` of unit ``directions (..., 3)``, which
        :meth:`color` and :meth:`forward` take back as ``encoded_dirs``. Renderers encode each ray's direction once
        and hand every sample its ray's row: the same numbers as encoding per sample, for a fraction of the work
        (lego ngp training: 3.6k rays against 16k kept samples a step)."""
        return self.dir_encoder(directions)

    def color(self, features: Tensor, directions: Tensor | None, encoded_dirs: Tensor | None = None) -> Tensor:
        """``rgb (..., 3)`` from :meth:`density_and_features`' features and unit ``directions (..., 3)``, or their
        :meth:`encode_directions` rows ``encoded_dirs`` (then ``directions`` is not read)."""
        d = self.dir_encoder(directions) if encoded_dirs is None else encoded_dirs
        return torch.sigmoid(at_least_float32(self.color_mlp(torch.cat([d.to(features.dtype), features], dim=-1))))

    def forward(self, positions: Tensor, directions: Tensor | None, encoded: Tensor | None = None,
                encoded_dirs: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(rgb, sigma)``; ``encoded`` and ``encoded_dirs``: the positions' hash encoding
        (:meth:`density_and_encoding`) and the directions' (:meth:`encode_directions`), where the caller has
        them."""
        sigma, features = self.density_and_features(positions, encoded)
        return self.color(features, directions, encoded_dirs), sigma

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by kind: the hash tables (no weight decay) and the MLPs."""
        return {"grid": list(self.encoder.parameters()),
                "mlp": list(self.density_mlp.parameters()) + list(self.color_mlp.parameters())}

