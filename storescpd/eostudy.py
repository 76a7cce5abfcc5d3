"""When is a study complete? A pure state machine: events and a clock in, ends of studies out.

A *run* of a study is what one end of study closes: the objects of the study received since
its previous end (or ever). Every run ends exactly once, unless the server stops first (DCMTK
never ends the study open at shutdown either).

Two rule sets (SPEC §7.3, issue 4):

* ``per_sender=False`` — DCMTK's single process. The previous object's study ends when an
  object of another study arrives, whoever sends it; and when ``timeout`` seconds pass without
  a new association or object, even while an association stays open.
* ``per_sender=True`` — ``--fork`` and the pool, where several senders interleave. "The next
  object" is taken per sender (calling AE title and host), so two modalities sending at once do
  not end each other's studies; a study is never ended while an open association carries it
  (has stored an object of it and is not closed yet); the timeout counts per study, from its
  last object. One study spread over several associations, one after the other, stays one run
  as long as the pauses between them are shorter than the timeout.

Feed events with :meth:`Tracker.feed`, call :meth:`Tracker.tick` when :meth:`next_deadline`
has passed; both return the :class:`StudyEnded` actions to carry out. ``timeout`` 0 is allowed:
a run then ends at the first tick after its last object, and the deadline never lies in the
past once nothing is due, so a loop sleeping until it never spins.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

Sender = tuple[str, str]  # (calling AE title, peer host)


@dataclass(frozen=True)
class Stored:
    """An object was stored (the file exists under ``path``)."""

    study: str
    sender: Sender
    called: str
    association: str
    path: str
    folder: str = ""  # the study folder, "" without sort options


@dataclass(frozen=True)
class Opened:
    association: str
    sender: Sender
    called: str


@dataclass(frozen=True)
class Closed:
    """An association was released or aborted."""

    association: str


Event = Stored | Opened | Closed


@dataclass(frozen=True)
class StudyEnded:
    study: str
    folder: str
    files: tuple[str, ...]  # in reception order
    sender: Sender  # the association current when the end was detected (#a, #r)
    called: str  # (#c)
    reason: str  # "next-study" | "timeout"


@dataclass
class _Run:
    study: str
    folder: str
    files: list[str] = field(default_factory=list)
    last_object: float = 0.0
    carriers: set[str] = field(default_factory=set)  # open associations that stored into it
    superseded: bool = False  # its sender has moved on to another study (per sender)
    sender: Sender = ("", "")
    called: str = ""


class Tracker:
    """The open study runs and what ends them."""

    def __init__(self, timeout: float | None, per_sender: bool) -> None:
        self.timeout = timeout
        self.per_sender = per_sender
        self.runs: dict[str, _Run] = {}
        self.current: dict[Sender, str] = {}  # each sender's (or everybody's) latest study
        self.open: dict[str, tuple[Sender, str]] = {}  # association -> (sender, called)
        self.last_activity = 0.0  # single-process rule: any association or object
        self.last_association: tuple[Sender, str] = (("", ""), "")

    # --- events ---------------------------------------------------------------------------

    def feed(self, event: Event, now: float) -> list[StudyEnded]:
        if isinstance(event, Opened):
            self.open[event.association] = (event.sender, event.called)
            self.last_association = (event.sender, event.called)
            self.last_activity = now
            return []
        if isinstance(event, Closed):
            self.open.pop(event.association, None)
            for run in self.runs.values():
                run.carriers.discard(event.association)
            return self._end_superseded("next-study") if self.per_sender else []
        return self._stored(event, now)

    def _stored(self, event: Stored, now: float) -> list[StudyEnded]:
        ended: list[StudyEnded] = []
        key = event.sender if self.per_sender else ("", "")
        previous = self.current.get(key)
        self.current[key] = event.study
        self.last_association = (event.sender, event.called)
        self.last_activity = now
        if previous is not None and previous != event.study and previous in self.runs:
            if self.per_sender:
                self.runs[previous].superseded = True
            else:
                ended.append(self._end(previous, "next-study", event.sender, event.called))
        run = self.runs.get(event.study)
        if run is None:
            run = self.runs[event.study] = _Run(event.study, event.folder)
        run.files.append(event.path)
        run.last_object = now
        run.superseded = False
        run.sender, run.called = event.sender, event.called
        if self.per_sender:
            if event.association in self.open:
                run.carriers.add(event.association)
            ended += self._end_superseded("next-study")
        return ended

    # --- time -----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`tick` may next end a run (None: only an event can)."""
        if self.timeout is None or not self.runs:
            return None
        if not self.per_sender:
            return self.last_activity + self.timeout
        due = [r.last_object + self.timeout for r in self.runs.values() if not r.carriers]
        return min(due) if due else None

    def tick(self, now: float) -> list[StudyEnded]:
        if self.timeout is None:
            return []
        if not self.per_sender:
            if self.runs and now >= self.last_activity + self.timeout:
                sender, called = self.last_association
                return [self._end(study, "timeout", sender, called) for study in list(self.runs)]
            return []
        ended = []
        for run in list(self.runs.values()):
            if not run.carriers and now >= run.last_object + self.timeout:
                ended.append(self._end(run.study, "timeout", run.sender, run.called))
        return ended

    # --- ending ---------------------------------------------------------------------------

    def _end_superseded(self, reason: str) -> list[StudyEnded]:
        ended = []
        for run in list(self.runs.values()):
            if run.superseded and not run.carriers and not self._current_elsewhere(run.study):
                ended.append(self._end(run.study, reason, run.sender, run.called))
        return ended

    def _current_elsewhere(self, study: str) -> bool:
        """Some sender's latest object belongs to ``study``: it is still arriving."""
        return study in self.current.values()

    def _end(self, study: str, reason: str, sender: Sender, called: str) -> StudyEnded:
        run = self.runs.pop(study)
        for key in [k for k, s in self.current.items() if s == study]:
            del self.current[key]
        return StudyEnded(study, run.folder, tuple(run.files), sender, called, reason)

    def open_studies(self) -> set[str]:
        return set(self.runs)

    # --- the coordinator's journal --------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "timeout": self.timeout,
            "per_sender": self.per_sender,
            "runs": [
                {**dataclasses.asdict(r), "carriers": sorted(r.carriers)}
                for r in self.runs.values()
            ],
            "current": [[list(k), v] for k, v in self.current.items()],
            "open": [[a, list(s), c] for a, (s, c) in self.open.items()],
            "last_activity": self.last_activity,
            "last_association": [list(self.last_association[0]), self.last_association[1]],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tracker:
        tracker = cls(data["timeout"], data["per_sender"])
        for r in data["runs"]:
            run = _Run(
                r["study"], r["folder"], list(r["files"]), r["last_object"],
                set(r["carriers"]), r["superseded"], (r["sender"][0], r["sender"][1]),
                r["called"],
            )  # fmt: skip
            tracker.runs[run.study] = run
        tracker.current = {(k[0], k[1]): v for k, v in data["current"]}
        tracker.open = {a: ((s[0], s[1]), c) for a, s, c in data["open"]}
        tracker.last_activity = data["last_activity"]
        sender, called = data["last_association"]
        tracker.last_association = ((sender[0], sender[1]), called)
        return tracker
