"""physkit: shared core (events, optimal transport, gradient flows, scale-out)."""
__version__ = "0.1.0"
