"""Transmittance estimators that decide where to sample along rays (nerfacc 0.5's ``estimators``)."""

from .occ_grid import OccGridEstimator
from .prop_net import PropNetEstimator, get_proposal_requires_grad_fn

__all__ = ["OccGridEstimator", "PropNetEstimator", "get_proposal_requires_grad_fn"]
