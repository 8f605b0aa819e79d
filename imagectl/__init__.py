"""imagectl: maintain container base images incrementally and append-only."""

__version__ = "0.1.0"
