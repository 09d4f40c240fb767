"""The original NeRF field: a positional-encoded MLP with a skip connection and a view-dependent colour head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..encoders import FrequencyEncoder
from .outputs import at_least_float32

__all__ = ["VanillaFieldConfig", "VanillaNeRFField"]


@dataclass
class VanillaFieldConfig:
    """Architecture of one vanilla NeRF MLP (the coarse and the fine network each get one)."""

    depth: int = 8
    """Number of hidden layers of the trunk."""
    width: int = 256
    """Hidden units per trunk layer."""
    skips: tuple[int, ...] = (4,)
    """Trunk layers whose input is concatenated with the encoded position again."""
    color_width: int = 128
    """Hidden units of the view-dependent colour head."""
    pos_freqs: int = 10
    """Frequency bands of the position encoding."""
    dir_freqs: int = 4
    """Frequency bands of the view-direction encoding (0 disables view dependence)."""
    density_activation: Literal["relu", "softplus"] | None = None
    """Activation turning the raw density into sigma >= 0 (softplus keeps gradients alive in empty space).
    Unset: relu (the paper's) with coarse-to-fine sampling; softplus with the occupancy grid, which would prune
    every cell, and never learn again, wherever a relu starts at exactly zero density."""

    def __post_init__(self) -> None:
        for name in ("depth", "width", "color_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if any(not 0 < s < self.depth for s in self.skips):
            raise ValueError(f"skips must name trunk layers in 1..{self.depth - 1}, got {self.skips}")
        if self.pos_freqs < 0 or self.dir_freqs < 0:
            raise ValueError("pos_freqs and dir_freqs must be >= 0")


class VanillaNeRFField(nn.Module):
    """``(positions, directions) -> (rgb, sigma)``.

    ``positions (..., 3)`` in world units, ``directions (..., 3)`` unit vectors; returns ``rgb (..., 3)`` in
    ``[0, 1]`` and ``sigma (...)`` >= 0 per unit length, float32 also under autocast (the layers then run in
    bf16/fp16, the activations of the outputs in float32).
    """

    def __init__(self, cfg: VanillaFieldConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pos_enc = FrequencyEncoder(3, cfg.pos_freqs)
        self.dir_enc = FrequencyEncoder(3, cfg.dir_freqs) if cfg.dir_freqs > 0 else None
        layers, in_dim = [], self.pos_enc.out_dim
        for i in range(cfg.depth):
            if i in cfg.skips:
                in_dim += self.pos_enc.out_dim
            layers.append(nn.Linear(in_dim, cfg.width))
            in_dim = cfg.width
        self.trunk = nn.ModuleList(layers)
        self.density_head = nn.Linear(cfg.width, 1)
        dir_dim = self.dir_enc.out_dim if self.dir_enc is not None else 0
        self.feature = nn.Linear(cfg.width, cfg.width)
        self.color_hidden = nn.Linear(cfg.width + dir_dim, cfg.color_width)
        self.color_out = nn.Linear(cfg.color_width, 3)

    def _trunk(self, positions: Tensor) -> Tensor:
        encoded = self.pos_enc(positions)
        h = encoded
        for i, layer in enumerate(self.trunk):
            if i in self.cfg.skips:
                h = torch.cat([h, encoded], dim=-1)
            h = F.relu(layer(h))
        return h

    def _density(self, h: Tensor) -> Tensor:
        raw = at_least_float32(self.density_head(h).squeeze(-1))  # autocast: rendering wants float32 densities
        return F.softplus(raw - 1.0) if self.cfg.density_activation == "softplus" else F.relu(raw)

    def query_density(self, positions: Tensor) -> Tensor:
        """``sigma (...)`` at ``positions (..., 3)`` without the colour head."""
        return self._density(self._trunk(positions))

    def density_and_features(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """``sigma (...)`` and the trunk's output ``(..., width)`` at ``positions (..., 3)``: the first half of
        :meth:`forward` (renderers shade only the samples that stay visible, with :meth:`color`)."""
        h = self._trunk(positions)
        return self._density(h), h

    def color(self, features: Tensor, directions: Tensor) -> Tensor:
        """``rgb (..., 3)`` from :meth:`density_and_features`' trunk output and unit ``directions (..., 3)``."""
        features = self.feature(features)
        if self.dir_enc is not None:
            features = torch.cat([features, self.dir_enc(directions)], dim=-1)
        return torch.sigmoid(at_least_float32(self.color_out(F.relu(self.color_hidden(features)))))

    def forward(self, positions: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        sigma, h = self.density_and_features(positions)
        return self.color(h, directions), sigma
