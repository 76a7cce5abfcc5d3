"""Bounds on what a peer's bytes may make pynetdicom do: PDU sizes, DIMSE decoding.

pynetdicom 3.0.4 reads a whole PDU into memory whatever length its header claims, and an
exception while decoding a command set ends its DUL thread without a word to the peer. A hostile
peer could so grow a worker without limit, or leave an association half-dead. Two guards, both on
public surfaces (the socket we own, and the association's DIMSE provider object):

* :class:`GuardedSocket` follows the PDU stream as pynetdicom reads it; a PDU of an unknown type,
  or longer than we accept, is answered with an A-ABORT (PS3.8 §9.3.8: source 2, reason 1 or 6)
  before its body is read, and the read fails as a closed connection would. It also lets an
  A-ASSOCIATE-RQ of any protocol version with bit 0 set through, as PS3.8 asks.
* :func:`guard_dimse` checks each P-DATA-TF before pynetdicom decodes it (a :class:`MessageTracker`
  follows the messages' fragments) and turns what storescp would not serve into pynetdicom's
  own "invalid PDU" event (Evt19), so its state machine sends the A-ABORT (AA-8), as DCMTK
  aborts on a DIMSE failure (SPEC §5.1): a broken or unserved command set, a context change
  inside a message, command sets and non-C-STORE data sets too big for memory. A decoding
  failure pynetdicom meets anyway ends the same way instead of ending its DUL thread.
"""

from __future__ import annotations

import logging
import socket
import struct
from typing import TYPE_CHECKING, Any

from pynetdicom.association import Association

log = logging.getLogger(__name__)

PDU_TYPES = range(0x01, 0x08)  # A-ASSOCIATE-RQ … A-ABORT (PS3.8 Table 9-11 ff.)
ASSOCIATE_RQ = 0x01
P_DATA_TF = 0x04
OTHER_PDU_LIMIT = 1 << 20
"""Longest PDU accepted other than P-DATA-TF: an A-ASSOCIATE-RQ with hundreds of contexts and
a user identity fits many times over."""
COMMAND_SET_LIMIT = 64 << 10  # a real command set is a few hundred bytes
MEMORY_DATA_SET_LIMIT = 1 << 20  # data sets of non-C-STORE messages (C-ECHO has none)
C_STORE_RQ = 0x0001
SERVED_COMMANDS = frozenset({C_STORE_RQ, 0x0030})  # and C-ECHO-RQ
NO_DATA_SET = 0x0101  # (0000,0800) Command Data Set Type

UNRECOGNIZED_PDU = 1
INVALID_PARAMETER = 6


class PduRefused(ConnectionAbortedError):
    """The peer sent a PDU we do not read; it has been sent an A-ABORT."""


if TYPE_CHECKING:
    _Socket = socket.socket
else:
    _Socket = object  # a mixin: the socket class comes second in the subclass's bases


class PduGuard(_Socket):
    """Checks each PDU header pynetdicom reads through a socket, plain or TLS: mixed into
    :class:`GuardedSocket` and into the worker's TLS socket class.

    ``max_pdu`` is the maximum length we announce for P-DATA-TF PDUs (PS3.8 D.1); other PDUs
    may be up to :data:`OTHER_PDU_LIMIT` long.
    """

    max_pdu = 0
    _header = b""
    _body_left = 0
    _rq_starts = False  # the next byte read starts the body of an A-ASSOCIATE-RQ
    _rq_body: bytearray | None = None  # the A-ASSOCIATE-RQ being read, checked when complete

    def limit(self, max_pdu: int) -> None:
        self.max_pdu = max_pdu
        self._header = b""
        self._body_left = 0
        self._rq_starts = False
        self._rq_body = None

    read_ahead = 0
    """Read this much from the kernel when less is asked, keeping the rest for the next reads
    (0: never). Only for a reader that asks :meth:`pending` before it waits for the socket."""
    _ahead: memoryview | bytes = b""

    def pending(self) -> int:
        """Bytes read ahead and not yet handed out (a poll() on the socket cannot see them),
        and those a TLS layer below holds decrypted."""
        below = getattr(super(), "pending", None)
        return len(self._ahead) + (below() if below is not None else 0)

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if flags & socket.MSG_PEEK:
            return bytes(self._ahead[:bufsize]) if self._ahead else super().recv(bufsize, flags)
        data = self._take(bufsize)
        if data is None:
            data = super().recv(bufsize, flags)
        followed: bytes = self._follow(data)
        return followed

    def recv_into(self, buffer: Any, nbytes: int | None = 0, flags: int = 0) -> int:
        view = memoryview(buffer)
        # 0 and None both mean "as much as fits", whichever socket class comes next.
        want = nbytes or view.nbytes
        if flags & socket.MSG_PEEK:
            if not self._ahead:
                return super().recv_into(buffer, want, flags)
            n = min(want, len(self._ahead))
            view[:n] = self._ahead[:n]
            return n
        data = self._take(want)
        if data is None:
            n = super().recv_into(buffer, want, flags)
            data = bytes(view[:n])
        else:
            n = len(data)
        view[:n] = self._follow(data)
        return n

    def _take(self, want: int) -> bytes | None:
        """Up to ``want`` bytes read ahead (reading ahead first if none are left), or None when
        the caller should read straight from the kernel. Bytes are followed (:meth:`_follow`)
        only as they are handed out, so a bad PDU is refused when it is read, as before."""
        if not self._ahead:
            if want >= self.read_ahead:
                return None
            data = super().recv(self.read_ahead)
            if len(data) <= want:
                return data
            self._ahead = memoryview(data)
        chunk = bytes(self._ahead[:want])
        self._ahead = self._ahead[want:]
        return chunk

    def peek_ahead(self, size: int) -> bytes:
        """Up to ``size`` of the bytes read ahead, left in place."""
        return bytes(self._ahead[:size])

    def take_ahead(self, size: int) -> memoryview | None:
        """The next ``size`` bytes, followed, if all of them have been read ahead; else None,
        having taken nothing. A view of the read-ahead buffer, never written to again: no
        copy of a large P-DATA-TF."""
        if len(self._ahead) < size:
            return None
        data = memoryview(self._ahead)[:size]
        self._ahead = self._ahead[size:]
        followed: memoryview = self._follow(data)
        return followed

    def fill_ahead(self, size: int) -> bool:
        """Read until at least ``size`` bytes are read ahead (one PDU that the last read cut),
        into one new buffer, so that :meth:`take_ahead` then hands it out whole; False when
        the peer closed first (what was read stays ahead). Blocks as a read would."""
        have = len(self._ahead)
        if have >= size:
            return True
        buffer = bytearray(max(size, self.read_ahead))
        buffer[:have] = self._ahead
        view = memoryview(buffer)
        while have < size:
            got = super().recv_into(view[have:], len(buffer) - have)
            if not got:
                break
            have += got
        self._ahead = view[:have]
        return have >= size

    def _follow(self, data: Any) -> Any:
        """Check each PDU header in ``data``; returns ``data`` as pynetdicom is to see it (a
        copy only when :meth:`_accept_version` changes it)."""
        out: bytes | bytearray = data
        pos = 0
        while pos < len(out):
            if self._body_left:
                if self._rq_starts:
                    self._rq_starts = False
                    out = self._accept_version(out, pos)
                taken = min(self._body_left, len(out) - pos)
                self._body_left -= taken
                if self._rq_body is not None:
                    self._rq_body += out[pos : pos + taken]
                    if not self._body_left:
                        self._check_rq(bytes(self._rq_body))
                pos += taken
                continue
            need = 6 - len(self._header)
            self._header += bytes(out[pos : pos + need])
            pos += need
            if len(self._header) == 6:
                pdu_type, _, length = struct.unpack(">BBI", self._header)
                self._header = b""
                self._check(pdu_type, length)
                self._body_left = length
                self._rq_starts = pdu_type == ASSOCIATE_RQ
                self._rq_body = bytearray() if self._rq_starts else None
                if self._rq_starts and not length:
                    self._check_rq(b"")
        return bytes(out) if out is not data else data

    @staticmethod
    def _accept_version(data: bytes | bytearray, pos: int) -> bytes | bytearray:
        """PS3.8 §9.3.2: a receiver of version 1 "shall only test that bit 0 is set", as DCMTK
        does; pynetdicom wants exactly 1, so a version with bit 0 set is shown to it as 1.
        (pynetdicom reads a PDU body in one call: both bytes are in ``data`` together.)"""
        if pos + 2 <= len(data) and data[pos + 1] & 1 and data[pos : pos + 2] != b"\x00\x01":
            data = bytearray(data)
            data[pos : pos + 2] = b"\x00\x01"
        return data

    def _check(self, pdu_type: int, length: int) -> None:
        if pdu_type not in PDU_TYPES:
            self._refuse(UNRECOGNIZED_PDU, f"Unrecognized PDU type: 0x{pdu_type:02X}")
        limit = self.max_pdu if pdu_type == P_DATA_TF and self.max_pdu else OTHER_PDU_LIMIT
        if length > limit:
            # DCMTK's words for the same check (SPEC §4.5).
            message = f"DUL Illegal PDU Length {length}.  Max expected {limit}"
            self._refuse(INVALID_PARAMETER, message)

    def _check_rq(self, body: bytes) -> None:
        self._rq_body = None
        problem = rq_problem(body)
        if problem:
            self._refuse(INVALID_PARAMETER, f"A-ASSOCIATE-RQ: {problem}")

    def _refuse(self, reason: int, message: str) -> None:
        log.error("%s (aborting association)", message)
        abort = struct.pack(">BBIBBBB", 0x07, 0, 4, 0, 0, 2, reason)
        try:
            self.sendall(abort)
            self.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise PduRefused(message)


class GuardedSocket(PduGuard, socket.socket):
    """A TCP socket that checks each PDU header pynetdicom reads through it."""


def guard_dimse(assoc: Association) -> None:
    """Make a DIMSE message that cannot be decoded or served abort ``assoc``, before pynetdicom
    acts on it, instead of ending its DUL thread or being left unanswered."""
    dimse = assoc.dimse
    receive = dimse.receive_primitive
    tracker = MessageTracker()

    def receive_guarded(primitive: Any) -> None:
        problem = tracker.follow(primitive.presentation_data_value_list)
        if not problem:
            try:
                receive(primitive)
            except Exception as err:  # noqa: BLE001 - any decoding failure is the peer's fault
                problem = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        if problem:
            log.error("DIMSE failure (aborting association): %s", problem)
            spool = getattr(dimse.message, "_data_set_file", None)
            if spool is not None:
                spool.close()  # the spool sweep removes the file
            dimse.message = None
            assoc.dul.event_queue.put("Evt19")  # invalid PDU: AA-8 sends the A-ABORT

    dimse.receive_primitive = receive_guarded  # type: ignore[method-assign]


class MessageTracker:
    """Follows the PDVs of an association's DIMSE messages (PS3.8 Annex E, PS3.7 §6.3.1).

    :meth:`follow` names the first thing in a P-DATA-TF that storescp would not serve, or
    returns '' to let pynetdicom decode it. Pure: bytes in, verdicts out.
    """

    def __init__(self) -> None:
        self.context: int | None = None  # of the message being received
        self.command = bytearray()  # command set fragments so far
        self.command_field: int | None = None  # once the command set is complete
        self.in_data_set = False
        self.data_bytes = 0

    def follow(self, pdvs: list[tuple[int, bytes]]) -> str:
        if not pdvs:
            return "P-DATA-TF without presentation data values"
        for context, data in pdvs:
            problem = self._pdv(context, data)
            if problem:
                return problem
        return ""

    def _pdv(self, context: int, data: bytes) -> str:
        if not data:
            return "presentation data value without a message control header"
        if self.context is not None and context != self.context:
            return f"presentation context changed from {self.context} to {context} in a message"
        self.context = context
        header, fragment = data[0], data[1:]
        if header & 1:
            if self.in_data_set:
                return "command fragment inside a data set"
            self.command += fragment
            if len(self.command) > COMMAND_SET_LIMIT:
                return f"command set longer than {COMMAND_SET_LIMIT} bytes"
            return self._command_complete() if header & 2 else ""
        if self.command_field is None:
            return "data set fragment without a command"
        self.data_bytes += len(fragment)
        if self.command_field != C_STORE_RQ and self.data_bytes > MEMORY_DATA_SET_LIMIT:
            field = self.command_field
            return f"data set of command 0x{field:04x} over {MEMORY_DATA_SET_LIMIT} bytes"
        if header & 2:
            self._next_message()
        return ""

    def _command_complete(self) -> str:
        fields = command_fields(bytes(self.command))
        if isinstance(fields, str):
            return fields
        field = fields.get(0x0100)
        if field is None:
            return "command set without a Command Field (0000,0100)"
        if field not in SERVED_COMMANDS:
            # storescp's words (SPEC §5.1).
            return f"Expected C-ECHO or C-STORE request but received DIMSE command 0x{field:04x}"
        self.command = bytearray()
        self.command_field = field
        self.in_data_set = fields.get(0x0800, NO_DATA_SET) != NO_DATA_SET
        if not self.in_data_set:
            self._next_message()
        return ""

    def _next_message(self) -> None:
        self.context = None
        self.command_field = None
        self.in_data_set = False
        self.data_bytes = 0


_PDV_HEAD = struct.Struct(">IB")  # PDV item length, presentation context ID (PS3.8 9.3.5.1)


def split_pdvs(
    pdu: bytes | bytearray | memoryview, start: int = 6
) -> list[tuple[int, memoryview]] | None:
    """The (context ID, message control header + fragment) PDVs of a P-DATA-TF PDU from byte
    ``start`` on, as views of ``pdu`` (whose bytes must not change while they are used), or
    None where pynetdicom's decoder would fail (an item header or value running past the end,
    an item length of 0)."""
    pdvs: list[tuple[int, memoryview]] = []
    view = memoryview(pdu)
    pos, end = start, len(view)
    while pos < end:
        if pos + 5 > end:
            return None
        length, context = _PDV_HEAD.unpack_from(pdu, pos)
        stop = pos + 4 + length
        if not length or stop > end:
            return None
        pdvs.append((context, view[pos + 5 : stop]))
        pos = stop
    return pdvs


def command_fields(data: bytes) -> dict[int, int] | str:
    """The US values of a command set's elements by element number (Implicit VR Little
    Endian, group 0000), or what is wrong with it."""
    fields: dict[int, int] = {}
    pos = 0
    while pos < len(data):
        if pos + 8 > len(data):
            return "command set ends inside an element header"
        group, elem, length = struct.unpack("<HHI", data[pos : pos + 8])
        value = data[pos + 8 : pos + 8 + length]
        if group != 0x0000:
            return f"element ({group:04x},{elem:04x}) in a command set"
        if len(value) != length:
            return f"command element (0000,{elem:04x}) runs past the end of the command set"
        if elem == 0x0000 and length == 4:
            (group_length,) = struct.unpack("<I", value)
            rest = len(data) - pos - 12
            if group_length != rest:
                return f"command group length {group_length} but {rest} bytes follow"
        elif length == 2:
            fields[elem] = struct.unpack("<H", value)[0]
        pos += 8 + length
    return fields


def rq_problem(body: bytes) -> str:
    """What makes an A-ASSOCIATE-RQ body unusable (PS3.8 §9.3.2), or '' when it is sound.

    Only the structure is checked, the things pynetdicom 3.0.4 does not survive: item lengths,
    presentation context IDs (odd), and one abstract syntax and at least one transfer syntax
    in each presentation context. Refusing the AE titles or the contexts' contents is the
    acceptor's business.
    """
    if len(body) < 68:
        return f"{len(body)} bytes, too short"
    pos = 68
    while pos < len(body):
        item = item_at(body, pos, len(body))
        if isinstance(item, str):
            return item
        item_type, start, pos = item
        if item_type == 0x20:
            problem = _context_problem(body, start, pos)
            if problem:
                return problem
    return ""


def _context_problem(body: bytes, start: int, stop: int) -> str:
    """What is wrong with the presentation context item in ``body[start:stop]``, or ''."""
    if stop - start < 4:
        return "presentation context item too short"
    context_id = body[start]
    if not context_id & 1:
        return f"presentation context ID {context_id} is not odd"
    abstract = transfer = 0
    pos = start + 4
    while pos < stop:
        sub_item = item_at(body, pos, stop)
        if isinstance(sub_item, str):
            return f"presentation context {context_id}: sub-item length runs past its end"
        kind, value_start, pos = sub_item
        if pos > value_start:  # an empty sub-item counts for nothing
            abstract += kind == 0x30
            transfer += kind == 0x40
    if abstract != 1:
        return f"presentation context {context_id}: {abstract} abstract syntaxes"
    if not transfer:
        return f"presentation context {context_id}: no transfer syntax"
    return ""


_ITEM_HEAD = struct.Struct(">BxH")  # item type, reserved, item length (PS3.8 9.3.2)


def item_at(data: bytes, pos: int, end: int) -> tuple[int, int, int] | str:
    """The item at ``pos`` as (type, where its value starts, where it ends), or why it runs
    past ``end``. Offsets, not copies: a request of DCMTK's has a few hundred items."""
    if pos + 4 > end:
        return "item header runs past the end"
    item_type, length = _ITEM_HEAD.unpack_from(data, pos)
    if pos + 4 + length > end:
        return "item length runs past the end"
    return item_type, pos + 4, pos + 4 + length
