"""Event-driven loops for pynetdicom's two per-association threads.

pynetdicom 3.0's DUL thread and Association thread each poll with a ~1 ms sleep, so every
C-STORE waits for up to three polls (request in, handler, response out) and an idle association
burns CPU (PYNETDICOM.md §4.3). :func:`make_event_driven` converts a freshly created acceptor
``Association`` (before its thread starts) so that

* the DUL thread blocks in ``poll()`` on the socket and on a wake-up pipe that every put into
  its event and provider queues writes to (puts come from the Association thread: responses,
  A-ABORT, A-RELEASE-RP, connection close);
* the Association thread blocks on an event that every put into the DIMSE message queue and the
  DUL's user queue sets, and that the DUL thread sets when it ends.

Both waits still wake on a short deadline so pynetdicom's ARTIM and idle timers keep firing.
The loops keep pynetdicom's order of work (its state machine, PDU codec, DIMSE and ACSE
providers and event API do all the DICOM); only the waiting differs. They rely on pynetdicom
3.0 internals (``run_reactor``, ``_run_reactor``, ``_process_recv_primitive``,
``_is_transport_event``, the queues), so :func:`supported` checks they are there and the
acceptor falls back to stock pynetdicom otherwise.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import queue
import select
import struct
import tempfile
import threading
from typing import Any, BinaryIO

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket

from storescpd.worker.responses import C_ECHO_RSP, C_STORE_RSP, encode_response

log = logging.getLogger(__name__)
# The lines pynetdicom's own loop logs, under its name, as before.
_PYNETDICOM_LOG = logging.getLogger("pynetdicom.association")

LONGEST_WAIT = 0.2
"""Seconds a loop sleeps at most without a wake-up, so no timer is missed by more than that."""

_NEEDED = (
    (DULServiceProvider, ("run_reactor", "_process_recv_primitive", "_is_transport_event")),
    (Association, ("_run_reactor", "kill")),
    (DIMSEServiceProvider, ("send_msg", "maximum_pdu_size", "receive_primitive")),
    (DIMSEMessage, ("decode_msg",)),
    (AssociationSocket, ("recv",)),
)


def supported() -> bool:
    """True when the installed pynetdicom has the internals these loops drive."""
    return all(hasattr(cls, name) for cls, names in _NEEDED for name in names)


class _WakingQueue(queue.Queue[Any]):
    """A queue whose every put also calls ``wake``."""

    def __init__(self, wake: Any, items: Any = ()) -> None:
        super().__init__()
        self.queue.extend(items)
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self._wake()


class _Doorbell:
    """A self-pipe: ``ring`` from any thread wakes a ``poll()`` on :attr:`fd`."""

    def __init__(self) -> None:
        self.fd, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def ring(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):  # a full pipe already rings
            os.write(self._w, b"\0")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self.fd, 512):
                pass

    def close(self) -> None:
        for fd in (self.fd, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)


class EventDrivenDUL(DULServiceProvider):
    """The DUL thread: waits on the socket and the doorbell instead of sleeping."""

    doorbell: _Doorbell
    wake_user: threading.Event

    def run(self) -> None:
        # pynetdicom made the thread with target=<its own run_reactor>, bound before the swap.
        self.run_reactor()

    def run_reactor(self) -> None:
        try:
            self._serve_events()
        finally:
            self.wake_user.set()  # the Association thread notices the DUL has gone

    def kill_dul(self) -> None:
        super().kill_dul()
        self.doorbell.ring()

    def stop_dul(self) -> bool:
        """Stop the thread if the connection is closed (Sta1): True once it has stopped."""
        if self.state_machine.current_state != "Sta1":
            return False
        self.kill_dul()
        if threading.current_thread() is not self and self.is_alive():
            self.join()
        return True

    def _serve_events(self) -> None:
        self._idle_timer.start()
        poller = select.poll()
        poller.register(self.doorbell.fd, select.POLLIN)
        watched = -1
        while True:
            if not self.assoc._dul_ready.is_set():
                self.assoc._dul_ready.set()
            if self._kill_thread:
                return
            if self.artim_timer.expired:
                self.event_queue.put("Evt18")
            try:
                # One primitive to encode and send, or else one PDU received, per turn.
                if self._process_recv_primitive():
                    pass
                elif self._is_transport_event():
                    self._idle_timer.restart()
            except Exception:
                log.exception("DUL failure, aborting the association")
                self._abort_hard()
                return
            try:
                event = self.event_queue.get(block=False)
            except queue.Empty:
                watched = self._wait(poller, watched)
                continue
            self.state_machine.do_action(event)
            if not self.wake_user.is_set():  # set and not yet cleared: it will look anyway
                self.wake_user.set()

    def _wait(self, poller: select.poll, watched: int) -> int:
        """Block until the peer sends, a queue is fed, or the next timer check is due."""
        sock = getattr(self.socket, "socket", None)
        fd = sock.fileno() if sock is not None else -1
        if fd != watched:
            if watched >= 0:
                with contextlib.suppress(KeyError):
                    poller.unregister(watched)
            if fd >= 0:
                poller.register(fd, select.POLLIN | select.POLLPRI)
            watched = fd
        pending = getattr(sock, "pending", None)
        if pending is not None and pending():
            return watched  # TLS has decrypted bytes select() cannot see
        if not self.to_provider_queue.empty() or not self.event_queue.empty():
            return watched
        timeout = LONGEST_WAIT
        if self.artim_timer._start_time is not None and self.artim_timer._end_time is None:
            timeout = max(0.0, min(timeout, self.artim_timer.remaining))
        for ready, mask in poller.poll(timeout * 1000):
            if ready == self.doorbell.fd:
                # Emptied before the queues are looked at again: a later put rings anew.
                self.doorbell.drain()
            elif mask & select.POLLNVAL:
                # Closed under us: stop watching, the DUL learns of it from the socket object.
                poller.unregister(fd)
                watched = -1
        return watched

    def _abort_hard(self) -> None:
        # As pynetdicom does: bypass the state machine, whose state can no longer be trusted.
        pdu = A_ABORT_RQ()
        pdu.source = 0x02
        pdu.reason_diagnostic = 0x00
        with contextlib.suppress(Exception):
            if self.socket is not None:
                self.socket.send(pdu.encode())
        self.assoc.is_aborted = True
        self.assoc.is_established = False
        self.assoc._kill = True
        self._kill_thread = True


class EventDrivenAssociation(Association):
    """The Association thread: waits for a message or a primitive instead of sleeping."""

    wake_user: threading.Event
    doorbell: _Doorbell

    def kill(self) -> None:
        """End both threads' loops; returns once the DUL thread has stopped."""
        self._reactor_checkpoint.set()
        self._kill = True
        self.is_established = False
        self._is_paused = True
        wake = self.wake_user
        wake.set()
        dul = self.dul
        while dul.is_alive():
            wake.clear()  # the DUL sets it after each state change
            if dul.stop_dul():
                return
            wake.wait(LONGEST_WAIT)

    def _run_reactor(self) -> None:
        self._is_paused = False
        wake = self.wake_user
        while not self._kill:
            # Cleared before the queues are looked at, so a put after the look sets it again.
            wake.clear()
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False
            if self._serve_one():
                return
            if not self._kill and self.dimse.msg_queue.empty():
                wake.wait(self._next_check())

    def _next_check(self) -> float:
        remaining = self.dul._idle_timer.remaining if self.dul.network_timeout else LONGEST_WAIT
        return max(0.0, min(LONGEST_WAIT, remaining))

    def _serve_one(self) -> bool:
        """Serve one DIMSE message, or end the association; True when it has ended."""
        context_id, msg = self.dimse.get_msg(block=False)
        if msg:
            self._serve_request(msg, context_id)  # type: ignore[arg-type]
        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            _PYNETDICOM_LOG.info("Association Released")
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return True
        if self.acse.is_aborted():
            what = " (A-P-ABORT)" if self.acse.is_aborted("a-p-abort") else ""
            _PYNETDICOM_LOG.info("Association Aborted%s", what)
            self.dul.receive_pdu(wait=False)  # so EVT_ACSE_RECV fires for the A-ABORT
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return True
        if not self.dul.is_alive():
            self.kill()
            return True
        if self.dul.idle_timer_expired():
            _PYNETDICOM_LOG.error("Network timeout reached")
            if self.network_timeout_response == "A-RELEASE":
                self.release()
            else:
                self.abort()
            self.kill()
            return True
        return False


class SpillingBuffer(io.BytesIO):
    """A received data set: in memory up to ``limit`` bytes, beyond that in a spool file.

    pynetdicom writes every data set fragment to the message's ``data_set`` buffer (with
    ``STORE_RECV_CHUNKED_DATASET`` off); this buffer keeps small objects in memory, where they
    are cheapest to parse, and moves large ones to a file in ``tempfile.gettempdir()`` (the
    process's spool directory), so memory stays bounded whatever the object's size.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.file: BinaryIO | None = None
        self.path = ""

    def write(self, data: Any) -> int:
        if self.file is None:
            if self.tell() + len(data) <= self.limit:
                return super().write(data)
            fd, self.path = tempfile.mkstemp(prefix="spill-", suffix=".part")
            self.file = os.fdopen(fd, "w+b")
            with self.getbuffer() as view:
                self.file.write(view)
            self.seek(0)
            self.truncate()
        return self.file.write(data)

    def data_set(self) -> BinaryIO:
        """The received bytes, positioned at their start."""
        source: BinaryIO = self if self.file is None else self.file
        source.flush()
        source.seek(0)
        return source

    def discard(self) -> None:
        """Remove the spool file, if any (idempotent)."""
        f, self.file = self.file, None
        if f is not None:
            f.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)


SPILL_LIMIT = 1 << 20
"""Data sets up to this size stay in memory while they are received."""


class QuickResponseDIMSE(DIMSEServiceProvider):
    """Receives data sets into a :class:`SpillingBuffer`; sends plain C-STORE and C-ECHO
    responses encoded by :mod:`storescpd.worker.responses`.

    When the association is established (Sta6), nothing else waits to be sent and no handler
    watches sent PDUs, the Association thread writes the one-PDV P-DATA-TF itself: pynetdicom's
    DUL would do exactly that (action DT-1, Sta6 -> Sta6) one thread hand-off later. Otherwise
    the P-DATA goes through the DUL's queue as usual.
    """

    def receive_primitive(self, primitive: Any) -> None:
        if self.message is None:
            self.message = DIMSEMessage()
            self.message.data_set = SpillingBuffer(SPILL_LIMIT)
        super().receive_primitive(primitive)

    def send_msg(self, primitive: Any, context_id: int) -> None:
        encoded = _quick_response(primitive)
        max_pdu = self.maximum_pdu_size
        assoc = self.assoc
        if (
            encoded is None
            or (max_pdu and len(encoded) + 6 > max_pdu)  # pynetdicom would fragment it
            or assoc.get_handlers(evt.EVT_DIMSE_SENT)  # wants pynetdicom's message object
        ):
            super().send_msg(primitive, context_id)
            return
        dul = self.dul
        if (
            dul.state_machine.current_state == "Sta6"
            and dul.to_provider_queue.empty()
            and dul.socket is not None
            and not assoc.get_handlers(evt.EVT_PDU_SENT)
            and not assoc.get_handlers(evt.EVT_DATA_SENT)
        ):
            size = len(encoded)
            dul.socket.send(_P_DATA_TF.pack(0x04, 0, size + 6, size + 2, context_id, 3) + encoded)
            return
        pdata = P_DATA()
        # One PDV: message control header 0x03 = command, last fragment.
        pdata.presentation_data_value_list.append((context_id, b"\x03" + encoded))
        dul.send_pdu(pdata)


# P-DATA-TF with one PDV: PDU type, reserved, PDU length, PDV item length, context ID, header.
_P_DATA_TF = struct.Struct(">BBIIBB")


def _quick_response(primitive: Any) -> bytes | None:
    """The encoded command set of a plain C-STORE/C-ECHO response, or None for pynetdicom."""
    if type(primitive) is C_STORE:
        field, instance = C_STORE_RSP, primitive.AffectedSOPInstanceUID
        if primitive.OffendingElement is not None:
            return None
    elif type(primitive) is C_ECHO:
        field, instance = C_ECHO_RSP, None
    else:
        return None
    sop_class = primitive.AffectedSOPClassUID
    responding_to = primitive.MessageIDBeingRespondedTo
    status = primitive.Status
    if (
        responding_to is None
        or status is None
        or primitive.ErrorComment is not None
        or not isinstance(sop_class, (str, type(None)))
        or not isinstance(instance, (str, type(None)))
    ):
        return None
    try:
        return encode_response(field, int(responding_to), int(status), sop_class, instance)
    except (UnicodeEncodeError, struct.error):
        return None


class BulkReadingSocket(AssociationSocket):
    """Reads a PDU with as few system calls as the kernel allows (pynetdicom reads 4 KiB each)."""

    def recv(self, nr_bytes: int) -> bytearray:
        sock = self.socket
        assert sock is not None
        data = bytearray(nr_bytes)
        got = 0
        with memoryview(data) as view:
            while got < nr_bytes:
                n = sock.recv_into(view[got:], nr_bytes - got)
                if not n:
                    break  # the peer closed: return what came, as pynetdicom does
                got += n
        if got < nr_bytes:
            del data[got:]
        return data


def make_event_driven(assoc: Association) -> None:
    """Convert ``assoc`` (created, not yet started) and its DUL to the event-driven loops."""
    wake_user = threading.Event()
    doorbell = _Doorbell()
    dul = assoc.dul
    dul.__class__ = EventDrivenDUL
    assoc.__class__ = EventDrivenAssociation
    assoc.dimse.__class__ = QuickResponseDIMSE
    if type(dul.socket) is AssociationSocket:
        dul.socket.__class__ = BulkReadingSocket
    assert isinstance(dul, EventDrivenDUL) and isinstance(assoc, EventDrivenAssociation)
    dul.doorbell = doorbell
    dul.wake_user = wake_user
    assoc.wake_user = wake_user
    assoc.doorbell = doorbell
    dul.event_queue = _WakingQueue(doorbell.ring, dul.event_queue.queue)
    dul.to_provider_queue = _WakingQueue(doorbell.ring, dul.to_provider_queue.queue)
    dul.to_user_queue = _WakingQueue(wake_user.set, dul.to_user_queue.queue)
    assoc.dimse.msg_queue = _WakingQueue(wake_user.set, assoc.dimse.msg_queue.queue)


def release(assoc: Association) -> None:
    """Free what :func:`make_event_driven` allocated, once both threads have ended."""
    if isinstance(assoc, EventDrivenAssociation) and not assoc.dul.is_alive():
        assoc.doorbell.close()
