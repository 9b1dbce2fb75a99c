"""A local emulator of Runflow's public API for the Multi Angles model: free, offline, scriptable."""

from .server import Sandbox

__all__ = ["Sandbox"]
