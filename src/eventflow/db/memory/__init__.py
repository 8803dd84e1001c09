"""In-memory stores for unit tests: the same protocols and transitions as the SQL stores."""

from eventflow.db.memory.events import MemoryEvents
from eventflow.db.memory.keys import MemoryKeys
from eventflow.db.memory.users import MemoryUsers

__all__ = ["MemoryEvents", "MemoryKeys", "MemoryUsers"]
