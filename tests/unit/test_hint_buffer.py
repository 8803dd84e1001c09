"""The worker's hint buffer: what is claimed next, what goes back, when an entry is done."""

from __future__ import annotations

from eventflow.broker.hint_buffer import HintBuffer, event_ids, hint_ids, hints_by_event
from eventflow.broker.keys import IDS_FIELD

A, B, C, D = (f"01900000-0000-7000-8000-00000000000{n}" for n in range(1, 5))


def entry(entry_id: str, *ids: str) -> tuple[str, dict[str, str]]:
    return entry_id, {IDS_FIELD: ",".join(ids)}


def claim(buffer: HintBuffer, limit: int, claimed: set[str]) -> list[str]:
    """What the broker does around the database's claim; answers the entries finished."""
    by_event = hints_by_event(buffer.next_batch(limit))
    return buffer.hold(by_event, [e for e in by_event if e in claimed])


def test_hints_are_claimed_oldest_first_and_the_rest_wait() -> None:
    buffer = HintBuffer()
    assert buffer.take_in([entry("1-0", A, B), entry("2-0", C)]) == (3, [])
    assert len(buffer) == 3
    assert [event for event, _ in buffer.next_batch(2)] == [A, B]
    assert buffer.unclaimed() == [C]


def test_an_entry_is_finished_only_when_every_hint_of_it_is_settled() -> None:
    buffer = HintBuffer()
    buffer.take_in([entry("1-0", A, B)])
    assert claim(buffer, 10, {A, B}) == []
    assert buffer.is_reading("1-0")
    assert buffer.settle([A]) == []
    assert buffer.settle([B]) == ["1-0"]
    assert not buffer.is_reading("1-0")
    # Settling twice, or an event this buffer never held, finishes nothing.
    assert buffer.settle([A, B, C]) == []


def test_hints_the_database_did_not_hand_over_are_spent_at_once() -> None:
    buffer = HintBuffer()
    buffer.take_in([entry("1-0", A, B), entry("2-0", C)])
    # B is done or running elsewhere, C not due: only A is held.
    assert claim(buffer, 10, {A}) == ["2-0"]
    assert buffer.settle([A]) == ["1-0"]


def test_a_copy_read_in_the_same_batch_is_spent_and_one_hint_is_held() -> None:
    buffer = HintBuffer()
    buffer.take_in([entry("1-0", A), entry("2-0", A, B)])
    # The copy of A in 2-0 is spent, but 2-0 still carries B, which is held.
    assert claim(buffer, 10, {A, B}) == []
    assert buffer.settle([A]) == ["1-0"]
    assert buffer.settle([B]) == ["2-0"]


def test_a_failed_claim_puts_its_hints_first_in_line_again() -> None:
    buffer = HintBuffer()
    buffer.take_in([entry("1-0", A, B, C)])
    batch = buffer.next_batch(2)
    buffer.put_back(batch)
    assert buffer.unclaimed() == [A, B, C]


def test_surplus_goes_back_newest_first_and_is_spent_once_handed_back() -> None:
    buffer = HintBuffer()
    buffer.take_in([entry("1-0", A, B), entry("2-0", C, D)])
    surplus = buffer.newest(2)
    assert surplus == [(C, "2-0"), (D, "2-0")]
    assert buffer.unclaimed() == [A, B]
    assert buffer.handed_back(surplus) == ["2-0"]
    assert not buffer.is_reading("2-0")


def test_surplus_that_could_not_be_handed_back_is_kept() -> None:
    buffer = HintBuffer()
    buffer.take_in([entry("1-0", A, B, C)])
    buffer.restore(buffer.newest(2))
    assert buffer.unclaimed() == [A, B, C]
    assert buffer.is_reading("1-0")


def test_entries_without_a_usable_id_are_answered_as_unusable() -> None:
    buffer = HintBuffer()
    taken, unusable = buffer.take_in(
        [("1-0", {IDS_FIELD: "not-an-id"}), ("2-0", {"other": "x"}), ("3-0", None), entry("4-0", A)]
    )
    assert (taken, unusable) == (1, ["1-0", "2-0", "3-0"])
    assert buffer.unclaimed() == [A]


def test_ids_are_read_in_canonical_form_and_malformed_ones_skipped() -> None:
    assert hint_ids({IDS_FIELD: f"{A},{B}"}) == [A, B]
    assert hint_ids({IDS_FIELD: f"{A.replace('-', '').upper()},junk,{B}"}) == [A, B]
    assert hint_ids({IDS_FIELD: ""}) == []


def test_reads_are_sized_by_the_hints_per_entry_last_seen() -> None:
    buffer = HintBuffer()
    assert buffer.entries_for(1000) == 2  # before any read: a full entry's worth
    buffer.take_in([entry("1-0", A, B), entry("2-0", C, D)])
    assert buffer.entries_for(10) == 5
    assert buffer.entries_for(1) == 1


def test_clear_forgets_everything() -> None:
    buffer = HintBuffer()
    buffer.take_in([entry("1-0", A)])
    claim(buffer, 1, {A})
    buffer.take_in([entry("2-0", B)])
    buffer.clear()
    assert len(buffer) == 0
    assert buffer.settle([A]) == []
    assert not buffer.is_reading("2-0")


def test_event_ids_are_distinct_and_in_order() -> None:
    assert event_ids([(B, "1-0"), (A, "1-0"), (B, "2-0")]) == [B, A]
    assert hints_by_event([(B, "1-0"), (A, "1-0"), (B, "2-0")]) == {B: ["1-0", "2-0"], A: ["1-0"]}
