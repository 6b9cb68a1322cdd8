"""Engine tests: the real steps and the real database (SQLite), fake Graph/Key Vault/Entra.

The world they run in is ``tests/support/world.py``.
"""

from tests.support.world import world

__all__ = ["world"]
