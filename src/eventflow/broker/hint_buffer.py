"""A worker's hints read from the stream: which to claim next, and which entries are done.

Pure bookkeeping, no Redis: the broker reads entries, hands what they hold to this buffer, and
acknowledges the entries the buffer answers as finished.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Sequence

from eventflow.broker.keys import IDS_FIELD, IDS_PER_ENTRY
from eventflow.ids import parse_id

#: A stream entry as read: its id and its fields (None for an entry deleted while pending).
Entry = tuple[str, dict[str, str] | None]
#: One hint: an event id and the id of the entry that carried it.
Hint = tuple[str, str]

_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# What the broker publishes: canonical ids (str(UUID)), comma-separated.
_CANONICAL_IDS = re.compile(f"{_UUID}(?:,{_UUID})*")


class HintBuffer:
    """Hints read but not yet claimed, and what each entry read still waits for.

    An entry carries many hints; it is finished, and may be acknowledged, once every one of its
    hints is settled (its event was claimed and its outcome written) or spent (a copy, an event
    done or running elsewhere, a hint handed back to the stream).
    """

    def __init__(self) -> None:
        # Hints read but not yet claimed, oldest first.
        self._ready: deque[Hint] = deque()
        # For each entry read: how many of its hints are not yet settled or spent.
        self._outstanding: dict[str, int] = {}
        # The entry behind each event this process holds, finished on settle.
        self._held: dict[str, str] = {}
        # Hints per entry in the last read, to size the next read.
        self._ids_per_entry = float(IDS_PER_ENTRY)

    def __len__(self) -> int:
        """Hints read but not yet claimed."""
        return len(self._ready)

    def entries_for(self, hints: int) -> int:
        """How many entries to read for about ``hints`` hints, judging by the last read."""
        return max(1, min(hints, math.ceil(hints / self._ids_per_entry)))

    def is_reading(self, entry_id: str) -> bool:
        """Whether some hint of ``entry_id`` is still buffered or held here."""
        return entry_id in self._outstanding

    def take_in(self, entries: Sequence[Entry]) -> tuple[int, list[str]]:
        """Buffer the hints of read entries: how many, and the entries with none usable."""
        unusable: list[str] = []
        before = len(self._ready)
        for entry_id, fields in entries:
            ids = hint_ids(fields)
            if not ids:
                # Not ours to understand: a malformed id would fail the whole claim query.
                unusable.append(entry_id)
                continue
            self._outstanding[entry_id] = self._outstanding.get(entry_id, 0) + len(ids)
            self._ready.extend((event_id, entry_id) for event_id in ids)
        taken = len(self._ready) - before
        if entries:
            self._ids_per_entry = max(1.0, taken / len(entries))
        return taken, unusable

    def next_batch(self, limit: int) -> list[Hint]:
        """The oldest ``limit`` hints, to claim; ``put_back`` them if the claim fails."""
        return [self._ready.popleft() for _ in range(min(limit, len(self._ready)))]

    def put_back(self, hints: Sequence[Hint]) -> None:
        """Hints of ``next_batch`` that were not claimed after all, first in line again."""
        self._ready.extendleft(reversed(hints))

    def newest(self, count: int) -> list[Hint]:
        """Take the newest ``count`` hints out, oldest first, to hand back to the stream.

        Then ``handed_back`` (they are spent) or ``restore`` (handing back failed).
        """
        hints = [self._ready.pop() for _ in range(min(count, len(self._ready)))]
        hints.reverse()
        return hints

    def restore(self, hints: Sequence[Hint]) -> None:
        """Hints of ``newest`` that could not be handed back, last in line again."""
        self._ready.extend(hints)

    def handed_back(self, hints: Sequence[Hint]) -> list[str]:
        """Hints now back on the stream are spent here; answers the entries finished."""
        return self._spend([entry_id for _, entry_id in hints])

    def hold(self, by_event: dict[str, list[str]], claimed: Iterable[str]) -> list[str]:
        """After claiming the events of ``by_event`` (``hints_by_event``): those ``claimed``
        are held until settled, every other hint is spent. Answers the entries finished.

        ``by_event`` is consumed. One hint per held event is enough; copies read in the same
        batch are spent now. What the database did not hand over is done, running elsewhere,
        or not due yet (a retry's own hint will come): its hint is spent either way.
        """
        spent: list[str] = []
        for event_id in claimed:
            entry_ids = by_event.pop(event_id)
            self._held[event_id] = entry_ids[0]
            spent.extend(entry_ids[1:])
        for entry_ids in by_event.values():
            spent.extend(entry_ids)
        return self._spend(spent)

    def settle(self, event_ids: Iterable[str]) -> list[str]:
        """Held events whose outcome is written; answers the entries finished."""
        held = [entry for e in event_ids if (entry := self._held.pop(e, None)) is not None]
        return self._spend(held)

    def unclaimed(self) -> list[str]:
        """The distinct event ids of buffered hints, oldest first."""
        return event_ids(self._ready)

    def clear(self) -> None:
        self._ready.clear()
        self._outstanding.clear()
        self._held.clear()

    def _spend(self, entry_ids: Sequence[str]) -> list[str]:
        """Count one hint of each of ``entry_ids`` as done; answers the entries now finished."""
        finished: list[str] = []
        for entry_id in entry_ids:
            left = self._outstanding.get(entry_id)
            if left is None:
                continue
            if left <= 1:
                del self._outstanding[entry_id]
                finished.append(entry_id)
            else:
                self._outstanding[entry_id] = left - 1
        return finished


def hints_by_event(hints: Iterable[Hint]) -> dict[str, list[str]]:
    """The entries behind each distinct event id of ``hints``, in order."""
    found: dict[str, list[str]] = {}
    for event_id, entry_id in hints:
        found.setdefault(event_id, []).append(entry_id)
    return found


def event_ids(hints: Iterable[Hint]) -> list[str]:
    """The distinct event ids of ``hints``, in order."""
    return list(dict.fromkeys(event_id for event_id, _ in hints))


def hint_ids(fields: dict[str, str] | None) -> list[str]:
    """The well-formed event ids of an entry, in canonical form."""
    text = fields.get(IDS_FIELD) if fields else None
    if not text:
        return []
    if _CANONICAL_IDS.fullmatch(text):
        return text.split(",")
    return [i for i in map(parse_id, text.split(",")) if i is not None]
