"""Input encoders for fields: ``(..., in_dim) -> (..., out_dim)`` modules with an ``out_dim`` attribute."""

from .frequency import FrequencyEncoder
from .hashgrid import HashGridEncoder
from .sh import SHEncoder

__all__ = ["FrequencyEncoder", "HashGridEncoder", "SHEncoder"]
