"""Serve one association on a socket that was accepted elsewhere: the only pynetdicom seam.

The same :class:`Acceptor` serves the single-process mode, ``--fork`` children, pool workers and
``--inetd`` (PYNETDICOM.md §1): a non-binding ``AssociationServer`` subclass is fed the connected
socket through the stdlib ``process_request`` hook, after the socket hygiene of §0.2.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import pydicom.config
import pynetdicom.acse
from pydicom.uid import UID
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext
from pynetdicom.transport import AssociationServer

from storescpd import tls
from storescpd.asconfig import Profile
from storescpd.fsio import spool_prefix
from storescpd.options import Options
from storescpd.proctitle import set_title
from storescpd.worker import associate, reactor
from storescpd.worker.announce import Announcer
from storescpd.worker.associate import memoize_context_answers
from storescpd.worker.contexts import (
    memoize_uid_conversion,
    memoize_uid_validation,
    promiscuous_additions,
    supported_contexts,
    verification_only,
)
from storescpd.worker.dimse import QuickResponseDIMSE, SpillingBuffer, Stream
from storescpd.worker.ending import OpeningWatch, close, stop_dul
from storescpd.worker.meta import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from storescpd.worker.profiles import profile_contexts
from storescpd.worker.store import Storage
from storescpd.worker.wire import GuardedSocket, PduGuard, guard_dimse

log = logging.getLogger(__name__)

APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"
MAX_SEND_PDU = 131072  # DCMTK never sends larger PDUs (SPEC §4.5)
SPOOL_PARENT = tempfile.gettempdir()
"""Where each process makes its spool directory ($TMPDIR), read before we redirect tempfile."""


class QuickAckSocket(GuardedSocket):
    """A TCP socket that re-arms TCP_QUICKACK before the first read after each send.

    A sender that leaves Nagle on (DCMTK's default) holds a small segment until we ACK what
    came before; Linux delays that ACK (~40 ms) once a connection looks interactive, i.e.
    after we send (PYNETDICOM.md §4.2). Re-arming clears that mode and sends an ACK the
    kernel holds back; until we send again, Linux ACKs a read that empties the receive queue
    at once by itself. So while a large object streams in, reads skip the system call.
    """

    _sent = True

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._quickack()
        return super().recv(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int | None = 0, flags: int = 0) -> int:
        self._quickack()
        return super().recv_into(buffer, nbytes, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self._sent = True
        return super().send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._sent = True
        super().sendall(data, flags)

    def _quickack(self) -> None:
        if self._sent:
            self._sent = False
            self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


class QuickAckSSLSocket(PduGuard, ssl.SSLSocket):
    """The TLS counterpart of :class:`QuickAckSocket` (``wrap_socket`` makes a new object, and
    reads the raw socket in C, past its PDU checks: the guard is mixed in here again), which
    can also be handed back the first byte read to see whether the peer speaks. The guard sees
    that byte when it is first read, not when it is handed back."""

    _unread = b""

    def unread(self, data: bytes) -> None:
        self._unread = data + self._unread

    def pending(self) -> int:
        return len(self._unread) + super().pending()

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        if self._unread:
            data, self._unread = self._unread[:buflen], self._unread[buflen:]
            return data
        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return super().recv(buflen, flags)

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        if self._unread:
            data = self.recv(nbytes or len(buffer))
            buffer[: len(data)] = data
            return len(data)
        self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return super().recv_into(buffer, nbytes, flags)


class ConnectedSocketServer(AssociationServer):
    """An ``AssociationServer`` that never binds or listens: it only serves given sockets."""

    def server_bind(self) -> None:
        if self.socket is not None:
            self.socket.close()

    def server_activate(self) -> None:
        pass

    def server_close(self) -> None:
        pass


@dataclass
class _Association:
    """What one association's handlers share (they run in pynetdicom's threads)."""

    assoc: Association | None = None
    sleep_after_pending: bool = False
    hook_pending: dict[str, str] | None = None  # -xcr values, run once the response is out
    association_id: str = ""  # set once announced to the coordinator
    peer_name: str | None = None  # #r, looked up once per association
    receiving: bool = False  # a data set is arriving (for the progress dots)
    aborted_by_option: bool = False
    watch: OpeningWatch | None = None
    requested: bool = False  # the whole A-ASSOCIATE-RQ has arrived


class Acceptor:
    """Everything needed to serve associations, built once per process.

    Parameters
    ----------
    opts : Options
        The parsed command line.
    profile : Profile, optional
        The ``-xf`` profile; it replaces the default contexts.
    tls_context : ssl.SSLContext, optional
        With ``+tls``: every connection is a TLS one, its handshake done here.
    """

    def __init__(
        self,
        opts: Options,
        profile: Profile | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.opts = opts
        self.tls_context = tls_context
        if tls_context is not None:
            tls_context.sslsocket_class = QuickAckSSLSocket
        # Large objects never sit in memory: pynetdicom's own loops spool every data set to a
        # file; the event-driven ones keep small ones in memory and spool only large ones.
        _config.STORE_RECV_CHUNKED_DATASET = not _EVENT_DRIVEN
        _config.LOG_HANDLER_LEVEL = "none"  # we log DCMTK's lines ourselves
        # Take the peer's UIDs as they come (DCMTK does): the store handler, not the decoder,
        # decides what may name a file, and a bad UID must not cost the association.
        _config.VALIDATORS["UI"] = _accept_any_uid
        memoize_uid_validation()
        memoize_uid_conversion()
        memoize_context_answers()
        pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
        pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
        self.spool_dir = ""
        self.fresh_spool()
        self.storage = Storage(opts)
        self.ae = self._make_ae()
        self.contexts: list[PresentationContext]
        if profile is not None:
            self.contexts = profile_contexts(profile)
        elif opts.dcmrecv:
            self.contexts = verification_only()
        else:
            self.contexts = supported_contexts(opts.prefer, echo=not opts.no_echo)
        # DCMTK prints its progress dots on stdout in verbose mode only (not with -d).
        self.progress = opts.log_level == "info" and opts.log_config is None and not opts.inetd
        self.announce = Announcer(opts, self.storage)
        self._handler_started = 0.0  # monotonic start of the running request handler, or 0
        self.process_name = ""  # e.g. "worker 3": then ps shows who this process serves
        self.stored = 0  # objects this process has stored, for the pool's STATUS= line
        self._title = ""

    def handler_running_for(self) -> float:
        """Seconds the current C-STORE handler has been running (0 when none is)."""
        started = self._handler_started
        return time.monotonic() - started if started else 0.0

    def _make_ae(self) -> AE:
        opts = self.opts
        ae = AE(ae_title=(opts.aetitle[:16].strip() or "STORESCP"))
        ae.maximum_pdu_size = opts.max_pdu
        ae.acse_timeout = opts.acse_timeout
        ae.network_timeout = self._idle_timeout()
        ae.dimse_timeout = opts.dimse_timeout
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        ae.maximum_associations = 1000  # the process model enforces limits, not the AE
        return ae

    def _idle_timeout(self) -> int | None:
        return self.opts.network_timeout or None

    def serve_in_child(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        """Serve one association in a freshly forked child, with a spool directory of its own."""
        self.process_name = "child"
        associate.learn_nothing()
        self._show(peer[0])
        self.fresh_spool()
        try:
            self.serve(sock, peer)
        finally:
            self.close()

    def fresh_spool(self) -> None:
        """Give this (newly forked) process a spool directory of its own."""
        # The pid in the name lets the master remove it should this process be killed.
        self.spool_dir = tempfile.mkdtemp(prefix=spool_prefix(os.getpid()), dir=SPOOL_PARENT)
        tempfile.tempdir = self.spool_dir  # pynetdicom spools data sets here

    def close(self) -> None:
        """Remove this process's spool directory."""
        shutil.rmtree(self.spool_dir, ignore_errors=True)

    def serve(self, sock: socket.socket, peer: tuple[str, int]) -> None:
        """Serve one association on ``sock`` until it ends; always closes the socket."""
        self._title = ""
        connected = time.monotonic()
        cutoff: threading.Timer | None = None
        try:
            sock = self._prepare(sock)
            if not self._peer_speaks(sock):
                log.info(
                    "connection from %s closed, or silent for %d s (ACSE timeout), "
                    "before sending anything",
                    peer[0],
                    self.opts.acse_timeout,
                )
                close(sock)
                return
            if self.tls_context is not None:
                secured = self._handshake(sock, peer)
                if secured is None:
                    return
                sock = secured
            state = _Association()
            server = self.ae.make_server(
                ("", 0),
                server_class=ConnectedSocketServer,
                evt_handlers=self._handlers(state),
                contexts=self.contexts,
            )
            cutoff = self._request_cutoff(sock, state, peer, connected)
            server.process_request(sock, peer)
            assoc, watch = state.assoc, state.watch
            if assoc is not None and watch is not None:
                gone = False
                try:
                    gone = watch.wait()
                finally:
                    # Also reached when a stop signal interrupts the wait: the DUL thread is
                    # not a daemon and would keep the process alive.
                    if assoc.is_established:
                        assoc.abort()
                    if assoc.is_alive():  # interrupted, or left waiting for a request
                        assoc.kill()
                    else:
                        stop_dul(assoc, sock, peer[0], self.opts.acse_timeout + 1)
                    if gone:
                        close(sock)
                    reactor.release(assoc)
        finally:
            if cutoff is not None:
                cutoff.cancel()
            self._sweep_spool()
            if self.opts.tls is not None:
                tls.write_seed(self.opts.tls)

    def _handshake(self, sock: socket.socket, peer: tuple[str, int]) -> ssl.SSLSocket | None:
        """TLS before any DICOM byte, bounded by the ACSE timeout; a failure costs only this
        connection (SPEC §10)."""
        assert self.tls_context is not None
        secured = tls.wrap(self.tls_context, sock)
        if isinstance(secured, PduGuard):
            secured.limit(self.opts.max_pdu)
        try:
            tls.handshake(secured, self.opts.acse_timeout)
        except (ssl.SSLError, OSError) as err:
            log.error(
                "Receiving Association failed: TLS handshake with %s failed: %s",
                peer[0],
                tls.failure_reason(err),
            )
            close(secured)
            return None
        log.info("TLS connection from %s: %s", peer[0], tls.describe(secured))
        return secured if self._tls_peer_speaks(secured, peer) else None

    def _tls_peer_speaks(self, secured: ssl.SSLSocket, peer: tuple[str, int]) -> bool:
        # As on plain TCP: a peer that closes or stays silent after the handshake is not an
        # association (pynetdicom would hold this process for the whole ACSE timeout).
        timeout = secured.gettimeout()
        secured.settimeout(self.opts.acse_timeout)
        try:
            first = secured.recv(1)
        except (ssl.SSLError, OSError):
            first = b""
        if not first or not isinstance(secured, QuickAckSSLSocket):
            log.info(
                "TLS connection from %s closed, or silent for %d s (ACSE timeout), "
                "before sending anything",
                peer[0],
                self.opts.acse_timeout,
            )
            close(secured)
            return False
        secured.unread(first)
        secured.settimeout(timeout)
        return True

    def _request_cutoff(
        self, sock: socket.socket, state: _Association, peer: tuple[str, int], connected: float
    ) -> threading.Timer:
        """Close a connection whose A-ASSOCIATE-RQ is not complete within the ACSE timeout
        of its arrival (PS3.8's ARTIM). pynetdicom checks its ARTIM timer only between PDUs
        and the socket timeout only between reads, so a peer dribbling a byte at a time
        would otherwise hold this process for as long as it likes."""

        def cut() -> None:
            if not state.requested:
                log.warning(
                    "association request from %s not complete within %d s (ACSE timeout), "
                    "closing the connection",
                    peer[0],
                    self.opts.acse_timeout,
                )
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes the DUL thread's blocked read

        remaining = max(0.0, connected + self.opts.acse_timeout - time.monotonic())
        timer = threading.Timer(remaining, cut)
        timer.daemon = True
        timer.start()
        return timer

    def _prepare(self, sock: socket.socket) -> socket.socket:
        # A socket passed between processes keeps O_NONBLOCK; pynetdicom needs blocking reads
        # bounded by a timeout so a stalled peer cannot pin us (PYNETDICOM.md §3.10).
        # Every PDU header pynetdicom reads is checked on the way (see storescpd.worker.wire).
        guarded: GuardedSocket
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            guarded = QuickAckSocket(fileno=sock.detach())
        else:
            guarded = GuardedSocket(fileno=sock.detach())
        guarded.limit(self.opts.max_pdu)
        guarded.setblocking(True)
        timeout = self.opts.socket_timeout
        if timeout > 0:
            guarded.settimeout(timeout)
        return guarded

    def _peer_speaks(self, sock: socket.socket) -> bool:
        """Wait for the first byte (ACSE timeout): a connect-and-close, or a connection that
        stays silent, is not an association and has nothing to be answered."""
        readable, _, _ = select.select([sock], [], [], self.opts.acse_timeout)
        if not readable:
            return False
        try:
            return bool(sock.recv(1, socket.MSG_PEEK))
        except OSError:
            return False

    def _sweep_spool(self) -> None:
        # pynetdicom leaves the spool file of an aborted transfer behind; usually there is none.
        with contextlib.suppress(OSError), os.scandir(self.spool_dir) as entries:
            if next(entries, None) is None:
                return
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        try:
            os.makedirs(self.spool_dir, exist_ok=True)
        except OSError as err:
            log.error("cannot recreate spool directory %s: %s", self.spool_dir, err)

    def _handlers(self, state: _Association) -> list[Any]:
        opts = self.opts
        storage = None if opts.ignore else self.storage
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, lambda event: _capture(state, event, storage)),
            (evt.EVT_REQUESTED, lambda event: self._on_requested(state, event)),
            (evt.EVT_ACCEPTED, lambda event: self._on_accepted(state, event)),
            (evt.EVT_CONN_CLOSE, lambda event: self._on_closed(state)),
            (evt.EVT_RELEASED, lambda event: log.info("Association Release")),
            (evt.EVT_ABORTED, lambda event: log.info("Association Aborted")),
            (evt.EVT_C_ECHO, _on_echo),
            (evt.EVT_C_STORE, lambda event: self._on_store(state, event)),
        ]
        if opts.sleep_during or opts.abort_during or opts.dimse_timeout or self.progress:
            handlers.append((evt.EVT_PDU_RECV, lambda event: self._on_pdu_recv(state, event)))
        if opts.sleep_after or opts.exec_on_reception:
            handlers.append((evt.EVT_PDU_SENT, lambda event: self._on_pdu_sent(state, event)))
        return handlers

    def _on_requested(self, state: _Association, event: evt.Event) -> None:
        # Negotiate with our own context list; once established, serve every C-STORE as a
        # storage request whatever its SOP class, as DCMTK does (SPEC §5.1). pynetdicom reads
        # this flag at both moments, and a process serves one association at a time.
        state.requested = True
        _config.UNRESTRICTED_STORAGE_SERVICE = False
        assoc = event.assoc
        if state.watch is not None:
            state.watch.request_taken()
        log.info("Association Received")
        rq = cast(A_ASSOCIATE, assoc.requestor.primitive)  # always set once requested
        self._show(f"{str(rq.calling_ae_title).strip()}@{assoc.requestor.address}")
        if log.isEnabledFor(self._pc_level):
            log.log(
                self._pc_level,
                "Association Parameters:\n%s\n  Implementation Class UID: %s",
                _describe_request(rq),
                assoc.requestor.implementation_class_uid or "",
            )
        if self.opts.refuse:
            log.info("Refusing Association (forced via command line)")
            _reject(assoc, 1, 1, 1)
        elif str(rq.application_context_name) != APPLICATION_CONTEXT:
            log.info(
                "Association Rejected: Bad Application Context Name: %s",
                rq.application_context_name,
            )
            # dcmrecv's rejection is transient (SPEC §12.4)
            _reject(assoc, 2 if self.opts.dcmrecv else 1, 1, 2)
        elif self.opts.dcmrecv and not _any_acceptable(assoc, rq):
            # storescp accepts an association without contexts; dcmrecv rejects it
            log.info("Refusing Association (no acceptable presentation contexts)")
            _reject(assoc, 1, 1, 1)
        elif self.opts.reject and not assoc.requestor.implementation_class_uid:
            log.info("Association Rejected: No Implementation Class UID provided")
            _reject(assoc, 1, 1, 1)
        elif self.opts.promiscuous:
            proposed = [str(cx.abstract_syntax) for cx in rq.presentation_context_definition_list]
            extra = promiscuous_additions(
                proposed, assoc.acceptor.supported_contexts, self.opts.prefer
            )
            if extra:
                assoc.acceptor.supported_contexts = assoc.acceptor.supported_contexts + extra

    def _show(self, what: str) -> None:
        """Put ``[what]`` in the process title, e.g. ``worker 2 [MODALITY@10.1.2.3 CT Image
        Storage]`` (a process title is cheap to set, but only set when it changes)."""
        if self.process_name and what != self._title:
            self._title = what
            set_title(f"{self.process_name} [{what}]")

    @property
    def _pc_level(self) -> int:
        return logging.INFO if self.opts.verbose_pc else logging.DEBUG

    def _on_store(self, state: _Association, event: evt.Event) -> int:
        try:
            return self._store(state, event)
        finally:
            received = getattr(event.request, "DataSet", None)
            if isinstance(received, SpillingBuffer):
                received.discard()  # a large object's spool file, whatever the outcome

    def _store(self, state: _Association, event: evt.Event) -> int:
        if state.aborted_by_option:  # --abort-during already aborted; store nothing
            return 0xA700
        if self.opts.abort_after:
            log.info("Received Store Request (MsgID %s)", event.request.MessageID)
            log.error("ABORT initiated (due to command line options)")
            state.aborted_by_option = True
            event.assoc.abort()
            return 0xA700
        sop_class = UID(str(event.request.AffectedSOPClassUID or ""))
        self._show(f"{self._title.split(' ', 1)[0]} {sop_class.name}")
        self._handler_started = time.monotonic()
        try:
            status = self.storage.store(event)
        finally:
            self._handler_started = 0.0
        if status == 0 and not self.opts.ignore:
            self.stored += 1
            self.announce.stored(state.association_id, event)
        if self.opts.exec_on_reception:
            if state.peer_name is None:
                state.peer_name = self.announce.peer_name(str(event.assoc.requestor.address))
            state.hook_pending = self.announce.reception_values(event, state.peer_name)
        if self.opts.sleep_after:
            state.sleep_after_pending = True
        return status

    def _on_pdu_recv(self, state: _Association, event: evt.Event) -> None:
        pdu = event.pdu
        if not isinstance(pdu, P_DATA_TF):
            return
        data = [header for header in _control_headers(pdu) if not header & 1]
        if not data:
            return
        if self.progress:
            _show_progress(state, data)
        if self.opts.dimse_timeout:
            # -td bounds each wait for the next fragment of a data set; between
            # messages the idle timeout applies again.
            last = bool(data[-1] & 2)
            event.assoc.network_timeout = self._idle_timeout() if last else self.opts.dimse_timeout
        if self.opts.abort_during and not state.aborted_by_option:
            log.error("ABORT initiated (due to command line options)")
            state.aborted_by_option = True
            event.assoc.abort()
        elif self.opts.sleep_during:
            time.sleep(self.opts.sleep_during)

    def _on_accepted(self, state: _Association, event: evt.Event) -> None:
        _on_accepted(event)
        state.association_id = self.announce.opened(event)

    def _on_closed(self, state: _Association) -> None:
        self.announce.closed(state.association_id)
        state.association_id = ""

    def _on_pdu_sent(self, state: _Association, event: evt.Event) -> None:
        if not isinstance(event.pdu, P_DATA_TF):
            return
        if state.hook_pending is not None:
            values, state.hook_pending = state.hook_pending, None
            self.announce.run_reception_command(values)
        if state.sleep_after_pending:
            state.sleep_after_pending = False
            time.sleep(self.opts.sleep_after)


def _accept_any_uid(value: object) -> tuple[bool, str]:
    return True, ""


def _show_progress(state: _Association, headers: list[int]) -> None:
    """``RECV: `` when a data set starts, a dot per fragment, a newline after the last."""
    parts = []
    for header in headers:
        if not state.receiving:
            parts.append("RECV: ")
            state.receiving = True
        parts.append(".")
        if header & 2:
            parts.append("\n")
            state.receiving = False
    sys.stdout.write("".join(parts))
    sys.stdout.flush()


def _control_headers(pdu: P_DATA_TF) -> list[int]:
    """The message control header of each PDV (bit 0: command, bit 1: last fragment)."""
    items = cast(list[Any], pdu.presentation_data_value_items)
    return [item.presentation_data_value[0] for item in items if item.presentation_data_value]


def _capture(state: _Association, event: evt.Event, storage: Storage | None) -> None:
    # EVT_CONN_OPEN comes before the Association thread starts: the moment to swap its loops.
    if _EVENT_DRIVEN:
        reactor.make_event_driven(event.assoc, idle=storage.spare if storage else None)
        dimse = event.assoc.dimse
        if storage is not None and isinstance(dimse, QuickResponseDIMSE):
            dimse.stream_opener = _stream_opener(storage, event.assoc)
    state.assoc = event.assoc
    state.watch = OpeningWatch(event.assoc)
    guard_dimse(event.assoc)


def _stream_opener(
    storage: Storage, assoc: Association
) -> Callable[[C_STORE, int], Stream | None]:
    """What opens a large C-STORE data set's output file as it arrives on ``assoc``."""

    def open_stream(request: C_STORE, context_id: int) -> Stream | None:
        context = assoc._accepted_cx.get(context_id)
        if context is None or not context.transfer_syntax:
            return None
        calling_ae = str(assoc.requestor.ae_title or "").strip()
        return storage.open_stream(request, str(context.transfer_syntax[0]), calling_ae)

    return open_stream


def _any_acceptable(assoc: Association, rq: A_ASSOCIATE) -> bool:
    """Whether negotiation would accept at least one of the proposed contexts (asked of the
    negotiation pynetdicom's ACSE will run, so that profiles and roles count as they will)."""
    roles = {uid: (item.scu_role, item.scp_role)
             for uid, item in assoc.requestor.role_selection.items()}  # fmt: skip
    result, _ = pynetdicom.acse.negotiate_as_acceptor(
        rq.presentation_context_definition_list, assoc.acceptor.supported_contexts, roles
    )
    return any(cx.result == 0x00 for cx in result)


_EVENT_DRIVEN = reactor.supported()


def _reject(assoc: Association, result: int, source: int, reason: int) -> None:
    # Without kill() the socket is closed before the DUL has sent the RJ (PYNETDICOM.md §3.4).
    assoc.acse.send_reject(result, source, reason)
    assoc.kill()


def _describe_request(rq: Any) -> str:
    lines = [
        f"  Calling AE Title: {rq.calling_ae_title}",
        f"  Called AE Title:  {rq.called_ae_title}",
        f"  Application Context: {rq.application_context_name}",
        f"  Maximum PDU Length: {rq.maximum_length_received}",
    ]
    for cx in rq.presentation_context_definition_list:
        syntaxes = ", ".join(str(ts) for ts in cx.transfer_syntax)
        lines.append(f"  Context {cx.context_id}: {cx.abstract_syntax} [{syntaxes}]")
    return "\n".join(lines)


def _on_accepted(event: evt.Event) -> None:
    _config.UNRESTRICTED_STORAGE_SERVICE = True
    assoc = event.assoc
    peer_max = assoc.requestor.maximum_length or 0
    send_pdu = MAX_SEND_PDU if peer_max == 0 or peer_max > MAX_SEND_PDU else peer_max
    log.info("Association Acknowledged (Max Send PDV: %d)", send_pdu - 12)
    if not assoc.accepted_contexts:
        log.info("    (but no valid presentation contexts)")
    if not log.isEnabledFor(logging.DEBUG):
        return  # a line per context: over a hundred with DCMTK's storescu
    for cx in assoc.accepted_contexts + assoc.rejected_contexts:
        log.debug(
            "  Context %s: %s -> result %s, %s",
            cx.context_id,
            cx.abstract_syntax,
            cx.result,
            cx.transfer_syntax[0] if cx.transfer_syntax else "-",
        )


def _on_echo(event: evt.Event) -> int:
    log.info("Received Echo Request (MsgID %s)", event.request.MessageID)
    return 0x0000
