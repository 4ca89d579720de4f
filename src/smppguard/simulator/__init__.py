"""The built-in SMSC simulator: a peer of the proxy (the default upstream), not part of it."""

from .smsc import Simulator

__all__ = ["Simulator"]
