"""NeRF positional (frequency) encoding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["FrequencyEncoder"]


class FrequencyEncoder(nn.Module):
    """NeRF positional encoding: ``[x, sin(2^k x), cos(2^k x)]`` for ``k`` in ``[min_freq_exp, max_freq_exp]``.

    Args:
        in_dim: input channels (3 for positions and directions).
        n_freqs: number of frequency bands ``L``.
        min_freq_exp, max_freq_exp: log2 of the lowest / highest angular frequency; by default ``0`` and
            ``L - 1`` as in the original NeRF (which uses ``L = 10`` for positions, ``4`` for directions).
        include_input: prepend the raw input.

    Input ``(..., in_dim)``; output ``(..., out_dim)`` with ``out_dim = in_dim * (include_input + 2 * L)``.
    """

    def __init__(self, in_dim: int, n_freqs: int, min_freq_exp: float = 0.0, max_freq_exp: float | None = None,
                 include_input: bool = True) -> None:
        super().__init__()
        if n_freqs < 0:
            raise ValueError(f"n_freqs must be >= 0, got {n_freqs}")
        if max_freq_exp is None:
            max_freq_exp = min_freq_exp + n_freqs - 1
        self.in_dim, self.n_freqs, self.include_input = in_dim, n_freqs, include_input
        self.register_buffer("freqs", 2.0 ** torch.linspace(min_freq_exp, max_freq_exp, n_freqs), persistent=False)

    @property
    def out_dim(self) -> int:
        return self.in_dim * (int(self.include_input) + 2 * self.n_freqs)

    def forward(self, x: Tensor) -> Tensor:
        scaled = (x[..., None, :] * self.freqs[:, None]).flatten(-2)  # (..., L * in_dim)
        parts = [x] if self.include_input else []
        parts += [torch.sin(scaled), torch.cos(scaled)]
        return torch.cat(parts, dim=-1)
