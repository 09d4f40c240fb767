"""Image quality metrics (PSNR here; SSIM from torchmetrics)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["psnr", "psnr_from_mse", "ssim"]


def psnr_from_mse(mse: float) -> float:
    """PSNR in dB of colours in [0, 1] with mean squared error ``mse``."""
    return -10.0 * math.log10(max(mse, 1e-12))


def psnr(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """PSNR in dB between two images ``(H, W, C)`` in [0, 1]; with a bool ``mask (H, W)``, over its kept pixels."""
    err = (pred.float() - target.float()) ** 2
    if mask is not None:
        err = err[mask]
        if err.numel() == 0:
            return float("nan")
    return psnr_from_mse(torch.mean(err).item())


def ssim(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> float:
    """SSIM of ``(H, W, 3)`` images in [0, 1]: 11x11 Gaussian window, sigma 1.5, data range 1 (the common
    protocol of NeRF papers); with a bool ``mask (H, W)``, the mean of the SSIM map over its kept pixels."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    def nchw(x: Tensor) -> Tensor:
        return x.float().permute(2, 0, 1)[None]

    if mask is None:
        value = structural_similarity_index_measure(nchw(pred), nchw(target), gaussian_kernel=True, sigma=1.5,
                                                    kernel_size=11, data_range=1.0)
        return float(value)
    _, full = structural_similarity_index_measure(nchw(pred), nchw(target), gaussian_kernel=True, sigma=1.5,
                                                  kernel_size=11, data_range=1.0, return_full_image=True)
    per_pixel = full[0].mean(0)  # (H, W), averaged over channels
    kept = per_pixel[mask.to(per_pixel.device)]
    return float(kept.mean()) if kept.numel() else float("nan")
