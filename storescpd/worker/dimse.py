"""DIMSE shortcuts for the event-driven acceptor: how data sets are received, responses sent.

* :class:`SpillingBuffer` keeps a received data set in memory while it is small and moves it to
  a spool file once it is large, instead of pynetdicom's spool file for every C-STORE.
* :class:`QuickResponseDIMSE` also reads plain C-STORE/C-ECHO requests itself
  (:func:`storescpd.worker.responses.decode_request`), and hands pynetdicom the rest.
* :class:`QuickResponseDIMSE` sends plain C-STORE/C-ECHO responses encoded by
  :mod:`storescpd.worker.responses`, from the Association thread when that is what the DUL
  would do anyway.
* :class:`BulkReadingSocket` reads a PDU in as few system calls as the kernel allows.

:func:`storescpd.worker.reactor.make_event_driven` swaps them in; they rely on pynetdicom 3.0
internals that :func:`storescpd.worker.reactor.supported` checks.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import select
import struct
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO, Protocol, cast

from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket

from storescpd.worker.responses import (
    C_ECHO_RSP,
    C_STORE_RQ,
    C_STORE_RSP,
    decode_request,
    encode_response,
)


class SpillingBuffer(io.BytesIO):
    """A received data set: in memory up to ``limit`` bytes, beyond that in a file.

    pynetdicom writes every data set fragment to the message's ``data_set`` buffer (with
    ``STORE_RECV_CHUNKED_DATASET`` off); this buffer keeps small objects in memory, where they
    are cheapest to parse, and moves large ones to a file, so memory stays bounded whatever
    the object's size. That file is the one :attr:`stream_to` opens, if it opens one (the
    output file itself, written while the object arrives, :class:`Stream`), or else a spool
    file in ``tempfile.gettempdir()`` (the process's spool directory).
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.file: BinaryIO | Stream | None = None
        self.path = ""
        self.stream_to: Callable[[], Stream | None] | None = None  # once the request is known
        self.stream: Stream | None = None  # where the data set went instead of a spool file

    def write(self, data: Any) -> int:
        if self.file is None:
            if self.tell() + len(data) <= self.limit:
                return super().write(data)
            self.file = self._spill()
            with self.getbuffer() as view:
                self.file.write(view)
            self.seek(0)
            self.truncate()
        return self.file.write(data)

    def _spill(self) -> BinaryIO | Stream:
        self.stream = self.stream_to() if self.stream_to is not None else None
        if self.stream is not None:
            return self.stream
        fd, self.path = tempfile.mkstemp(prefix="spill-", suffix=".part")
        return os.fdopen(fd, "w+b", buffering=SPILL_WRITE_BUFFER)

    def data_set(self) -> BinaryIO:
        """The received bytes, positioned at their start (a streamed data set: a new reader,
        which the caller closes)."""
        if self.stream is not None:
            return self.stream.reader()
        source = self if self.file is None else cast(BinaryIO, self.file)
        source.flush()
        source.seek(0)
        return source

    def discard(self) -> None:
        """Remove the spool file or the uncommitted streamed file, if any (idempotent)."""
        f, self.file = self.file, None
        stream, self.stream = self.stream, None
        self.stream_to = None
        if stream is not None:
            stream.discard()
        elif f is not None:
            cast(BinaryIO, f).close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)


class Stream(Protocol):
    """A file a large data set is written to while it arrives (see :class:`SpillingBuffer`)."""

    def write(self, data: Any) -> int: ...

    def reader(self) -> BinaryIO:
        """The data set as written, positioned at its first byte."""
        ...

    def discard(self) -> None: ...


SPILL_LIMIT = 1 << 20
"""Data sets up to this size stay in memory while they are received."""

SPILL_WRITE_BUFFER = 1 << 20
"""A spool file is written in pieces this large, not one system call per PDV."""


class _PlainRequest:
    """A C-STORE-RQ or C-ECHO-RQ being received by :class:`QuickResponseDIMSE` itself: what
    pynetdicom's ``DIMSEMessage`` holds meanwhile, without its pydicom ``Dataset``."""

    _data_set_file = None  # as DIMSEMessage's: no pynetdicom spool file (see guard_dimse)

    def __init__(self, data_set: SpillingBuffer) -> None:
        self.command = bytearray()
        self.data_set = data_set
        self.primitive: C_STORE | C_ECHO | None = None  # once the command set is in


class QuickResponseDIMSE(DIMSEServiceProvider):
    """Receives data sets into a :class:`SpillingBuffer`; reads plain C-STORE and C-ECHO
    requests and sends plain responses with :mod:`storescpd.worker.responses`.

    A request is read here only while nothing watches pynetdicom's message objects
    (``EVT_DIMSE_RECV``); one whose command set :func:`decode_request` declines, or whose values
    a primitive refuses, is handed to pynetdicom from its command set on, so it meets the same
    checks and failures as before.

    When the association is established (Sta6), nothing else waits to be sent and no handler
    watches sent PDUs, the Association thread writes the one-PDV P-DATA-TF itself: pynetdicom's
    DUL would do exactly that (action DT-1, Sta6 -> Sta6) one thread hand-off later. Otherwise
    the P-DATA goes through the DUL's queue as usual.
    """

    stream_opener: Callable[[C_STORE, int], Stream | None] | None = None
    """Opens the file a C-STORE's data set, once too large for memory, is written to while it
    arrives (:meth:`storescpd.worker.store.Storage.open_stream`); None: a spool file."""

    def receive_primitive(self, primitive: Any) -> None:
        message: Any = self.message  # DIMSEMessage or _PlainRequest
        if message is None:
            if self.assoc.get_handlers(evt.EVT_DIMSE_RECV):
                message = DIMSEMessage()
                message.data_set = SpillingBuffer(SPILL_LIMIT)
            else:
                message = _PlainRequest(SpillingBuffer(SPILL_LIMIT))
            self.message = message
        if type(message) is not _PlainRequest:
            super().receive_primitive(primitive)
            return
        pdvs = primitive.presentation_data_value_list
        for index, (context_id, data) in enumerate(pdvs):
            header = data[0]
            if header & 1:  # command set (PS3.8 E.2)
                message.command += memoryview(data)[1:]
                if not header & 2:
                    continue
                request = _request_of(bytes(message.command), context_id, message.data_set)
                if request is None:
                    self._hand_over(message, context_id, pdvs[index + 1 :])
                    return
                message.primitive, has_data_set = request
                if not has_data_set:
                    self._received(context_id, request[0])
                    return  # as pynetdicom: the rest of the P-DATA is not looked at
                opener = self.stream_opener
                if opener is not None and isinstance(message.primitive, C_STORE):
                    message.data_set.stream_to = functools.partial(
                        opener, message.primitive, context_id
                    )
            else:
                message.data_set.write(memoryview(data)[1:])
                if header & 2 and message.primitive is not None:
                    # Complete: nothing more to stream, and the opener holds the primitive,
                    # which holds this buffer; a cycle only the GC's rare full pass would free.
                    message.data_set.stream_to = None
                    self._received(context_id, message.primitive)
                    return

    def _received(self, context_id: int, request: C_STORE | C_ECHO) -> None:
        self.message = None
        self.msg_queue.put((context_id, request))

    def _hand_over(self, message: _PlainRequest, context_id: int, rest: list[Any]) -> None:
        """Let pynetdicom decode the message from its complete command set on."""
        pdata = P_DATA()
        # The setter takes [ID, bytes] lists only, not tuples.
        pdvs: Any = [[context_id, b"\x03" + bytes(message.command)]]
        pdvs += [[context, bytes(data)] for context, data in rest]  # bytes, not views
        pdata.presentation_data_value_list = pdvs
        handed = DIMSEMessage()
        handed.data_set = message.data_set
        self.message = handed
        super().receive_primitive(pdata)

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


def _request_of(
    command: bytes, context_id: int, data_set: SpillingBuffer
) -> tuple[C_STORE | C_ECHO, bool] | None:
    """The primitive of a plain request and whether a data set follows, or None."""
    decoded = decode_request(command)
    if decoded is None:
        return None
    field, has_data_set, parameters = decoded
    request = C_STORE() if field == C_STORE_RQ else C_ECHO()
    try:
        for name, value in parameters.items():
            setattr(request, name, value)  # pynetdicom's checks, as for its own decoding
    except (ValueError, TypeError):
        return None
    if isinstance(request, C_STORE):
        request.DataSet = data_set  # pynetdicom sets it, data set or not
    request._context_id = context_id
    request._dataset_path = None
    request._dataset_file = None
    return request, has_data_set


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
    """Reads a PDU with as few system calls as the kernel allows (pynetdicom reads 4 KiB each),
    and asks whether one is waiting with a poll object kept for the socket (pynetdicom builds
    a ``select()`` for every look, one per PDU and per turn of the DUL's loop)."""

    _poller: select.poll | None = None
    _polled = -1  # the descriptor _poller watches

    @property
    def ready(self) -> bool:
        sock = self.socket
        if sock is None or self._is_connected is False:
            return False
        fd = sock.fileno()
        if fd < 0:  # closed under us: as pynetdicom's select() failing, Evt17
            self.event_queue.put("Evt17")
            return False
        # Bytes already read (ahead, or decrypted by TLS) need no system call to be found.
        pending = getattr(sock, "pending", None)
        if pending is not None and pending():
            return True
        if self._poller is None or fd != self._polled:
            self._poller = select.poll()
            self._poller.register(fd, select.POLLIN | select.POLLPRI)
            self._polled = fd
        events = self._poller.poll(0)
        if events and events[0][1] & select.POLLNVAL:
            self.event_queue.put("Evt17")
            return False
        return bool(events)  # readable, or hung up / in error: the read tells which, as before

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
