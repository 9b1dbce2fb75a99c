"""A local emulator of Runflow's public API for the Multi Angles model: free, offline, scriptable."""

from .config import VARIANT_CHOICES, Variants
from .server import Sandbox

__all__ = ["VARIANT_CHOICES", "Sandbox", "Variants"]
