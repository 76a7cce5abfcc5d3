"""What a serving process tells the world about its associations: events for the coordinator
(opened, stored, closed) and the ``--exec-on-reception`` command.

One :class:`Announcer` per serving process; the acceptor calls it from pynetdicom's event
handlers. Events that cannot be queued are logged and dropped after a short wait rather than
holding a C-STORE response back (the object itself is stored already).
"""

from __future__ import annotations

import logging
import os
import time
from typing import cast

from pynetdicom import evt
from pynetdicom.pdu_primitives import A_ASSOCIATE

from storescpd import hooks
from storescpd.access import host_name
from storescpd.events import EventQueue, QueueFull
from storescpd.options import Options
from storescpd.worker.store import Storage

log = logging.getLogger(__name__)

PUBLISH_WAIT = 5.0  # seconds a full ring may hold a worker (the coordinator is restarted first)


class Announcer:
    """Events for the coordinator and ``-xcr`` commands of one serving process.

    Attributes set by the process model after construction: ``events`` (the queue, when there
    is a coordinator) and ``slot`` (a pool worker's index; 0 otherwise).
    """

    def __init__(self, opts: Options, storage: Storage) -> None:
        self.opts = opts
        self.storage = storage
        self.hooks = hooks.Runner(wait=opts.exec_sync, quiet=opts.inetd)
        self.events: EventQueue | None = None
        self.slot = 0
        self._count = 0

    # --- the coordinator ------------------------------------------------------------------

    def opened(self, event: evt.Event) -> str:
        """An association was accepted; returns its id ("" when nobody listens)."""
        if self.events is None:
            return ""
        self._count += 1
        association = f"{os.getpid()}.{self._count}.{time.time():.6f}"
        self._publish({"kind": "opened", "association": association, **_who(event)})
        return association

    def stored(self, association: str, event: evt.Event) -> None:
        """The object of ``event`` was stored (call after a success status only)."""
        if not association or self.storage.last_stored is None:
            return
        study, path, folder = self.storage.last_stored
        self._publish(
            {
                "kind": "stored",
                "study": study,
                "path": path,
                "folder": folder,
                "association": association,
                **_who(event),
            }
        )

    def closed(self, association: str) -> None:
        if association:
            self._publish({"kind": "closed", "association": association})

    def _publish(self, event: dict[str, object]) -> None:
        assert self.events is not None
        slot = self.slot if self.slot < self.events.producers else 0
        shared = self.opts.fork or slot != self.slot
        try:
            self.events.put(slot, event, wait=PUBLISH_WAIT, shared=shared)
        except (QueueFull, ValueError) as err:
            log.error("end-of-study event lost: %s", err)

    # --- --exec-on-reception --------------------------------------------------------------

    def reception_values(self, event: evt.Event, peer_name: str) -> dict[str, str]:
        """The values of ``#p #f #a #c #r`` for the object just answered (SPEC §7.1)."""
        rq = cast(A_ASSOCIATE, event.assoc.requestor.primitive)
        values = {
            "a": str(rq.calling_ae_title).strip(),
            "c": str(rq.called_ae_title).strip(),
            "r": peer_name,
        }
        if not self.opts.ignore:  # DCMTK leaves #p and #f alone with --ignore
            folder = self.storage.last_folder if self.opts.sort else ""
            values["p"] = folder or self.opts.output_directory.rstrip("/") or "/"
            values["f"] = os.path.basename(self.storage.last_path)
        return values

    def peer_name(self, address: str) -> str:
        """``#r``: the peer's host name up to its first dot, or its address with ``-dhl``."""
        name = None if self.opts.disable_host_lookup else host_name(address)
        return hooks.host_part(name or address)

    def run_reception_command(self, values: dict[str, str]) -> None:
        if self.opts.exec_on_reception:
            self.hooks.run(self.opts.exec_on_reception, values)


def _who(event: evt.Event) -> dict[str, object]:
    """Calling AE title and host, and called AE title, as the coordinator's events carry them."""
    rq = cast(A_ASSOCIATE, event.assoc.requestor.primitive)
    calling = str(rq.calling_ae_title).strip()
    return {"sender": [calling, str(event.assoc.requestor.address)],
            "called": str(rq.called_ae_title).strip()}  # fmt: skip
