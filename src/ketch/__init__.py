"""ketch: a Docker-compatible container platform."""

__version__ = "0.1.0"
