"""The accepting process: waits on listeners and signals, accepts, hands connections on.

In DCMTK's default single-process mode it serves each association itself, one at a time, through
the ``serve`` callable it was given (the worker's entry: this module never imports DICOM code).
Signal handlers only record; the loop acts (STYLE example 1): TERM/INT stop after the running
association, a second TERM/INT or QUIT stops at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import logging
import os
import resource
import selectors
import signal
import socket
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import NoReturn

from storescpd import logs, sdnotify
from storescpd.companions import Companions

log = logging.getLogger(__name__)

Serve = Callable[[socket.socket, tuple[str, int]], None]
Admit = Callable[[socket.socket, tuple[str, int]], bool]
"""Decides on a freshly accepted connection; closes it itself when it says no."""

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _note(signo: int, frame: FrameType | None) -> None:
    """A handler that does nothing: Python writes the signal number to the wakeup socket."""


def _reopen_logs(signo: int, frame: FrameType | None) -> None:
    """USR1, in every process: rotated log files are left behind from the next record on."""
    logs.request_reopen()


class Source(enum.Enum):
    LISTENER = enum.auto()
    SIGNALS = enum.auto()


# A-ASSOCIATE-RJ: rejected-transient (2), service-provider presentation (3), local limit (2).
REJECT_LIMIT_EXCEEDED = bytes([0x03, 0x00, 0, 0, 0, 4, 0x00, 2, 3, 2])
DRAIN_SECONDS = 5.0
MAX_DRAINING = 64
"""Rejected connections drained at once (and at most a quarter of the descriptor limit); a
flood beyond that sheds the oldest, so rejected peers cannot take the descriptors the pool
needs for its workers."""
ACCEPT_PAUSE_SECONDS = 1.0
"""Out of file descriptors with nothing to shed: stop accepting this long (the kernel's
listen queue holds new peers meanwhile) instead of spinning on a listener that stays ready."""
OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
LIMIT_WAIT = 1.0
"""How long a connection over --max-associations(-per-host) is held before the transient RJ:
a sender that releases and at once associates again must not be refused because the process
that served it has not quite gone yet."""
MAX_HELD = 8
"""Connections held at once; beyond that, one over a limit is rejected straight away."""
REJECTION_LOG_INTERVAL = 1.0
"""At most one rejection line per peer address in this many seconds: a flood of connections
must not become a flood of log lines that fills the disk."""


@dataclasses.dataclass
class Held:
    """A connection over a limit, given until ``deadline`` for a running association to end."""

    conn: socket.socket
    peer: tuple[str, int]
    deadline: float


@dataclasses.dataclass
class Draining:
    """A rejected connection we read until the peer closes, so the RJ is not lost in a reset."""

    conn: socket.socket
    deadline: float
    forgotten: bool = False


class StopNow(BaseException):
    """Raised in the main thread by a second stop signal: abandon the running association."""


class SingleProcessServer:
    """Serve associations one at a time on ``listeners`` until told to stop.

    Parameters
    ----------
    listeners : sequence of socket.socket
        Listening sockets (bound here or inherited from systemd).
    serve : callable
        Serves one association on a connected socket and closes it.
    admit : callable, optional
        Host access control, asked right after accept.
    max_associations : int
        Concurrent associations beyond which a peer gets a transient A-ASSOCIATE-RJ at once
        (0: no limit). One process serves one association at a time, so this matters for
        the subclasses.
    max_associations_per_host : int
        The same, counted for each peer address (``--max-associations-per-host``).
    """

    def __init__(
        self,
        listeners: Sequence[socket.socket],
        serve: Serve,
        admit: Admit | None = None,
        max_associations: int = 0,
        max_associations_per_host: int = 0,
    ) -> None:
        self.listeners = list(listeners)
        self.serve = serve
        self.admit = admit
        self.max_associations = max_associations
        self.max_associations_per_host = max_associations_per_host
        self.reload: Callable[[], None] | None = None  # what HUP re-reads
        # Tidies what a serving child that did not end normally left behind (its pid given).
        self.after_crash: Callable[[int], None] = lambda pid: None
        # With +tls a peer expects a TLS handshake, which only a worker makes: DICOM bytes
        # in the clear would be garbage to it, so a rejected peer is simply closed.
        self.reject_in_clear = True
        self.exit_status = 0
        self.stopping = False
        self.hurry = False  # a second stop signal, or QUIT: do not wait for anyone
        self.serving = False
        self.serving_host = ""
        self.selector = selectors.DefaultSelector()
        self.draining: list[Draining] = []
        self.held: list[Held] = []
        self._rejections_logged: dict[str, tuple[float, int]] = {}  # host -> (when, since)
        self.accept_paused_until = 0.0  # monotonic; 0: accepting
        self._short_of_fds_logged = -ACCEPT_PAUSE_SECONDS
        self.watchdog = sdnotify.Watchdog.from_environment()
        self.companions = Companions(self._leave_master_state, lambda pid: self.after_crash(pid))
        self._wakeup_r, self._wakeup_w = socket.socketpair()

    def run(self) -> None:
        """Loop until a stop signal; returns normally after a graceful stop."""
        self._install_signals()
        for sock in self.listeners:
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, Source.LISTENER)
        self.selector.register(self._wakeup_r, selectors.EVENT_READ, Source.SIGNALS)
        self.companions.start()
        self._ready()
        try:
            while not self.stopping:
                for key, _ in self.selector.select(self._next_wakeup()):
                    self._on_ready(key)
                self._tick()
                self.watchdog.ping_if_due()
        except StopNow:
            log.warning("stopping at once, abandoning the running association")
        finally:
            sdnotify.notify("STOPPING=1")
            for sock in self.listeners:
                sock.close()
            for item in list(self.draining):
                self._forget(item)
            for held in self.held:
                held.conn.close()
            self.held.clear()
            self.selector.close()
            self._stop_children()
            self.companions.stop()

    def _stop_children(self) -> None:
        """After the loop: let the processes serving associations finish (subclasses)."""

    def _ready(self) -> None:
        """Tell the service manager we serve (subclasses wait for their workers first)."""
        sdnotify.notify("READY=1")

    def _on_ready(self, key: selectors.SelectorKey) -> None:
        if key.data is Source.SIGNALS:
            self._drain_signals()
        elif key.data is Source.LISTENER and not self.stopping:
            self._accept(key.fileobj)  # type: ignore[arg-type]
        elif isinstance(key.data, Draining) and not key.data.forgotten:
            # (an accept earlier in the same batch may have forgotten it to make room)
            self._drain(key.data)

    def _next_wakeup(self) -> float | None:
        deadlines = [d.deadline for d in self.draining] + [h.deadline for h in self.held]
        if self.accept_paused_until:
            deadlines.append(self.accept_paused_until)
        if self.watchdog.enabled:
            deadlines.append(self.watchdog.due)
        timeout = self._select_timeout()
        if timeout is not None:
            deadlines.append(time.monotonic() + timeout)
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    def _select_timeout(self) -> float | None:
        """How long the loop may sleep; subclasses with deadlines shorten it."""
        return None

    def _tick(self) -> None:
        """Called after every wake-up; subclasses check their deadlines here too."""
        now = time.monotonic()
        for item in [d for d in self.draining if d.deadline <= now]:
            self._forget(item)
        if self.accept_paused_until and now >= self.accept_paused_until and not self.stopping:
            self.accept_paused_until = 0.0
            for sock in self.listeners:
                self.selector.register(sock, selectors.EVENT_READ, Source.LISTENER)
        if self.held and not self.stopping:
            self._serve_held(now)

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, peer = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            if err.errno in OUT_OF_DESCRIPTORS:
                self._short_of_descriptors(err)
            else:
                log.error("accept failed: %s", err)
            return
        address = (str(peer[0]), int(peer[1]))
        # Host access control happens here, before a worker or a DICOM byte is involved.
        if self.admit is not None and not self.admit(conn, address):
            return
        limit = self._limit_reached(address[0])
        if limit and len(self.held) < MAX_HELD:
            self.held.append(Held(conn, address, time.monotonic() + LIMIT_WAIT))
        elif limit:
            self._reject(conn, address[0], limit)
        else:
            self._dispatch(conn, address)

    def _serve_held(self, now: float) -> None:
        """After a wake-up (a child reaped, a worker idle, a deadline): serve the held
        connections that fit under the limits now, in order; reject those out of time."""
        held, self.held = self.held, []
        for item in held:
            limit = self._over_limit(item.peer[0])
            if not limit:
                self._dispatch(item.conn, item.peer)
            elif item.deadline <= now:
                self._reject(item.conn, item.peer[0], limit)
            else:
                self.held.append(item)

    def _limit_reached(self, host: str) -> str:
        """Which limit a new association from ``host`` would exceed ('' for none); before
        saying no, learn of associations that have just ended."""
        verdict = self._over_limit(host)
        if verdict:
            self._catch_up()
            verdict = self._over_limit(host)
        return verdict

    def _over_limit(self, host: str) -> str:
        running = self._running()
        if self.max_associations and running >= self.max_associations:
            return f"{running} associations running (--max-associations)"
        per_host = self.max_associations_per_host
        if per_host and (from_host := self._running_from(host)) >= per_host:
            return f"{from_host} associations from {host} running (--max-associations-per-host)"
        return ""

    def _catch_up(self) -> None:
        """Collect news of ended associations now (subclasses: reap, read worker messages)."""

    def _running(self) -> int:
        """Associations being served now."""
        return int(self.serving)

    def _running_from(self, host: str) -> int:
        """Associations being served now for peer address ``host``."""
        return int(self.serving and self.serving_host == host)

    def _children(self) -> set[int]:
        """Every process this master forked that is still ours."""
        return self.companions.pids()

    def _dispatch(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        self.serving = True
        self.serving_host = peer[0]
        try:
            with self.watchdog.kept_alive():
                self.serve(conn, peer)
        finally:
            self.serving = False
            self.serving_host = ""

    def _short_of_descriptors(self, err: OSError) -> None:
        """accept() found no free descriptor: give up the oldest rejected connection we are
        still draining, or, with none, pause accepting. Either way the next peer waits in the
        listen queue, not behind a loop spinning on the ready listener."""
        now = time.monotonic()
        if now - self._short_of_fds_logged >= ACCEPT_PAUSE_SECONDS:
            self._short_of_fds_logged = now
            log.warning(
                "cannot accept a connection: %s (%d rejected connections draining)",
                err.strerror or err,
                len(self.draining),
            )
        if self.draining:
            self._forget(self.draining[0])
            return
        self.accept_paused_until = now + ACCEPT_PAUSE_SECONDS
        for sock in self.listeners:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(sock)

    # --- transient rejection ------------------------------------------------------------

    def _reject(self, conn: socket.socket, host: str, why: str) -> None:
        """Answer A-ASSOCIATE-RJ (transient, local limit exceeded) without reading the RQ;
        log ``why`` (rate-limited per peer address)."""
        self._log_rejection(host, why)
        if not self.reject_in_clear:
            conn.close()
            return
        conn.setblocking(False)
        try:
            conn.send(REJECT_LIMIT_EXCEEDED)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            conn.close()
            return
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        most = MAX_DRAINING if soft_limit == resource.RLIM_INFINITY else soft_limit // 4
        while self.draining and len(self.draining) >= min(MAX_DRAINING, most):
            self._forget(self.draining[0])
        item = Draining(conn, time.monotonic() + DRAIN_SECONDS)
        self.draining.append(item)
        self.selector.register(conn, selectors.EVENT_READ, item)

    def _log_rejection(self, host: str, why: str) -> None:
        now = time.monotonic()
        logged = self._rejections_logged
        last, unlogged = logged.get(host, (-REJECTION_LOG_INTERVAL, 0))
        if now - last < REJECTION_LOG_INTERVAL:
            logged[host] = (last, unlogged + 1)
            return
        more = f" ({unlogged} more from there not logged)" if unlogged else ""
        log.warning("%s, rejecting association from %s%s", why, host, more)
        if len(logged) > 1024:  # many peers: forget the quiet ones, the table stays small
            for old in [h for h, (t, _n) in logged.items() if now - t >= REJECTION_LOG_INTERVAL]:
                del logged[old]
        logged[host] = (now, 0)

    def _drain(self, item: Draining) -> None:
        try:
            if item.conn.recv(65536):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self._forget(item)

    def _forget(self, item: Draining) -> None:
        if item.forgotten:
            return
        item.forgotten = True
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(item.conn)
        item.conn.close()
        self.draining.remove(item)

    def _reap(self) -> None:
        """Collect ended children (subclasses collect their own too)."""
        self.companions.reap(restart=not self.stopping)
        if self.companions.failed:
            self.exit_status = 1
            self.stopping = True

    def _wait_for_signal(self, deadline: float) -> None:
        """Sleep until a signal (SIGCHLD included) arrives or ``deadline`` passes; used while
        waiting for children to finish after the loop has closed its selector."""
        with selectors.DefaultSelector() as sel:
            sel.register(self._wakeup_r, selectors.EVENT_READ)
            sel.select(max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(BlockingIOError):
            while self._wakeup_r.recv(512):
                pass

    def _graceful_deadline(self, timeout: float) -> float:
        """When waiting for running associations must end; tells systemd to wait that long."""
        sdnotify.notify(f"EXTEND_TIMEOUT_USEC={int((timeout + 10) * 1_000_000)}")
        return time.monotonic() + timeout

    def _install_signals(self) -> None:
        for sock in (self._wakeup_r, self._wakeup_w):
            sock.setblocking(False)
        signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        for signo in STOP_SIGNALS:
            signal.signal(signo, self._on_stop_signal)
        signal.signal(signal.SIGQUIT, self._on_quit)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, _note)  # wakes the loop to reap
        signal.signal(signal.SIGHUP, _note)  # the byte on the wakeup socket is what matters
        signal.signal(signal.SIGUSR1, _reopen_logs)  # and the loop passes it on to children

    def _on_stop_signal(self, signo: int, frame: FrameType | None) -> None:
        # Runs in the main thread between bytecodes; only records, except when a second
        # stop signal arrives while an association is being served.
        if self.stopping:
            self.hurry = True
            if self.serving:
                raise StopNow()
        self.stopping = True

    def _on_quit(self, signo: int, frame: FrameType | None) -> None:
        self.stopping = True
        self.hurry = True
        if self.serving:
            raise StopNow()

    def _leave_master_state(self) -> None:
        """In a freshly forked child: the master's signal handling and sockets are not ours."""
        for signo in (*STOP_SIGNALS, signal.SIGQUIT, signal.SIGCHLD, signal.SIGTTIN,
                      signal.SIGTTOU):  # fmt: skip
            signal.signal(signo, signal.SIG_DFL)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGUSR1, _reopen_logs)
        signal.set_wakeup_fd(-1)
        for sock in (*self.listeners, self._wakeup_r, self._wakeup_w):
            sock.close()
        for item in self.draining:
            item.conn.close()
        for held in self.held:
            held.conn.close()
        self.watchdog = sdnotify.Watchdog(0)  # only the master speaks to systemd

    def _drain_signals(self) -> None:
        received = bytearray()
        with contextlib.suppress(BlockingIOError):
            while chunk := self._wakeup_r.recv(512):
                received += chunk
        if signal.SIGHUP in received and self.reload is not None and not self.stopping:
            log.info("HUP: reloading")
            sdnotify.notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
            self.reload()
            self._ready()
        self._reap()
        if signal.SIGUSR1 in received:
            for pid in self._children():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGUSR1)
            log.info("USR1: log files reopened")
        if self.stopping:
            log.info("stop requested, no further associations are accepted")


class ForkingServer(SingleProcessServer):
    """DCMTK's ``--fork``: a child process per accepted association.

    The child serves that one association and leaves with ``os._exit``, never returning into
    this loop (STYLE example 6). Unlike DCMTK, a stop signal lets running children finish.
    """

    def __init__(
        self,
        listeners: Sequence[socket.socket],
        serve: Serve,
        admit: Admit | None = None,
        max_associations: int = 0,
        graceful_timeout: float = 60.0,
        max_associations_per_host: int = 0,
    ) -> None:
        super().__init__(listeners, serve, admit, max_associations, max_associations_per_host)
        self.graceful_timeout = graceful_timeout
        self.children: dict[int, str] = {}  # pid -> the peer address it serves

    def _running(self) -> int:
        return len(self.children)

    def _running_from(self, host: str) -> int:
        return sum(peer == host for peer in self.children.values())

    def _catch_up(self) -> None:
        self._reap()

    def _children(self) -> set[int]:
        return super()._children() | set(self.children)

    def _dispatch(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        try:
            pid = os.fork()
        except OSError as err:
            log.error("cannot fork for the association from %s: %s", peer[0], err.strerror)
            self._reject(conn, peer[0], "cannot fork")
            return
        if pid == 0:
            self._run_child(conn, peer)
        self.children[pid] = peer[0]
        conn.close()
        log.debug("association from %s handed to child process %d", peer[0], pid)

    def _run_child(self, conn: socket.socket, peer: tuple[str, int]) -> NoReturn:
        status = 1
        try:
            self._leave_master_state()
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is the parent's
            log.info("Association Received in child process (pid: %d)", os.getpid())
            self.serve(conn, peer)
            status = 0
        except BaseException:  # a forked child must never unwind into the parent's loop
            log.exception("child process failed")
        finally:
            logging.shutdown()
            os._exit(status)

    def _reap(self) -> None:
        super()._reap()
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            if pid not in self.children:
                self.companions.exited(pid, status, restart=not self.stopping)
                continue
            del self.children[pid]
            if status != 0:
                self.after_crash(pid)
            if os.WIFSIGNALED(status):
                log.warning("child %d was killed by signal %d", pid, os.WTERMSIG(status))
            elif os.WEXITSTATUS(status) != 0:
                log.warning("child %d exited with status %d", pid, os.WEXITSTATUS(status))

    def _stop_children(self) -> None:
        """Let running associations finish (up to the graceful timeout), then kill the rest."""
        if self.children and not self.hurry:
            log.info("waiting for %d running associations", len(self.children))
            deadline = self._graceful_deadline(self.graceful_timeout)
            while self.children and not self.hurry and time.monotonic() < deadline:
                self._wait_for_signal(deadline)
                self._reap()
        for pid in sorted(self.children):
            log.warning("child %d did not finish in time, killing it", pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in sorted(self.children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
                self.after_crash(pid)
        self.children.clear()
        self.companions.reap(restart=False)
