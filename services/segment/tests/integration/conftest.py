"""The running segment service fixture (see harness.py)."""

from .harness import segment  # noqa: F401
