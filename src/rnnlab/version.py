"""rnnlab's version: the one written in pyproject.toml, as the installed package reports it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rnnlab")
except PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"
