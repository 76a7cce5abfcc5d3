"""The coordinator: one process that hears what every storing process stored, and ends studies.

It reads the events workers publish (:mod:`storescpd.events`), feeds them to the end-of-study
state machine (:mod:`storescpd.eostudy`) and carries out what ends a study: ``-rns`` renames,
then the ``-xcs`` command, then the study's run is closed in the folder registry
(:mod:`storescpd.studyruns`) so that the study, if it comes back, starts a new run.

Crash safety. The master restarts a coordinator that dies. Events stay in the queue until the
coordinator has written its journal (``<od>/.storescpd-studies/coordinator.json``: the state
machine, the queue position each event slot has been applied up to, and the ends of studies
not yet carried out), so a restarted coordinator re-reads exactly what it had not yet made its
own, skips what it had, and finishes half-done ends: renames are recorded before the command
runs, and the command is recorded as started before it is started. So no end of study whose
objects were all acknowledged is lost, and none runs twice — except that a crash in the
instant between recording a command and starting it loses that one command rather than risk
running it twice. The journal also outlives a restart of the whole server: open studies carry
on where they were.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import time
from types import FrameType
from typing import Any

from storescpd import hooks
from storescpd.access import host_name
from storescpd.eostudy import Closed, Event, Opened, Stored, StudyEnded, Tracker
from storescpd.events import EventQueue, Record
from storescpd.exitcodes import ExitCode
from storescpd.fsio import AtomicFile
from storescpd.options import Options
from storescpd.proctitle import set_title
from storescpd.studydirs import rename_for_study
from storescpd.studyruns import REGISTRY, StudyRuns

log = logging.getLogger(__name__)

JOURNAL = "coordinator.json"
IDLE_WAKE = 1.0  # seconds: look at the stop flag and at lost wake-ups this often


def decode(event: dict[str, Any]) -> Event | None:
    """An event as published by :func:`storescpd.worker.acceptor` (JSON) → the state machine's."""
    kind = event.get("kind")
    sender = tuple(event.get("sender", ("", "")))
    if kind == "stored":
        return Stored(
            event["study"], (sender[0], sender[1]), event["called"], event["association"],
            event["path"], event.get("folder", ""),
        )  # fmt: skip
    if kind == "opened":
        return Opened(event["association"], (sender[0], sender[1]), event["called"])
    if kind == "closed":
        return Closed(event["association"])
    return None


class Coordinator:
    """Runs in its own process (a companion of the master); see the module docstring.

    Parameters
    ----------
    opts : Options
        The server's options (``-rns``, ``-xcs``, ``-tos``, ``-od``, process mode).
    queue : EventQueue
        Made by the master before it forked anyone.
    generation : str
        Names this run of the server: journal positions only count within one.
    """

    def __init__(self, opts: Options, queue: EventQueue, generation: str) -> None:
        self.opts = opts
        self.queue = queue
        self.generation = generation
        self.runs = StudyRuns(opts.output_directory)
        self.journal_path = os.path.join(self.runs.path, JOURNAL)
        timeout = None if opts.eostudy_timeout is None else float(opts.eostudy_timeout)
        self.tracker = Tracker(timeout, per_sender=bool(opts.fork or opts.workers))
        self.applied: dict[int, int] = {}  # slot -> first position not yet applied
        self.pending: list[dict[str, Any]] = []  # ends of studies not yet carried out
        self.hooks = hooks.Runner(wait=opts.exec_sync)
        self.stopping = False
        self._shown = -1

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._load()
        self._carry_out()
        while True:
            records = self.queue.get(self._wait())
            changed = self._apply(records)
            ended = self.tracker.tick(time.time())
            if ended or changed:
                self._record(ended)
                self._save()
            if records:
                self.queue.ack(records)
            self._carry_out()
            self.hooks.reap()
            self._show()
            if self.stopping and not records and not self.queue.pending():
                break
        self._save()
        return ExitCode.OK

    def _show(self) -> None:
        """``storescpd: coordinator [2 studies open]`` in ps (set only when it changes)."""
        count = len(self.tracker.runs)
        if count != self._shown:
            self._shown = count
            set_title(f"coordinator [{count} {'study' if count == 1 else 'studies'} open]")

    def _on_term(self, signo: int, frame: FrameType | None) -> None:
        self.stopping = True  # finish what is queued, then leave

    def _wait(self) -> float:
        deadline = self.tracker.next_deadline()
        wait = IDLE_WAKE if deadline is None else deadline - time.time()
        return min(max(wait, 0.0), IDLE_WAKE)

    def _apply(self, records: list[Record]) -> bool:
        changed = False
        for record in records:
            if record.position < self.applied.get(record.slot, 0):
                continue  # made ours before a restart
            self.applied[record.slot] = record.position + 1
            changed = True
            event = decode(record.event)
            if event is None:
                log.error("coordinator: unknown event %r ignored", record.event)
                continue
            if isinstance(event, Stored):
                log.debug("coordinator: %s stored %s", event.sender[0], event.path)
            self._record(self.tracker.feed(event, time.time()))
        return changed

    def _record(self, ended: list[StudyEnded]) -> None:
        for end in ended:
            log.info("end of study %s (%s): %d objects", end.study, end.reason, len(end.files))
            self.pending.append({**dataclasses.asdict(end), "renamed": False, "started": False})

    # --- carrying out ---------------------------------------------------------------------

    def _carry_out(self) -> None:
        while self.pending:
            end = self.pending[0]
            folder = os.path.join(self.opts.output_directory, end["folder"])
            if self.opts.rename_on_eostudy and not end["renamed"]:
                end["files"] = rename_for_study(folder, end["files"], self.opts.timenames)
                end["renamed"] = True
                self._save()
            command = self.opts.exec_on_eostudy
            if command and not end["started"]:
                end["started"] = True
                self._save()
                self.hooks.run(command, self._values(end, folder))
            self.runs.close_run(end["study"], end["folder"])
            self.pending.pop(0)
            self._save()

    def _values(self, end: dict[str, Any], folder: str) -> dict[str, str]:
        """``-xcs`` placeholders: #p the study's folder; #a #c #r the association current when
        the end was detected; #f is left alone, as DCMTK does."""
        calling, host = end["sender"]
        name = None if self.opts.disable_host_lookup or not host else host_name(host)
        return {"p": folder, "a": calling, "c": end["called"], "r": hooks.host_part(name or host)}

    # --- journal --------------------------------------------------------------------------

    def _save(self) -> None:
        state = {
            "generation": self.generation,
            "applied": {str(k): v for k, v in self.applied.items()},
            "tracker": self.tracker.to_json(),
            "pending": self.pending,
        }
        os.makedirs(self.runs.path, exist_ok=True)
        with AtomicFile(self.journal_path, sync=not self.opts.no_sync) as journal:
            assert journal.file is not None
            journal.file.write(json.dumps(state).encode())
            journal.commit()

    def _load(self) -> None:
        try:
            with open(self.journal_path, "rb") as f:
                state = json.load(f)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            log.error("coordinator: cannot read %s, starting afresh: %s", self.journal_path, err)
            return
        self.tracker = Tracker.from_json(state["tracker"])
        self.tracker.timeout = (
            None if self.opts.eostudy_timeout is None else float(self.opts.eostudy_timeout)
        )
        self.pending = state.get("pending", [])
        if state.get("generation") == self.generation:
            self.applied = {int(k): v for k, v in state["applied"].items()}
        else:  # a new server: its queue starts empty; associations of the old one are gone
            self.tracker.open.clear()
            for run in self.tracker.runs.values():
                run.carriers.clear()
        log.info("coordinator: resumed %d open studies", len(self.tracker.runs))


def run_coordinator(opts: Options, queue: EventQueue, generation: str) -> int:
    """Entry point of the coordinator process (a companion forked by the master)."""
    try:
        os.makedirs(os.path.join(opts.output_directory, REGISTRY), exist_ok=True)
    except OSError as err:
        log.critical("coordinator cannot start: %s", err)
        return ExitCode.BOOT_FAILED
    return Coordinator(opts, queue, generation).run()
