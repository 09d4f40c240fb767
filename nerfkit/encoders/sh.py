"""Real spherical-harmonics encoding of view directions (as in Instant-NGP / tiny-cuda-nn / Plenoxels)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SHEncoder"]

# Normalisation constants of the real SH basis, bands l = 0..3 (same values and signs as tiny-cuda-nn / Plenoxels).
C0 = 0.28209479177387814
C1 = 0.4886025119029199
C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154, -0.4570457994644658,
      1.445305721320277, -0.5900435899266435)


class SHEncoder(nn.Module):
    """Real spherical harmonics ``Y_lm`` of unit directions for bands ``l = 0 .. degree - 1``.

    Args:
        degree: number of bands, in ``1..4``; the encoding has ``degree**2`` channels (4 -> 16, Instant-NGP's
            default for view directions).

    Input ``(..., 3)`` unit vectors ``(x, y, z)``; output ``(..., degree**2)`` in the input dtype, ordered by band
    ``l`` and then ``m = -l .. l``. The basis is orthonormal on the unit sphere (``integral Y_i Y_j = delta_ij``).
    Each band-``l`` function is written as a homogeneous polynomial of degree ``l`` in ``x, y, z``; on unit vectors
    it equals the tiny-cuda-nn / Plenoxels formulas (some of which use ``x^2 + y^2 + z^2 = 1`` to simplify).
    Directions are not normalised here.
    """

    def __init__(self, degree: int = 4) -> None:
        super().__init__()
        if isinstance(degree, bool) or not isinstance(degree, int) or not 1 <= degree <= 4:
            raise ValueError(f"degree must be an int in 1..4, got {degree!r}")
        self.degree = degree

    @property
    def out_dim(self) -> int:
        return self.degree ** 2

    def extra_repr(self) -> str:
        return f"degree={self.degree}"

    def forward(self, directions: Tensor) -> Tensor:
        if directions.ndim < 1 or directions.shape[-1] != 3:
            raise ValueError(f"directions must have shape (..., 3), got {tuple(directions.shape)}")
        x, y, z = directions.unbind(-1)
        out = [torch.full_like(x, C0)]
        if self.degree > 1:
            out += [-C1 * y, C1 * z, -C1 * x]
        if self.degree > 2:
            xx, yy, zz = x * x, y * y, z * z
            xy, yz, xz = x * y, y * z, x * z
            out += [
                C2[0] * xy,
                C2[1] * yz,
                C2[2] * (2.0 * zz - xx - yy),
                C2[3] * xz,
                C2[4] * (xx - yy),
            ]
        if self.degree > 3:
            out += [
                C3[0] * y * (3.0 * xx - yy),
                C3[1] * xy * z,
                C3[2] * y * (4.0 * zz - xx - yy),
                C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
                C3[4] * x * (4.0 * zz - xx - yy),
                C3[5] * z * (xx - yy),
                C3[6] * x * (xx - 3.0 * yy),
            ]
        return torch.stack(out, dim=-1)
