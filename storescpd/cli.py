"""``storescpd [options] port``: command line → checks → listeners → serving loop.

The only place that turns errors into exit statuses (SPEC §3): every command-line, configuration
and start-up error exits with 1, like DCMTK's storescp. ``storescpd-dcmrecv`` runs the same
code with dcmrecv's command line (:mod:`storescpd.recvoptions`) and exit statuses (SPEC §12.5).
"""

from __future__ import annotations

import dataclasses
import functools
import grp
import importlib
import ipaddress
import logging
import os
import pwd
import secrets
import socket
import ssl
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from storescpd import asconfig, daemonize, listeners, logs, options, recvoptions, sdnotify, tls
from storescpd.access import AccessControl
from storescpd.events import EventQueue
from storescpd.exitcodes import ExitCode, RecvExitCode
from storescpd.fsio import (
    dead_spool_owners,
    dead_temporary_owners,
    is_writable_directory,
    remove_spools_of,
    remove_temporaries_of,
)
from storescpd.heartbeat import Heartbeats
from storescpd.master import ForkingServer, SingleProcessServer
from storescpd.prefork import PoolServer, PoolSize, WorkerEntry
from storescpd.proctitle import set_title
from storescpd.studyruns import REGISTRY

if TYPE_CHECKING:
    from storescpd.worker.acceptor import Acceptor

log = logging.getLogger("storescpd")

INETD_OPTIONS = frozenset({"-id", "--inetd"})


class StartupError(Exception):
    """A fatal start-up problem, logged as DCMTK's ``F:``/``E:`` line before exiting with 1.

    ``kind`` says what failed, for storescpd-dcmrecv's exit statuses and texts: ``"config"``
    (the ``-xf`` file or profile), ``"output-directory"``, ``"listen"`` or ``"tls"``;
    ``detail`` is the reason dcmrecv's line gives after its own words.
    """

    def __init__(self, message: str, level: int = logging.CRITICAL, *, kind: str = "",
                 detail: str = "") -> None:  # fmt: skip
        super().__init__(message)
        self.level = level
        self.kind = kind
        self.detail = detail or message


# dcmrecv's fatal lines and exit statuses, by StartupError.kind (SPEC §12.5)
RECV_FAILURES: dict[str, tuple[str, RecvExitCode]] = {
    "config": ("cannot load association configuration: {detail}",
               RecvExitCode.ASSOCIATION_CONFIG),
    "output-directory": ("cannot specify output directory: {detail}",
                         RecvExitCode.OUTPUT_DIRECTORY),
    "listen": ("cannot start SCP and listen on port {port}: {detail}",
               RecvExitCode.CANNOT_LISTEN),
    "tls": ("{detail}", RecvExitCode.TRANSPORT_LAYER),
}  # fmt: skip


def main(argv: Sequence[str] | None = None, program: options.Program | None = None) -> int:
    """Run storescpd (or the command line ``program`` describes); returns the exit status."""
    program = program or options.STORESCP
    args = list(sys.argv[1:] if argv is None else argv)
    inetd_socket = None
    if "--inetd" in program.by_long and INETD_OPTIONS.intersection(args):
        # Before anything can be printed: under xinetd stderr is the peer's socket.
        try:
            inetd_socket = listeners.from_inetd()
        except OSError:
            return ExitCode.INETD_FD
    parsed = options.run_command_line(args, sys.stdout, sys.stderr, tls.list_ciphers,
                                      program=program)  # fmt: skip
    if isinstance(parsed, int):
        return parsed
    opts = parsed
    later = options.not_yet_supported(opts)
    if later:
        sys.stderr.write(options.format_error(f"{later[0]} is not supported yet", program))
        return ExitCode.COMMAND_LINE
    try:
        logs.configure(opts.log_level, opts.log_config)
    except logs.LogConfigError as err:
        sys.stderr.write(options.format_error(str(err), program))
        return ExitCode.COMMAND_LINE
    if opts.arguments:
        _print_arguments(args, program)
    try:
        profile = negotiation_profile(opts)
        if opts.dcmrecv:
            if profile is None:
                log.warning("no configuration file specified, "
                            "SCP will only support the Verification SOP Class")  # fmt: skip
            _check_output_directory(opts)  # dcmrecv checks it before the TLS layer
        return serve(opts, inetd_socket, args, profile, tls_context(opts))
    except StartupError as err:
        if opts.dcmrecv and err.kind in RECV_FAILURES:
            text, status = RECV_FAILURES[err.kind]
            log.critical("%s", text.format(detail=err.detail, port=opts.port))
            return status
        log.log(err.level, "%s", err)
        return ExitCode.COMMAND_LINE


def program_of(opts: options.Options) -> options.Program:
    """The command line ``opts`` came from (a HUP parses it again with the same table)."""
    return recvoptions.DCMRECV if opts.dcmrecv else options.STORESCP


def negotiation_profile(opts: options.Options) -> asconfig.Profile | None:
    """The ``-xf`` profile, read before anything is bound (storescp reads it while evaluating
    its command line) and before ``--user`` may take away the right to read the file."""
    if opts.config_file is None:
        return None
    path, name = opts.config_file
    try:
        return asconfig.scp_profile(asconfig.load(path), name)
    except asconfig.AsconfigError as err:
        raise StartupError(asconfig.fatal_message(err).rstrip(), kind="config",
                           detail=err.message.rstrip()) from None  # fmt: skip


TERMINAL_PASSWORD = tls.TerminalPassword()
"""``+ps``: asked at start-up, remembered for HUP reloads."""


def tls_context(opts: options.Options) -> ssl.SSLContext | None:
    """The ``+tls`` context, made before anything is bound and before ``--user`` may take
    away the right to read the key; the workers inherit it and do the handshakes."""
    if opts.tls is None:
        return None
    try:
        return tls.create_context(opts.tls, TERMINAL_PASSWORD)
    except tls.TlsError as err:
        raise StartupError(str(err), kind="tls") from None


def serve(
    opts: options.Options,
    inetd_socket: socket.socket | None = None,
    args: Sequence[str] = (),
    profile: asconfig.Profile | None = None,
    tls_context: ssl.SSLContext | None = None,
) -> int:
    """Check the environment, open the listeners and serve until stopped.

    With ``--inetd`` a connected socket on fd 0 gets exactly one association; a listening one
    (inetd's ``wait`` contract) is served like any other listener. ``args`` is the command
    line HUP parses again.
    """
    # The DICOM stack is loaded now, before --user drops the rights to read where it is
    # installed; the master's own modules never import it.
    importlib.import_module("storescpd.worker.process")
    importlib.import_module("storescpd.coordinator")
    sockets = listeners.inherited()
    if inetd_socket is not None:
        sockets = [inetd_socket]
    elif not sockets:
        _check_port(opts)
    if not sockets:
        sockets = [_bind(opts, host) for host in opts.listen or ("",)]
    pid_file = _pid_file(opts)
    sdnotify.prepare()
    _drop_privileges(opts)
    _check_output_directory(opts)
    control = _access_control(opts)
    if opts.daemon:
        keep = [s.fileno() for s in sockets] + sdnotify.descriptors()
        keep += daemonize.log_file_descriptors()
        daemonize.detach(keep + ([pid_file.fd] if pid_file is not None else []))
    if pid_file is not None:
        pid_file.write()
    service = Service(opts, args, control, profile, tls_context)
    set_title(f"master [{opts.port or 'inherited'}]")
    try:
        if inetd_socket is not None and not listeners.is_listening(inetd_socket):
            peer = listeners.peer_of(inetd_socket)
            if control is None or control.admit(inetd_socket, peer):
                service.acceptor.serve(inetd_socket, peer)
            return ExitCode.OK
        _remove_leftovers_of_the_dead(opts.output_directory)
        server = service.server(sockets)
        server.run()
        return server.exit_status
    finally:
        service.acceptor.close()
        if pid_file is not None:
            pid_file.release()


FIXED_ON_RELOAD = (
    "port",
    "listen",
    "fork",
    "sort",
    "exec_on_eostudy",
    "rename_on_eostudy",
    "eostudy_timeout",
    "inetd",
    "user",
    "group",
    "daemon",
    "pid_file",
)
"""Settings a HUP cannot change: they shaped the process before it served."""


class Service:
    """What serving needs and HUP rebuilds: the options, the acceptor and host access rules."""

    def __init__(
        self,
        opts: options.Options,
        args: Sequence[str],
        control: AccessControl | None,
        profile: asconfig.Profile | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.opts = opts
        self.args = list(args)
        self.control = control
        self.profile = profile
        self.tls_context = tls_context
        self.heartbeats = Heartbeats() if opts.workers else None
        self.events = _event_queue(opts)
        self.generation = secrets.token_hex(8)
        self.acceptor = self._acceptor(opts)
        self._server: SingleProcessServer | None = None

    def _acceptor(self, opts: options.Options) -> Acceptor:
        from storescpd.worker.acceptor import Acceptor

        acceptor = Acceptor(opts, self.profile, self.tls_context)
        acceptor.announce.events = self.events
        return acceptor

    def _coordinator(self) -> Callable[[], int]:
        from storescpd.coordinator import run_coordinator

        assert self.events is not None
        return functools.partial(run_coordinator, self.opts, self.events, self.generation)

    def server(self, sockets: Sequence[socket.socket]) -> SingleProcessServer:
        """The serving loop for the process mode the options chose."""
        opts = self.opts
        admit = self.control.admit if self.control is not None else None
        server: SingleProcessServer
        if opts.workers:
            server = PoolServer(
                sockets,
                self._worker_entry(),
                _pool_size(opts),
                heartbeats=self.heartbeats,
                graceful_timeout=opts.graceful_timeout,
                admit=admit,
                max_associations=opts.max_associations,
                max_associations_per_host=opts.max_associations_per_host,
            )
        elif opts.fork:
            server = ForkingServer(
                sockets,
                self.acceptor.serve_in_child,
                admit,
                opts.max_associations,
                graceful_timeout=opts.graceful_timeout,
                max_associations_per_host=opts.max_associations_per_host,
            )
        else:
            server = SingleProcessServer(
                sockets,
                self.acceptor.serve,
                admit,
                max_associations_per_host=opts.max_associations_per_host,
            )
        server.reload = self.reload
        server.after_crash = _leftovers_remover(opts.output_directory)
        server.reject_in_clear = self.tls_context is None
        if self.events is not None:
            server.companions.add("coordinator", self._coordinator())
        self._server = server
        return server

    def _worker_entry(self) -> WorkerEntry:
        from storescpd.worker.process import Limits, run_pool_worker

        opts = self.opts
        limits = Limits(opts.max_requests, opts.max_worker_memory, float(opts.worker_timeout))
        return functools.partial(run_pool_worker, self.acceptor, limits, self.heartbeats)

    def reload(self) -> None:
        """HUP: re-read hosts files, parse the command line (and its @files) again, reload the
        -xf profile and the TLS key, certificates and CRLs, and serve new associations with
        the result; on any error keep serving as before."""
        if self.control is not None:
            self.control.load()
        opts = self._reparse()
        if opts is None:
            return
        old, self.opts = self.acceptor, opts
        self.acceptor = self._acceptor(opts)
        server = self._server
        if isinstance(server, PoolServer):
            server.renew(self._worker_entry(), _pool_size(opts))
        elif isinstance(server, ForkingServer):
            server.serve = self.acceptor.serve_in_child
        elif server is not None:
            server.serve = self.acceptor.serve
        if server is not None:
            server.max_associations = opts.max_associations
            server.max_associations_per_host = opts.max_associations_per_host
            server.after_crash = _leftovers_remover(opts.output_directory)
            server.reject_in_clear = self.tls_context is None
            if self.events is not None:
                server.companions.renew("coordinator", self._coordinator())
        old.close()
        log.info("HUP: serving new associations with the re-read options")

    def _reparse(self) -> options.Options | None:
        old = self.opts
        try:
            new = options.parse(self.args, program_of(old))
            later = options.not_yet_supported(new)
            if later:
                raise options.OptionError(f"{later[0]} is not supported yet")
            _check_output_directory(new)
            profile = negotiation_profile(new)
            TERMINAL_PASSWORD.interactive = False  # the master must not wait for a terminal
            context = tls_context(new)
        except options.OptionError as err:
            log.error("HUP: keeping the running options: %s", err.message)
            return None
        except options.InformationRequested:
            log.error("HUP: keeping the running options: the command line asks for information")
            return None
        except StartupError as err:
            log.error("HUP: keeping the running options: %s", err)
            return None
        fixed = {name: getattr(old, name) for name in FIXED_ON_RELOAD}
        if (new.workers > 0) != (old.workers > 0):
            fixed["workers"] = old.workers
        changed = sorted(name for name, value in fixed.items() if getattr(new, name) != value)
        if changed:
            log.warning("HUP: %s only change on a restart", ", ".join(changed))
        new = dataclasses.replace(new, **fixed)
        if new.log_level != old.log_level and new.log_config is None:
            logs.configure(new.log_level)
        self.profile = profile
        self.tls_context = context
        return new


def _leftovers_remover(output_directory: str) -> Callable[[int], None]:
    """Removes what a serving process that was killed could not: its spool directories
    (pynetdicom spools each data set there) and its temporary files in the output directory."""
    from storescpd.worker.acceptor import SPOOL_PARENT

    def remove(pid: int) -> None:
        if remove_spools_of(SPOOL_PARENT, pid):
            log.info("removed the spool directory of process %d", pid)
        folders = _written_folders(output_directory)
        removed = sum(remove_temporaries_of(folder, pid) for folder in folders)
        if removed:
            log.info("removed %d temporary files of process %d", removed, pid)

    return remove


def _remove_leftovers_of_the_dead(output_directory: str) -> None:
    """At start-up: what the processes of a server killed as a whole (SIGKILL of the master,
    a power cut) left behind, which no master was there to remove."""
    from storescpd.worker.acceptor import SPOOL_PARENT

    remove = _leftovers_remover(output_directory)
    dead = dead_spool_owners(SPOOL_PARENT)
    for folder in _written_folders(output_directory):
        dead |= dead_temporary_owners(folder)
    for pid in sorted(dead):
        remove(pid)


def _written_folders(output_directory: str) -> tuple[str, str]:
    """Where a killed process's temporary files are looked for: the output directory and the
    study registry with the coordinator's journal (not the study folders, whose listing
    would cost a large archive too much)."""
    return output_directory, os.path.join(output_directory, REGISTRY)


def _event_queue(opts: options.Options) -> EventQueue | None:
    """The queue to the coordinator, when the options need one: to end studies (``-xcs``,
    ``-rns``, ``-tos``), or to close study folders that several processes share."""
    if opts.inetd:
        return None
    ends = opts.exec_on_eostudy or opts.rename_on_eostudy or opts.eostudy_timeout is not None
    if not (ends or (opts.sort and (opts.fork or opts.workers))):
        return None
    # Pool workers write to the ring of their index (from 1); a HUP's new workers take
    # further indexes while the old ones finish. Beyond that, slot 0 is shared, locked.
    producers = 2 * (opts.max_workers or opts.workers) + 2 if opts.workers else 1
    return EventQueue(producers)


def _pool_size(opts: options.Options) -> PoolSize:
    return PoolSize(
        opts.workers,
        opts.max_workers or opts.workers,
        float(opts.worker_timeout),
        float(opts.worker_idle_timeout),
    )


def _pid_file(opts: options.Options) -> daemonize.PidFile | None:
    if opts.pid_file is None:
        return None
    try:
        return daemonize.PidFile(opts.pid_file)
    except daemonize.PidFileError as err:
        raise StartupError(str(err)) from None


def _access_control(opts: options.Options) -> AccessControl | None:
    """``+ac``: the check the accepting process makes before serving anyone."""
    if not opts.access_control:
        return None
    control = AccessControl(
        _daemon_name(opts),
        opts.hosts_allow,
        opts.hosts_deny,
        lookup=not opts.disable_host_lookup,
    )
    control.load()
    problems = control.unreadable()
    if problems:
        raise StartupError(problems[0])
    return control


def _daemon_name(opts: options.Options) -> str:
    """The name hosts.allow rules are matched against: ``--access-daemon``, else the program
    name as invoked (so a link named ``storescp`` picks up DCMTK's rules), else ``storescpd``."""
    if "--access-daemon" in opts.used_options:
        return opts.access_daemon
    name = os.path.basename(sys.argv[0])
    return opts.access_daemon if not name or name.endswith(".py") else name


def _drop_privileges(opts: options.Options) -> None:
    """``--user``/``--group``: give up root once the port is bound (DESIGN §5)."""
    if opts.user is None and opts.group is None:
        return
    try:
        account = pwd.getpwnam(opts.user) if opts.user is not None else None
    except KeyError:
        raise StartupError(f"cannot drop privileges: unknown user {opts.user}") from None
    try:
        gid = grp.getgrnam(opts.group).gr_gid if opts.group is not None else None
    except KeyError:
        raise StartupError(f"cannot drop privileges: unknown group {opts.group}") from None
    if gid is None and account is not None:
        gid = account.pw_gid
    try:
        if gid is not None:
            os.setgroups([gid])
            os.setgid(gid)
        if account is not None:
            os.setuid(account.pw_uid)
    except OSError as err:
        raise StartupError(f"cannot drop privileges: {err.strerror}") from err
    log.info("serving as uid %d, gid %d", os.getuid(), os.getgid())


def _check_port(opts: options.Options) -> None:
    if opts.port is not None and opts.port < 1024 and os.geteuid() != 0:
        raise StartupError(f"cannot listen on port {opts.port}, insufficient privileges",
                           kind="listen", detail="insufficient privileges")  # fmt: skip


def _bind(opts: options.Options, host: str) -> socket.socket:
    assert opts.port is not None
    if host:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise StartupError(f"cannot listen on {host}: not an IPv4 or IPv6 address") from None
    try:
        return listeners.bind(opts.port, host)
    except OSError as err:
        reason = err.strerror or str(err)
        raise StartupError(f"cannot create network: {reason}", logging.ERROR, kind="listen",
                           detail=f"TCP Initialization Error: {reason}") from err


def _check_output_directory(opts: options.Options) -> None:
    directory = opts.output_directory
    if not os.path.isdir(directory):
        raise StartupError("specified output directory does not exist",
                           kind="output-directory", detail="Directory does not exist")
    if not opts.ignore and not is_writable_directory(directory):
        raise StartupError("specified output directory is not writeable",
                           kind="output-directory", detail="Directory is not writable")


def _print_arguments(args: Sequence[str], program: options.Program) -> None:
    """``--arguments``: one INFO line whatever the log level (SPEC §1.4)."""
    expanded = options.expanded_arguments(args, program)
    for i, arg in enumerate(expanded[:-1]):
        if arg == "--use-passwd":  # a key password is never echoed or logged
            expanded[i + 1] = "*" * 8
    quoted = "".join(f"'{a}' " for a in expanded)
    sys.stderr.write(f"I: calling '{sys.argv[0]}' with {len(expanded)} arguments: {quoted}\n")
