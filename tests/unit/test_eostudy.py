"""End of study: DCMTK's single-process rules and the per-sender rules of --fork and the pool."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from storescpd.eostudy import Closed, Opened, Stored, StudyEnded, Tracker

X = ("CT_A", "10.0.0.1")
Y = ("MR_B", "10.0.0.2")


def stored(study: str, n: int, sender=X, assoc: str = "a1") -> Stored:
    return Stored(study, sender, "SCP", assoc, f"/od/{study}/{n}", f"/od/{study}")


def ends(results: list[StudyEnded]) -> list[tuple[str, tuple[str, ...], str]]:
    return [(e.study, tuple(p.rsplit("/", 1)[1] for p in e.files), e.reason) for e in results]


# --- single process (DCMTK) -----------------------------------------------------------------


def test_single_next_study_ends_the_previous_with_the_new_sender() -> None:
    t = Tracker(timeout=None, per_sender=False)
    t.feed(Opened("a1", X, "SCP"), 0)
    assert t.feed(stored("A", 1), 1) == []
    assert t.feed(stored("A", 2), 2) == []
    (ended,) = t.feed(stored("B", 1, sender=Y, assoc="a2"), 3)
    assert ends([ended]) == [("A", ("1", "2"), "next-study")]
    assert ended.sender == Y and ended.folder == "/od/A"
    assert t.tick(10**9) == []  # no timeout: B stays open
    assert t.next_deadline() is None


def test_single_a_returning_study_is_a_new_run() -> None:
    t = Tracker(timeout=None, per_sender=False)
    t.feed(stored("A", 1), 1)
    t.feed(stored("B", 1), 2)
    assert ends(t.feed(stored("A", 2), 3)) == [("B", ("1",), "next-study")]
    assert ends(t.feed(stored("C", 1), 4)) == [("A", ("2",), "next-study")]


def test_single_timeout_counts_from_the_last_object_or_association() -> None:
    t = Tracker(timeout=5, per_sender=False)
    t.feed(stored("A", 1), 10)
    assert t.next_deadline() == 15
    assert t.tick(14.9) == []
    t.feed(Opened("a2", Y, "SCP"), 14)  # a new association counts as activity
    assert t.tick(15) == []
    (ended,) = t.tick(19)
    assert (ended.reason, ended.sender) == ("timeout", Y)
    assert t.next_deadline() is None  # nothing open: sleep until an event
    assert ends(t.feed(stored("A", 2), 30)) == []  # the same study again: a new run
    assert ends(t.tick(35)) == [("A", ("2",), "timeout")]


def test_single_timeout_ends_even_with_the_association_open() -> None:
    t = Tracker(timeout=1, per_sender=False)
    t.feed(Opened("a1", X, "SCP"), 0)
    t.feed(stored("A", 1), 0)
    assert ends(t.tick(1)) == [("A", ("1",), "timeout")]


def test_timeout_zero_ends_at_the_next_tick_and_then_waits_for_events() -> None:
    t = Tracker(timeout=0, per_sender=False)
    t.feed(stored("A", 1), 7)
    assert t.next_deadline() == 7
    assert ends(t.tick(7)) == [("A", ("1",), "timeout")]
    assert t.next_deadline() is None


# --- per sender (fork, pool) ----------------------------------------------------------------


def test_interleaved_senders_do_not_end_each_other() -> None:
    t = Tracker(timeout=10, per_sender=True)
    t.feed(Opened("a1", X, "SCP"), 0)
    t.feed(Opened("a2", Y, "SCP"), 0)
    for n in range(3):
        assert t.feed(stored("A", n, X, "a1"), n) == []
        assert t.feed(stored("B", n, Y, "a2"), n) == []
    assert t.feed(Closed("a1"), 3) == [] and t.feed(Closed("a2"), 3) == []
    assert t.tick(11.9) == []
    assert ends(t.tick(12)) == [
        ("A", ("0", "1", "2"), "timeout"),
        ("B", ("0", "1", "2"), "timeout"),
    ]


def test_a_study_over_three_associations_is_one_run() -> None:
    t = Tracker(timeout=5, per_sender=True)
    results = []
    for n, assoc in enumerate(("a1", "a2", "a3")):
        results += t.feed(Opened(assoc, X, "SCP"), n)
        results += t.feed(stored("A", n, X, assoc), n)
        results += t.feed(Closed(assoc), n + 0.5)
        results += t.tick(n + 0.9)
    assert results == []
    assert ends(t.tick(100)) == [("A", ("0", "1", "2"), "timeout")]


def test_never_ended_while_an_open_association_carries_it() -> None:
    t = Tracker(timeout=1, per_sender=True)
    t.feed(Opened("a1", X, "SCP"), 0)
    t.feed(stored("A", 1, X, "a1"), 0)
    assert t.next_deadline() is None and t.tick(100) == []
    # The sender moves on to B in another association: A is still carried by a1.
    t.feed(Opened("a2", X, "SCP"), 1)
    assert t.feed(stored("B", 1, X, "a2"), 1) == []
    assert ends(t.feed(Closed("a1"), 2)) == [("A", ("1",), "next-study")]


def test_next_study_of_the_same_sender_ends_the_previous_once_uncarried() -> None:
    t = Tracker(timeout=None, per_sender=True)
    t.feed(Opened("a1", X, "SCP"), 0)
    t.feed(stored("A", 1, X, "a1"), 0)
    t.feed(Closed("a1"), 1)
    t.feed(Opened("a2", X, "SCP"), 2)
    (ended,) = t.feed(stored("B", 1, X, "a2"), 2)
    assert (ended.study, ended.reason, ended.files) == ("A", "next-study", ("/od/A/1",))


def test_duplicates_are_recorded_per_reception() -> None:
    t = Tracker(timeout=0, per_sender=False)
    t.feed(stored("A", 1), 0)
    t.feed(stored("A", 1), 0)
    assert ends(t.tick(0)) == [("A", ("1", "1"), "timeout")]


def test_the_journal_round_trips() -> None:
    t = Tracker(timeout=3, per_sender=True)
    t.feed(Opened("a1", X, "SCP"), 0)
    t.feed(stored("A", 1, X, "a1"), 0)
    t.feed(stored("B", 1, Y, "a9"), 1)
    copy = Tracker.from_json(json.loads(json.dumps(t.to_json())))
    assert copy.to_json() == t.to_json()
    assert ends(copy.feed(Closed("a1"), 2)) == ends(t.feed(Closed("a1"), 2))
    assert ends(copy.tick(10)) == ends(t.tick(10))


# --- properties -----------------------------------------------------------------------------

EVENTS = st.lists(
    st.one_of(
        st.tuples(st.just("stored"), st.sampled_from("ABC"), st.sampled_from([X, Y]),
                  st.sampled_from(["a1", "a2", "a3"])),
        st.tuples(st.just("open"), st.sampled_from(["a1", "a2", "a3"]), st.sampled_from([X, Y])),
        st.tuples(st.just("close"), st.sampled_from(["a1", "a2", "a3"])),
        st.tuples(st.just("tick"), st.floats(0, 20)),
    ),
    max_size=40,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(EVENTS, st.booleans(), st.sampled_from([None, 0, 2]))
def test_every_object_ends_exactly_once_or_stays_open(events, per_sender, timeout) -> None:
    t = Tracker(timeout=timeout, per_sender=per_sender)
    now, n = 0.0, 0
    sent: list[str] = []
    finished: list[str] = []
    for event in events:
        now += 0.5
        if event[0] == "stored":
            n += 1
            sent.append(f"/od/{event[1]}/{n}")
            ended = t.feed(stored(event[1], n, event[2], event[3]), now)
        elif event[0] == "open":
            ended = t.feed(Opened(event[1], event[2], "SCP"), now)
        elif event[0] == "close":
            ended = t.feed(Closed(event[1]), now)
        else:
            now += event[1]
            ended = t.tick(now)
        for e in ended:
            assert e.files and all(p.startswith(f"/od/{e.study}/") for p in e.files)
            finished += e.files
        deadline = t.next_deadline()
        assert deadline is None or timeout is not None
    still_open = [p for run in t.runs.values() for p in run.files]
    assert sorted(finished + still_open) == sorted(sent)  # none lost, none twice
