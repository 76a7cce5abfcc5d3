"""Event-driven loops for pynetdicom's two per-association threads.

pynetdicom 3.0's DUL thread and Association thread each poll with a ~1 ms sleep, so every
C-STORE waits for up to three polls (request in, handler, response out) and an idle association
burns CPU (PYNETDICOM.md §4.3). :func:`make_event_driven` converts a freshly created acceptor
``Association`` (before its thread starts) so that

* the DUL thread blocks in ``poll()`` on the socket and on a wake-up pipe that every put into
  its event and provider queues writes to (puts come from the Association thread: responses,
  A-ABORT, A-RELEASE-RP, connection close);
* the Association thread blocks on an event that every put into the DIMSE message queue and the
  DUL's user queue sets, and that the DUL thread sets when its state changes or it ends;
* a C-STORE or C-ECHO request, once its last fragment is in, is served by the DUL thread itself
  (:class:`_InlineQueue`), so receiving an object, storing it and answering it costs no thread
  hand-off: the two threads would otherwise contend for the GIL and wake each other for every
  message. Other requests still go to the Association thread, as in pynetdicom;
* a P-DATA-TF received in Sta6 goes straight from the socket to DIMSE
  (:meth:`EventDrivenDUL._take_data`), as pynetdicom's action DT-2 would take it, while no
  handler watches received PDUs or state machine transitions: its PDU objects, event queue
  and transition are skipped, every other PDU goes through them;
* once a C-STORE response is out, or when it would wait with nothing to read, the DUL thread
  runs the acceptor's idle task (making the next store's file, :class:`storescpd.fsio.SpareFile`)
  in the time the peer needs to send.

Both waits still wake on a short deadline so pynetdicom's ARTIM and idle timers keep firing.
The loops keep pynetdicom's order of work (its state machine, PDU codec, DIMSE and ACSE
providers and event API do all the DICOM); only the waiting differs. They rely on pynetdicom
3.0 internals (``run_reactor``, ``_run_reactor``, ``_process_recv_primitive``,
``_is_transport_event``, the queues), so :func:`supported` checks they are there and the
acceptor falls back to stock pynetdicom otherwise. The same conversion swaps in the DIMSE
shortcuts of :mod:`storescpd.worker.dimse` (spilling receive buffer, quick responses, bulk
socket reads).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import select
import socket
import struct
import threading
from typing import Any, Protocol, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket

from storescpd.worker.associate import decode_associate_rq
from storescpd.worker.dimse import BulkReadingSocket, QuickResponseDIMSE
from storescpd.worker.wire import P_DATA_TF, GuardedSocket, PduGuard, split_pdvs

log = logging.getLogger(__name__)
# The lines pynetdicom's own loop logs, under its name, as before.
_PYNETDICOM_LOG = logging.getLogger("pynetdicom.association")
_DUL_LOG = logging.getLogger("pynetdicom.dul")
_LENGTH = struct.Struct(">I")
_RECEIVE_EVENTS = (evt.EVT_DATA_RECV, evt.EVT_PDU_RECV, evt.EVT_FSM_TRANSITION)

READ_AHEAD = 1 << 17
"""Bytes a worker asks the kernel for when pynetdicom asks for less (a PDU header, a small
PDU): one system call serves several PDUs."""

LONGEST_WAIT = 0.2
"""Seconds a loop sleeps at most without a wake-up, so no timer is missed by more than that."""

_NEEDED = (
    (
        DULServiceProvider,
        (
            "run_reactor",
            "_process_recv_primitive",
            "_is_transport_event",
            "_read_pdu_data",
            "_decode_pdu",
        ),
    ),
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


class _InlineQueue(_WakingQueue):
    """The DIMSE message queue, from which the DUL thread keeps back a request it serves itself.

    A put by the DUL thread (the only thread that decodes messages) of a C-STORE or C-ECHO
    request on an accepted presentation context is held in :attr:`held` instead of queued, as
    long as nothing is queued before it and the Association thread is not serving another
    request, so the order of requests is kept. The DUL thread serves the held request once the
    state machine's action that decoded it has returned (:meth:`EventDrivenDUL._serve_held`).

    Only once the association is established: a sender may send its first request as soon as
    it has our A-ASSOCIATE-AC, while the Association thread still runs the EVT_ACCEPTED
    handlers, and pynetdicom's service classes drop the response to a request served before
    then (the object stored, the sender never told). Such a request is queued; the
    Association thread serves it once established, as pynetdicom would.
    """

    def __init__(self, assoc: Any, wake: Any, items: Any = ()) -> None:
        super().__init__(wake, items)
        self.assoc = assoc
        self.owner: int | None = None  # the DUL thread, once it runs
        self.held: tuple[int, Any] | None = None

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if self._may_hold(item):
            self.held = item
            return
        super().put(item, block, timeout)

    def _may_hold(self, item: Any) -> bool:
        if threading.get_ident() != self.owner or self.held is not None or self.queue:
            return False
        assoc = self.assoc
        context_id, msg = item
        return (
            type(msg) in _INLINE_REQUESTS
            and assoc.is_established
            and not assoc.serving
            and not assoc._sent_release
            and context_id in assoc._accepted_cx
            and msg.is_valid_request
        )

    def take_held(self) -> tuple[int, Any] | None:
        held, self.held = self.held, None
        return held


_INLINE_REQUESTS = (C_STORE, C_ECHO)


class _Doorbell:
    """A self-pipe: ``ring`` from any thread wakes a ``poll()`` on :attr:`fd`.

    The thread that waits on it (:attr:`owner`, once set) looks at its queues again before it
    next waits, so its own puts need no ring: that saves a pipe write, a wake-up and a read
    for every PDU it receives.
    """

    owner: int | None = None

    def __init__(self) -> None:
        self.fd, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def ring(self) -> None:
        if threading.get_ident() == self.owner:
            return
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
    messages: _InlineQueue
    idle_task: IdleTask | None = None
    _data_received = False  # a P-DATA-TF went straight to DIMSE in this turn of the loop

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
        self.doorbell.owner = self.messages.owner = threading.get_ident()
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
                event = None
            if event is not None:
                state = self.state_machine.current_state
                self.state_machine.do_action(event)
                if self.state_machine.current_state != state and not self.wake_user.is_set():
                    self.wake_user.set()  # the Association thread looks at the new state
            held = self.messages.take_held()
            if held is not None:
                self._serve_held(*held)
            elif event is None and not self._data_received:
                watched = self._wait(poller, watched)
            self._data_received = False

    def _decode_pdu(self, bytestream: bytearray) -> tuple[Any, str]:
        # An A-ASSOCIATE-RQ's contexts may be ones this process has decoded before (see
        # storescpd.worker.associate); its events and state machine event are pynetdicom's.
        if bytestream[:1] != b"\x01" or self.assoc.get_handlers(evt.EVT_PDU_RECV):
            return super()._decode_pdu(bytestream)
        data = bytes(bytestream)
        evt.trigger(self.assoc, evt.EVT_DATA_RECV, {"data": data})
        pdu = decode_associate_rq(data)
        evt.trigger(self.assoc, evt.EVT_PDU_RECV, {"pdu": pdu})
        return pdu, "Evt6"

    def _read_pdu_data(self) -> None:
        """Read the next PDU; a P-DATA-TF in Sta6 goes straight to DIMSE (see :meth:`_take_data`),
        anything else through pynetdicom's reading, decoding and state machine."""
        if not self._take_data():
            super()._read_pdu_data()

    def _take_data(self) -> bool:
        """Receive a P-DATA-TF as pynetdicom's DUL would in Sta6 (Evt10, action DT-2: hand its
        PDVs to DIMSE, stay in Sta6), without its PDU objects, event queue and transition, when
        nothing watches those: no handler of received data, PDUs or state machine transitions.
        False, having read nothing, when the next PDU is not one (or its header has not all
        arrived, or is one the socket's guard refuses): pynetdicom reads it."""
        sock = self.socket
        guard = getattr(sock, "socket", None)
        if (
            sock is None
            or self.state_machine.current_state != "Sta6"
            or not isinstance(guard, PduGuard)
            or not guard.read_ahead  # not a socket that reads ahead (TLS)
            or self.event_queue.queue
            or self._recv_pdu.queue
            or any(map(self.assoc.get_handlers, _RECEIVE_EVENTS))
        ):
            return False
        try:
            header = guard.recv(6, socket.MSG_PEEK)
        except OSError:
            return False  # pynetdicom's own read meets it and says so
        length = _data_length(header, guard)
        if length is None:
            return False
        self._data_received = True
        try:
            # Mostly read ahead already: then taken without another system call; else read
            # ahead until it is all there, so it is read (and copied) once.
            pdu: Any = guard.take_ahead(6 + length)
            if pdu is None:
                guard.fill_ahead(6 + length)
                pdu = guard.take_ahead(6 + length) or guard.take_ahead(guard.pending())
        except (OSError, TimeoutError) as exc:
            # pynetdicom's words and events for the same failures (its _read_pdu_data).
            _DUL_LOG.error("Connection closed before the entire PDU was received")
            _DUL_LOG.exception(exc)
            self.event_queue.put("Evt17")
            return True
        if len(pdu) != 6 + length:
            _DUL_LOG.error(
                "The received PDU is shorter than expected (%d of %d bytes received)",
                len(pdu), 6 + length,
            )  # fmt: skip
            self.event_queue.put("Evt17")
            return True
        while self._deliver(pdu):
            # The next P-DATA-TFs, if read ahead in full, are taken in the same turn while
            # nothing else is to be done first: a large object takes fewer turns of the loop.
            if (
                self.messages.held is not None
                or self.event_queue.queue
                or self.to_provider_queue.queue
                or self._kill_thread
            ):
                break
            length = _data_length(guard.peek_ahead(6), guard)
            if length is None:
                break
            following = guard.take_ahead(6 + length)
            if following is None:
                break
            pdu = following
        return True

    def _deliver(self, pdu: bytes | bytearray | memoryview) -> bool:
        """Hand a P-DATA-TF's PDVs to DIMSE (action DT-2); False, having queued pynetdicom's
        invalid-PDU event (Evt19), when they cannot be split."""
        pdvs = split_pdvs(pdu)
        if pdvs is None:
            _DUL_LOG.error("Unable to decode the received PDU data")
            self.event_queue.put("Evt19")
            return False
        received = P_DATA()
        # The setter wants lists, not tuples; DIMSE reads the views as it would bytes.
        received._presentation_data_value_list = cast(Any, pdvs)
        self.assoc.dimse.receive_primitive(received)
        return True

    def _serve_held(self, context_id: int, msg: Any) -> None:
        """Serve a request :class:`_InlineQueue` kept back, as the Association thread would."""
        assoc = self.assoc
        assert isinstance(assoc, EventDrivenAssociation)
        assoc.serving = True  # the Association thread leaves the idle timer alone meanwhile
        try:
            assoc._serve_request(msg, context_id)
        finally:
            assoc.serving = False
            self._idle_timer.restart()
        idle = self.idle_task
        if idle is not None and idle.wanted and isinstance(msg, C_STORE):
            idle.prepare()  # the response is out: the next store's file, while the peer sends

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
        idle = self.idle_task
        if idle is not None and idle.wanted and not poller.poll(0):
            idle.prepare()  # nothing to read yet: the peer's turn is ours to use
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


def _data_length(header: bytes, guard: PduGuard) -> int | None:
    """The length of the P-DATA-TF whose header this is, or None when it is another PDU, or
    one the guard refuses (pynetdicom's reading then meets the refusal)."""
    if len(header) < 6 or header[0] != P_DATA_TF:
        return None
    (length,) = _LENGTH.unpack_from(header, 2)
    if guard.max_pdu and length > guard.max_pdu:
        return None
    return int(length)


class EventDrivenAssociation(Association):
    """The Association thread: waits for a message or a primitive instead of sleeping."""

    wake_user: threading.Event
    doorbell: _Doorbell
    serving = False  # a request is being served, by either thread

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
            self.serving = True
            try:
                self._serve_request(msg, context_id)  # type: ignore[arg-type]
            finally:
                self.serving = False
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
        if not self.serving and self.dul.idle_timer_expired():
            _PYNETDICOM_LOG.error("Network timeout reached")
            if self.network_timeout_response == "A-RELEASE":
                self.release()
            else:
                self.abort()
            self.kill()
            return True
        return False


class IdleTask(Protocol):
    """Work the DUL thread does when it would otherwise wait for the peer (e.g. making the
    next store's file, :class:`storescpd.fsio.SpareFile`)."""

    @property
    def wanted(self) -> bool: ...

    def prepare(self) -> None: ...


def make_event_driven(assoc: Association, idle: IdleTask | None = None) -> None:
    """Convert ``assoc`` (created, not yet started) and its DUL to the event-driven loops;
    ``idle`` runs whenever the DUL thread is about to wait with nothing to read."""
    wake_user = threading.Event()
    doorbell = _Doorbell()
    dul = assoc.dul
    dul.__class__ = EventDrivenDUL
    assoc.__class__ = EventDrivenAssociation
    assoc.dimse.__class__ = QuickResponseDIMSE
    if type(dul.socket) is AssociationSocket:
        dul.socket.__class__ = BulkReadingSocket
        # BulkReadingSocket.ready and EventDrivenDUL._wait ask pending() before waiting.
        if isinstance(dul.socket.socket, GuardedSocket):
            dul.socket.socket.read_ahead = READ_AHEAD
    assert isinstance(dul, EventDrivenDUL) and isinstance(assoc, EventDrivenAssociation)
    dul.doorbell = doorbell
    dul.idle_task = idle
    dul.wake_user = wake_user
    assoc.wake_user = wake_user
    assoc.doorbell = doorbell
    dul.event_queue = _WakingQueue(doorbell.ring, dul.event_queue.queue)
    dul.to_provider_queue = _WakingQueue(doorbell.ring, dul.to_provider_queue.queue)
    dul.to_user_queue = _WakingQueue(wake_user.set, dul.to_user_queue.queue)
    messages = _InlineQueue(assoc, wake_user.set, assoc.dimse.msg_queue.queue)
    assoc.dimse.msg_queue = dul.messages = messages


def release(assoc: Association) -> None:
    """Free what :func:`make_event_driven` allocated, once both threads have ended."""
    if isinstance(assoc, EventDrivenAssociation) and not assoc.dul.is_alive():
        assoc.doorbell.close()
