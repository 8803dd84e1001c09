"""Event types as label values, capped: types are chosen by users, label values cost memory."""

from __future__ import annotations

#: The label value of every type beyond the cap.
OTHER = "other"
#: Distinct event types a process labels by name (docs/metrics.md).
DEFAULT_LIMIT = 100


class TypeLabels:
    """The first ``limit`` distinct types seen are their own label value; later ones ``other``.

    Each series of each per-type metric is kept for the life of the process (and in the
    Prometheus server for its retention), so an account sending events of ever new types must
    not create series without end. The cap is per process: with several processes, each keeps
    the first types it saw.
    """

    __slots__ = ("_known", "_limit")

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self._limit = limit
        self._known: set[str] = set()

    def __call__(self, event_type: str) -> str:
        known = self._known
        if event_type in known:
            return event_type
        # A user's type that happens to be spelt "other" joins the overflow rather than being
        # mistaken for a type of its own.
        if len(known) >= self._limit or event_type == OTHER:
            return OTHER
        known.add(event_type)
        return event_type
