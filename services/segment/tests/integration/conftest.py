"""The running segment service fixture (see harness.py) and the live path on PostgreSQL alone
(see live_env.py)."""

from .harness import segment  # noqa: F401
from .live_env import env  # noqa: F401
