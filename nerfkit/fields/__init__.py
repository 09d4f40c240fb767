"""Radiance fields: ``(positions, directions) -> (rgb, sigma)``, plus ``query_density(positions) -> sigma``.

Both fields here also split ``forward`` in two, ``density_and_features(positions) -> (sigma, features)`` and
``color(features, directions) -> rgb``, so that a renderer can shade only the samples that stay visible (an
optional part of the protocol: a field without them is rendered through ``forward``).
"""

from .ngp import NGPField, NGPFieldConfig
from .vanilla import VanillaFieldConfig, VanillaNeRFField

__all__ = ["VanillaFieldConfig", "VanillaNeRFField", "NGPFieldConfig", "NGPField"]
