"""The package's version, read by the build backend and sent as the User-Agent."""

__version__ = "0.1.0"
