"""Peers that say what a well-behaved SCU would not: raw upper-layer bytes, hand-made DIMSE.

:class:`RawPeer` speaks TCP and nothing else: every PDU, item, PDV and command set it sends is
built here byte by byte after PS3.8 §9.3 and PS3.7 §E, so a test can break any field of any of
them. It reads back what the server answers and names it as an :class:`Outcome` (AC, RJ with its
result/source/reason, A-ABORT with its source/reason, A-RELEASE-RP, a close, or silence).

:class:`Peer` rides a real pynetdicom association and sends hand-made C-STORE requests whose UIDs
may differ from the data set's or break the UID grammar.
"""

from __future__ import annotations

import contextlib
import io
import queue
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_ECHO, C_STORE

from tests.conftest import Server

# --------------------------------------------------------------------------------------------
# PS3.8 §9.3: PDUs and items
# --------------------------------------------------------------------------------------------

ASSOCIATE_RQ = 0x01
ASSOCIATE_AC = 0x02
ASSOCIATE_RJ = 0x03
P_DATA_TF = 0x04
RELEASE_RQ = 0x05
RELEASE_RP = 0x06
ABORT = 0x07

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
VERIFICATION = "1.2.840.10008.1.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLEMENTATION_UID = "1.2.826.0.1.3680043.9.7433.1.1"

# Message control header of a PDV (PS3.8 E.2): bit 0 command, bit 1 last fragment.
COMMAND_LAST = 0x03
COMMAND_MORE = 0x01
DATA_LAST = 0x02
DATA_MORE = 0x00


def pdu(pdu_type: int, body: bytes, length: int | None = None) -> bytes:
    """A PDU: type, reserved byte, 4-byte big-endian length (``length`` may lie), body."""
    return struct.pack(">BBI", pdu_type, 0, len(body) if length is None else length) + body


def item(item_type: int, body: bytes, length: int | None = None) -> bytes:
    """A variable item: type, reserved byte, 2-byte big-endian length (may lie), body."""
    return struct.pack(">BBH", item_type, 0, len(body) if length is None else length) + body


def ae_title(title: str | bytes) -> bytes:
    """An AE title field: 16 bytes, space padded (longer values are cut, as on the wire)."""
    raw = title.encode("latin-1") if isinstance(title, str) else title
    return raw[:16].ljust(16, b" ")


def application_context(name: str = APPLICATION_CONTEXT) -> bytes:
    return item(0x10, name.encode("ascii"))


def presentation_context(
    context_id: int, abstract_syntax: str, transfer_syntaxes: Sequence[str] = (IMPLICIT_LE,)
) -> bytes:
    """An A-ASSOCIATE-RQ presentation context item (0x20) with its sub-items."""
    body = bytes([context_id, 0, 0, 0]) + item(0x30, abstract_syntax.encode("ascii"))
    body += b"".join(item(0x40, ts.encode("ascii")) for ts in transfer_syntaxes)
    return item(0x20, body)


def user_information(
    max_length: int = 16384, implementation_uid: str | None = IMPLEMENTATION_UID, extra: bytes = b""
) -> bytes:
    """A user information item (0x50): maximum length, implementation class UID, ``extra``."""
    body = item(0x51, struct.pack(">I", max_length))
    if implementation_uid is not None:
        body += item(0x52, implementation_uid.encode("ascii"))
    return item(0x50, body + extra)


DEFAULT_CONTEXTS = (
    presentation_context(1, VERIFICATION),
    presentation_context(3, str(CTImageStorage), (EXPLICIT_LE, IMPLICIT_LE)),
)


def associate_rq(
    *,
    called: str | bytes = "STORESCPD",
    calling: str | bytes = "BATTERY",
    protocol_version: int = 1,
    app_context: bytes | None = None,
    contexts: Iterable[bytes] = DEFAULT_CONTEXTS,
    user_info: bytes | None = None,
    tail: bytes = b"",
    length: int | None = None,
) -> bytes:
    """An A-ASSOCIATE-RQ PDU; each part can be replaced by hand-made (or broken) bytes."""
    body = struct.pack(">HH", protocol_version, 0) + ae_title(called) + ae_title(calling)
    body += bytes(32)
    body += application_context() if app_context is None else app_context
    body += b"".join(contexts)
    body += user_information() if user_info is None else user_info
    return pdu(ASSOCIATE_RQ, body + tail, length)


def pdv(context_id: int, control: int, data: bytes, length: int | None = None) -> bytes:
    """A presentation data value item: 4-byte length (may lie), context ID, control header."""
    size = len(data) + 2 if length is None else length
    return struct.pack(">IBB", size, context_id, control) + data


def p_data(*pdvs: bytes, length: int | None = None) -> bytes:
    return pdu(P_DATA_TF, b"".join(pdvs), length)


def release_rq() -> bytes:
    return pdu(RELEASE_RQ, bytes(4))


def abort_pdu(source: int = 0, reason: int = 0) -> bytes:
    return pdu(ABORT, bytes([0, 0, source, reason]))


# --------------------------------------------------------------------------------------------
# PS3.7 §6.3 and §E: command sets (always Implicit VR Little Endian) and small data sets
# --------------------------------------------------------------------------------------------

C_STORE_RQ = 0x0001
C_ECHO_RQ = 0x0030
NO_DATA_SET = 0x0101
HAS_DATA_SET = 0x0000


def element(tag: int, value: bytes, length: int | None = None) -> bytes:
    """An Implicit VR Little Endian element (the value is padded to even length)."""
    if len(value) % 2:
        value += b"\0"
    size = len(value) if length is None else length
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, size) + value


def explicit_element(tag: int, vr: str, value: bytes, length: int | None = None) -> bytes:
    """An Explicit VR Little Endian element; SQ, OB, UN and friends take a 4-byte length."""
    if len(value) % 2:
        value += b" " if vr not in ("UI", "OB", "UN") else b"\0"
    size = len(value) if length is None else length
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode("ascii")
    if vr in ("OB", "OW", "OF", "SQ", "UT", "UN", "UC", "UR", "OD", "OL", "OV", "SV", "UV"):
        return head + struct.pack("<HI", 0, size) + value
    return head + struct.pack("<H", size) + value


def us(value: int) -> bytes:
    return struct.pack("<H", value)


def uid(value: str) -> bytes:
    return value.encode("latin-1")


def command_set(*elements: bytes) -> bytes:
    """A command set: the given group 0000 elements preceded by their group length."""
    body = b"".join(elements)
    return element(0x00000000, struct.pack("<I", len(body))) + body


def c_echo_rq(message_id: int = 1) -> bytes:
    return command_set(
        element(0x00000002, uid(VERIFICATION)),
        element(0x00000100, us(C_ECHO_RQ)),
        element(0x00000110, us(message_id)),
        element(0x00000800, us(NO_DATA_SET)),
    )


def c_store_rq(sop_class: str, sop_instance: str, message_id: int = 1) -> bytes:
    return command_set(
        element(0x00000002, uid(sop_class)),
        element(0x00000100, us(C_STORE_RQ)),
        element(0x00000110, us(message_id)),
        element(0x00000700, us(2)),
        element(0x00000800, us(HAS_DATA_SET)),
        element(0x00001000, uid(sop_instance)),
    )


def tiny_data_set(sop_class: str, sop_instance: str, *more: bytes) -> bytes:
    """The smallest data set a store accepts, in Explicit VR Little Endian; ``more`` goes last
    (elements must come in tag order, so extra elements need tags above (0010,0020))."""
    return (
        explicit_element(0x00080016, "UI", uid(sop_class))
        + explicit_element(0x00080018, "UI", uid(sop_instance))
        + explicit_element(0x00080060, "CS", b"OT")
        + explicit_element(0x00100010, "PN", b"Battery^Test")
        + explicit_element(0x00100020, "LO", b"BATTERY")
        + b"".join(more)
    )


def nested(depth: int, undefined: bool) -> bytes:
    """A sequence nested ``depth`` deep in (0040,A730) Content Sequence items."""
    inner = explicit_element(0x0040A040, "CS", b"TEXT")
    for _ in range(depth):
        if undefined:
            body = b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + inner + b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
            inner = (
                explicit_element(0x0040A730, "SQ", body, 0xFFFFFFFF)
                + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
            )
        else:
            body = b"\xfe\xff\x00\xe0" + struct.pack("<I", len(inner)) + inner
            inner = explicit_element(0x0040A730, "SQ", body)
    return inner


# --------------------------------------------------------------------------------------------
# What came back
# --------------------------------------------------------------------------------------------


class Kind(Enum):
    ACCEPTED = "A-ASSOCIATE-AC"
    REJECTED = "A-ASSOCIATE-RJ"
    ABORTED = "A-ABORT"
    RELEASED = "A-RELEASE-RP"
    DATA = "P-DATA-TF"
    OTHER = "other PDU"
    CLOSED = "close"
    SILENT = "nothing"


@dataclass(frozen=True)
class Outcome:
    """One answer of the server: a PDU (with its fields decoded) or a close or silence."""

    kind: Kind
    body: bytes = b""
    pdu_type: int = 0

    @property
    def reject(self) -> tuple[int, int, int]:
        """(result, source, reason) of an A-ASSOCIATE-RJ."""
        assert self.kind is Kind.REJECTED, self
        return self.body[1], self.body[2], self.body[3]

    @property
    def abort(self) -> tuple[int, int]:
        """(source, reason) of an A-ABORT."""
        assert self.kind is Kind.ABORTED, self
        return self.body[2], self.body[3]

    @property
    def contexts(self) -> dict[int, tuple[int, str]]:
        """context ID → (result, transfer syntax) of an A-ASSOCIATE-AC."""
        assert self.kind is Kind.ACCEPTED, self
        out = {}
        for item_type, body in items(self.body[68:]):
            if item_type == 0x21:
                ts = [value for sub, value in items(body[4:]) if sub == 0x40]
                out[body[0]] = (body[2], ts[0].decode("ascii").rstrip("\0") if ts else "")
        return out

    @property
    def max_length(self) -> int:
        """The maximum PDU length an A-ASSOCIATE-AC announces (0: unlimited)."""
        assert self.kind is Kind.ACCEPTED, self
        for item_type, body in items(self.body[68:]):
            if item_type == 0x50:
                for sub, value in items(body):
                    if sub == 0x51:
                        return int(struct.unpack(">I", value)[0])
        return 0

    @property
    def status(self) -> int | None:
        """(0000,0900) Status of a DIMSE response in a single-PDV P-DATA-TF, or None."""
        if self.kind is not Kind.DATA:
            return None
        data = self.body[6:]
        pos = 0
        while pos + 8 <= len(data):
            group, elem, length = struct.unpack("<HHI", data[pos : pos + 8])
            if (group, elem) == (0x0000, 0x0900) and length == 2:
                return int(struct.unpack("<H", data[pos + 8 : pos + 10])[0])
            pos += 8 + length
        return None

    @property
    def ended(self) -> bool:
        """The server let go of the connection: A-ABORT or a close."""
        return self.kind in (Kind.ABORTED, Kind.CLOSED)

    def __str__(self) -> str:
        if self.kind is Kind.REJECTED:
            result, source, reason = self.reject
            return f"A-ASSOCIATE-RJ({result}, {source}, {reason})"
        if self.kind is Kind.ABORTED:
            source, reason = self.abort
            return f"A-ABORT(source {source}, reason {reason})"
        if self.kind is Kind.OTHER:
            return f"PDU type 0x{self.pdu_type:02X}"
        return self.kind.value


def items(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Variable items of an AC or user information item, as (type, body)."""
    pos = 0
    while pos + 4 <= len(data):
        item_type, _, length = struct.unpack(">BBH", data[pos : pos + 4])
        yield item_type, data[pos + 4 : pos + 4 + length]
        pos += 4 + length


KINDS = {
    ASSOCIATE_AC: Kind.ACCEPTED,
    ASSOCIATE_RJ: Kind.REJECTED,
    ABORT: Kind.ABORTED,
    RELEASE_RP: Kind.RELEASED,
    P_DATA_TF: Kind.DATA,
}


# --------------------------------------------------------------------------------------------
# The raw peer
# --------------------------------------------------------------------------------------------


class RawPeer:
    """One TCP connection to the server, sending exactly the bytes it is given.

    Parameters
    ----------
    port : int
        The server's port on 127.0.0.1.
    patience : float
        The longest :meth:`answer` waits for anything (the server's timeouts are shorter).
    """

    def __init__(self, port: int, patience: float = 15.0) -> None:
        self.patience = patience
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=patience)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> bool:
        """Send ``data``; False when the server has already closed (reset) the connection."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def stream(self, head: bytes, chunk_size: int, chunks: int) -> int:
        """Send ``head``, then up to ``chunks`` chunks of zeros; the bytes sent before the
        server closed the connection or stopped reading."""
        sent = 0
        zeros = bytes(chunk_size)
        try:
            self.sock.sendall(head)
            for _ in range(chunks):
                self.sock.sendall(zeros)
                sent += chunk_size
        except OSError:  # reset, broken pipe, or a send timeout: the server stopped reading
            pass
        return sent

    def send_slowly(self, chunks: Iterable[bytes], pause: float) -> bool:
        """Send chunk after chunk with a pause between (a slowloris peer); stops at a close."""
        for chunk in chunks:
            if not self.send(chunk):
                return False
            if self._closed_within(pause):
                return False
        return True

    def answer(self, timeout: float | None = None) -> Outcome:
        """The next PDU from the server, or CLOSED, or SILENT after ``timeout`` seconds."""
        deadline = time.monotonic() + (self.patience if timeout is None else timeout)
        header = self._read(6, deadline)
        if header is None:
            return Outcome(Kind.SILENT)
        if len(header) < 6:
            return Outcome(Kind.CLOSED)
        pdu_type, _, length = struct.unpack(">BBI", header)
        body = self._read(length, deadline) if length else b""
        if body is None or len(body) < length:
            return Outcome(Kind.CLOSED)
        return Outcome(KINDS.get(pdu_type, Kind.OTHER), body, pdu_type)

    def final(self, timeout: float | None = None) -> Outcome:
        """The outcome once the server stops talking: P-DATA and RELEASE-RP are skipped, an
        A-ABORT, RJ or AC is returned, then CLOSED or SILENT."""
        while True:
            outcome = self.answer(timeout)
            if outcome.kind not in (Kind.DATA, Kind.RELEASED):
                return outcome

    def closed_after(self, outcome: Outcome, timeout: float = 5.0) -> bool:
        """After an A-ABORT or RJ the server must close the connection (ARTIM, PS3.8 9.1.5)."""
        if outcome.kind is Kind.CLOSED:
            return True
        return self.answer(timeout).kind is Kind.CLOSED

    def store(
        self, sop_class: str, instance: str, data_set: bytes, context_id: int = 3
    ) -> int | None:
        """A C-STORE on ``context_id`` (CT Image Storage in our default request), the data set
        in PDVs that fit a 16 KiB PDU; the response's status, or None when there was none."""
        self.send(p_data(pdv(context_id, COMMAND_LAST, c_store_rq(sop_class, instance))))
        size = 16000
        for start in range(0, max(len(data_set), 1), size):
            last = start + size >= len(data_set)
            chunk = data_set[start : start + size]
            self.send(p_data(pdv(context_id, DATA_LAST if last else DATA_MORE, chunk)))
        return self.answer().status

    def associate(self, rq: bytes | None = None) -> Outcome:
        """Send an A-ASSOCIATE-RQ (ours unless given) and return the answer."""
        self.send(associate_rq() if rq is None else rq)
        return self.answer()

    def _closed_within(self, pause: float) -> bool:
        readable, _, _ = select.select([self.sock], [], [], pause)
        if not readable:
            return False
        try:
            data = self.sock.recv(65536, socket.MSG_PEEK)
        except OSError:
            return True
        return not data or data[:1] == bytes([ABORT])

    def _read(self, n: int, deadline: float) -> bytes | None:
        """Read ``n`` bytes; fewer when the connection closes; None on silence."""
        while len(self._buffer) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                return None
            try:
                chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            except (ConnectionResetError, TimeoutError):
                chunk = b""
            if not chunk:
                data, self._buffer = self._buffer, b""
                return data
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data


TRANSIENT_LIMIT = (2, 3, 2)  # A-ASSOCIATE-RJ: transient, provider (presentation), local limit


def associated(
    port: int, rq: bytes | None = None, patience: float = 15.0, busy_wait: float = 0.0
) -> RawPeer:
    """A raw peer whose association the server has accepted.

    ``busy_wait``: for so many seconds, a transient "local limit exceeded" rejection (a full
    pool) is answered by trying again.
    """
    deadline = time.monotonic() + busy_wait
    while True:
        peer = RawPeer(port, patience)
        outcome = peer.associate(rq)
        if outcome.kind is Kind.ACCEPTED:
            return peer
        peer.close()
        full = outcome.kind is Kind.REJECTED and outcome.reject == TRANSIENT_LIMIT
        if not full or time.monotonic() > deadline:
            raise AssertionError(f"association not accepted: {outcome}")
        select.select([], [], [], 0.05)


# --------------------------------------------------------------------------------------------
# A pynetdicom requestor that sends hand-made DIMSE requests
# --------------------------------------------------------------------------------------------

# The peer waits this long for a response that a healthy server sends in milliseconds.
RESPONSE_TIMEOUT = 30.0


class Checkpoint(threading.Event):
    """pynetdicom's reactor checkpoint, counting the reactor's arrivals at it.

    Waiting for ``Association._is_paused`` is not enough: it is still True for a moment after
    the reactor has passed an open checkpoint, and a fast server's response can then be taken
    off the queue by the reactor ("Received unexpected C-STORE service message").
    """

    def __init__(self, is_set: bool) -> None:
        super().__init__()
        self.arrivals = 0
        self._arrived = threading.Condition()
        if is_set:
            self.set()

    def wait(self, timeout: float | None = None) -> bool:
        with self._arrived:
            self.arrivals += 1
            self._arrived.notify_all()
        return super().wait(timeout)

    def pause(self, timeout: float) -> None:
        """Close the checkpoint; return once the reactor is held at it."""
        with self._arrived:
            # An arrival counted after the clear finds the checkpoint closed and stays.
            after = self.arrivals + 1
            self.clear()
            if not self._arrived.wait_for(lambda: self.arrivals >= after, timeout):
                raise TimeoutError("pynetdicom's reactor did not come to its checkpoint")


class Peer:
    """One association from a pynetdicom requestor that can send hand-made DIMSE requests."""

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        self.message_id = 0
        # Private name, pynetdicom 3.0.4: the reactor looks the attribute up on every turn.
        self.checkpoint = Checkpoint(assoc._reactor_checkpoint.is_set())
        assoc._reactor_checkpoint = self.checkpoint

    def context_id(self, abstract_syntax: str) -> int:
        for cx in self.assoc.accepted_contexts:
            if cx.abstract_syntax == abstract_syntax and cx.context_id is not None:
                return cx.context_id
        raise AssertionError(f"no accepted context for {abstract_syntax}")

    def store(self, sop_class: str, sop_instance: str, data_set: bytes) -> int | None:
        """Send a C-STORE-RQ with these request UIDs and data set bytes; None: no response."""
        req = C_STORE()
        req.MessageID = self._next_id()
        req.Priority = 2
        req.AffectedSOPClassUID = UID(sop_class)
        # Relaxed for the answer too: it echoes the UID, and this client must be able to read it.
        with relaxed_uid_checks():
            req.AffectedSOPInstanceUID = UID(sop_instance)
            req.DataSet = io.BytesIO(data_set)
            return self._exchange(req, self.context_id(sop_class))

    def echo(self) -> int | None:
        req = C_ECHO()
        req.MessageID = self._next_id()
        req.AffectedSOPClassUID = UID(VERIFICATION)
        return self._exchange(req, self.context_id(VERIFICATION))

    def _next_id(self) -> int:
        self.message_id += 1
        return self.message_id

    def _exchange(self, req: C_STORE | C_ECHO, context_id: int) -> int | None:
        # As Association.send_c_store does: the reactor is paused so that it does not take the
        # response off the queue before we do (private names, pynetdicom 3.0.4).
        try:
            self.checkpoint.pause(5)
            self.assoc.dimse.send_msg(req, context_id)
            rsp = self._await_response()
        finally:
            self.checkpoint.set()
        status = getattr(rsp, "Status", None)
        return None if status is None else int(status)

    def _await_response(self) -> object:
        # Not get_msg(block=True): after some aborts pynetdicom queues nothing, and that call
        # would then wait out the whole DIMSE timeout. Wake up now and then to look.
        deadline = time.monotonic() + RESPONSE_TIMEOUT
        while time.monotonic() < deadline:
            try:
                return self.assoc.dimse.msg_queue.get(timeout=0.1)[1]
            except queue.Empty:
                if not self.assoc.is_established:
                    return None
        return None


@contextlib.contextmanager
def relaxed_uid_checks() -> Iterator[None]:
    """Let this client put UIDs that break the grammar into a request (never done by a server)."""
    saved = _config.VALIDATORS["UI"]
    _config.VALIDATORS["UI"] = lambda value: (True, "")
    try:
        yield
    finally:
        _config.VALIDATORS["UI"] = saved


@contextlib.contextmanager
def associate(
    server: Server,
    abstract_syntaxes: Sequence[str] = (CTImageStorage, VERIFICATION),
    handlers: Sequence[
        tuple[evt.InterventionEvent | evt.NotificationEvent, Callable[..., None]]
    ] = (),
    calling: str = "SAFETYSCU",
) -> Iterator[Peer]:
    """An established pynetdicom association to ``server``, released (or killed) at the end."""
    ae = AE(ae_title=calling)
    ae.dimse_timeout = RESPONSE_TIMEOUT
    for syntax in abstract_syntaxes:
        ae.add_requested_context(syntax, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", server.port, evt_handlers=list(handlers))
    assert assoc.is_established, f"association refused or failed:\n{server.log}"
    try:
        yield Peer(assoc)
    finally:
        if assoc.is_established:
            assoc.release()
        if assoc.is_alive():
            assoc.kill()
