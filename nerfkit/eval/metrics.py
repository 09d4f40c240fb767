"""Image quality metrics (PSNR here; SSIM from torchmetrics)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["psnr", "psnr_from_mse", "ssim"]


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of colours in [0, 1] with mean squared error ``mse``."""
    return -10.0 * math.log10(max(mse, 1e-12))


def psnr(pred: Tensor, target: Tensor) -> float:
    """PSNR in dB between two images in [0, 1] of the same shape."""
    return psnr_from_mse(torch.mean((pred.float() - target.float()) ** 2).item())


def ssim(pred: Tensor, target: Tensor) -> float:
    """SSIM of ``(H, W, 3)`` images in [0, 1]: 11x11 Gaussian window, sigma 1.5, data range 1 (the common
    protocol of NeRF papers)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    def nchw(x: Tensor) -> Tensor:
        return x.float().permute(2, 0, 1)[None]

    value = structural_similarity_index_measure(nchw(pred), nchw(target), gaussian_kernel=True, sigma=1.5,
                                                kernel_size=11, data_range=1.0)
    return float(value)
