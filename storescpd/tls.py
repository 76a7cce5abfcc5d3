"""TLS for storescpd (SPEC §10): ``TlsOptions`` → ``ssl.SSLContext``, ``+cc``, the handshake.

The rules (profiles, suite names) are in :mod:`storescpd.tlsprofiles`; this module applies them
with the stdlib ``ssl`` module, which reads key, certificate and CA files. Imports only the
stdlib and core modules: the master builds the context before it binds (so a bad key is a
start-up error), the workers inherit it and do the handshakes (:func:`handshake`).
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import logging
import os
import select
import socket
import ssl
import tempfile
import time
import warnings
from collections.abc import Iterator
from typing import TextIO

from storescpd.options import TlsOptions, header
from storescpd.tlsprofiles import (
    FFDHE2048,
    MIN_DH_BITS,
    PROFILES,
    SUITES,
    TlsError,
    cipher_string,
    dh_prime_bits,
)

log = logging.getLogger(__name__)

_ALL = "ALL:COMPLEMENTOFALL:@SECLEVEL=0"
PEER_CERT = {"require": ssl.CERT_REQUIRED, "verify": ssl.CERT_OPTIONAL, "ignore": ssl.CERT_NONE}
SEED_BYTES = 1024


class TerminalPassword:
    """``+ps``: ask for the key password on the terminal, only if the key is encrypted, and only
    once: a HUP reload (``interactive`` off) reuses the answer instead of blocking the master."""

    def __init__(self) -> None:
        self.answer: str | None = None
        self.interactive = True

    def __call__(self) -> str:
        if self.answer is None:
            if not self.interactive:
                return ""
            try:
                self.answer = getpass.getpass("Enter PEM pass phrase:")
            except (EOFError, OSError):
                self.answer = ""
        return self.answer


def available_suites() -> list[str]:
    """The TLS names of :data:`SUITES` that this Python's OpenSSL can negotiate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers(_ALL)
    built = {cipher["name"] for cipher in context.get_ciphers()}
    return [name for name, openssl in SUITES if openssl in built]


def list_ciphers(stdout: TextIO) -> int:
    """``+cc``: the suites ``+cs`` accepts, one a line, after the identification lines."""
    names = "".join(f"  {name}\n" for name in available_suites())
    stdout.write(f"{header()}\nSupported TLS ciphersuites are:\n{names}")
    return 0


def create_context(tls: TlsOptions, ask: TerminalPassword | None = None) -> ssl.SSLContext:
    """The server context for ``tls`` (SPEC §10); warnings for CA, CRL and DH files that do not
    load, as DCMTK gives them. ``ask`` supplies the password for ``+ps`` (none: the empty one).

    Raises
    ------
    TlsError
        The key, the certificate or the suites cannot be used (DCMTK's fatal errors).
    """
    profile = PROFILES[tls.profile]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers(cipher_string(tls, available_suites()))
    with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated; +px and older ask for them
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = profile.minimum
    context.maximum_version = profile.maximum
    context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_TICKET
    context.verify_mode = PEER_CERT[tls.peer_cert]
    _seed(tls)
    _load_trust(context, tls)
    _load_dh_params(context, tls.dhparam, tls.profile)
    _load_identity(context, tls, ask)
    return context


def _load_dh_params(context: ssl.SSLContext, name: str | None, profile: str) -> None:
    if name is not None:
        bits = _dh_file_bits(name)
        if bits is not None and bits < MIN_DH_BITS:
            log.warning("DH parameter file '%s' has only %d bits (BCP 195: at least %d)",
                        name, bits, MIN_DH_BITS)  # fmt: skip
        try:
            if bits is not None and bits < MIN_DH_BITS and profile == "bcp195-ex":
                raise ValueError("too short for the extended BCP 195 profile")
            context.load_dh_params(name)
            return
        except (OSError, ssl.SSLError, ValueError):
            log.warning("unable to load temporary DH parameter file '%s', ignoring", name)
    with tempfile.TemporaryDirectory(prefix="storescpd-tls-") as folder:
        path = os.path.join(folder, "ffdhe2048.pem")
        _write_private(path, FFDHE2048)
        context.load_dh_params(path)


def _dh_file_bits(name: str) -> int | None:
    try:
        with open(name, encoding="ascii", errors="replace") as f:
            return dh_prime_bits(f.read())
    except OSError:
        return None


def _seed(tls: TlsOptions) -> None:
    # OpenSSL 3 seeds itself from the kernel; a seed file only adds to that.
    if tls.seed is None:
        return
    try:
        with open(tls.seed, "rb") as f:
            data = f.read(SEED_BYTES)
    except OSError:
        log.warning("unable to read random seed file '%s', ignoring", tls.seed)
        return
    ssl.RAND_add(data, 0.0)


def write_seed(tls: TlsOptions) -> None:
    """``+ws``/``+wf``: replace the seed file with fresh random bytes (after an association)."""
    if tls.write_seed_file is None:
        return
    path = tls.write_seed_file
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "wb") as f:
            f.write(ssl.RAND_bytes(SEED_BYTES))
        os.replace(temporary, path)
    except OSError as err:
        log.warning("cannot write random seed file '%s': %s", path, err.strerror or err)
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _load_trust(context: ssl.SSLContext, tls: TlsOptions) -> None:
    for name in tls.cert_files:
        try:
            if tls.key_format == "der":
                with open(name, "rb") as f:
                    context.load_verify_locations(cadata=f.read())
            else:
                context.load_verify_locations(cafile=name)
        except (OSError, ssl.SSLError, ValueError):
            log.warning("unable to load certificate file '%s', ignoring", name)
    for name in tls.cert_dirs:
        if not os.path.isdir(name):
            log.warning("unable to load certificates from directory '%s', ignoring", name)
            continue
        context.load_verify_locations(capath=name)
    for name in tls.crl_files:
        try:
            context.load_verify_locations(cafile=name)
        except (OSError, ssl.SSLError):
            log.warning("unable to load CRL file '%s', ignoring", name)
    if tls.crl_check == "leaf":
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    elif tls.crl_check == "all":
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN


def _load_identity(context: ssl.SSLContext, tls: TlsOptions, ask: TerminalPassword | None) -> None:
    key, cert = tls.private_key_file, tls.certificate_file
    failed_key = TlsError(f"000b:0004 Unable to load private TLS key from '{key}'")
    if not os.access(key, os.R_OK):
        raise failed_key
    if not _certificate_loads(cert, tls.key_format):
        raise TlsError(f"000b:0005 Unable to load certificate from '{cert}'")
    # A callable is only called for an encrypted key; "" is -pw's empty password.
    password: str | TerminalPassword = tls.password if tls.password is not None else ask or ""
    with _pem_files(tls) as (key_pem, cert_pem):
        for key_file in key_pem:
            try:
                context.load_cert_chain(cert_pem, key_file, password)
                return
            except ssl.SSLError as err:
                if "KEY_VALUES_MISMATCH" in str(err) or err.reason == "KEY_VALUES_MISMATCH":
                    raise TlsError(
                        f"000b:0006 Private key '{key}' and certificate '{cert}' do not match"
                    ) from None
                log.debug("private key %s: %s", key, err.reason or err)
            except OSError as err:
                log.debug("private key %s: %s", key, err)
    raise failed_key


def _certificate_loads(name: str, key_format: str) -> bool:
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        if key_format == "der":
            with open(name, "rb") as f:
                probe.load_verify_locations(cadata=f.read())
        else:
            probe.load_verify_locations(cafile=name)
    except (OSError, ssl.SSLError, ValueError):
        return False
    return True


_KEY_LABELS = ("PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")


@contextlib.contextmanager
def _pem_files(tls: TlsOptions) -> Iterator[tuple[list[str], str]]:
    """The key (candidates) and certificate as PEM file names: Python's ``ssl`` reads only PEM,
    so ``-der`` files are re-encoded into a private temporary directory that is removed after
    loading. A DER key does not say which kind it is; each PEM label is tried in turn."""
    if tls.key_format != "der":
        yield [tls.private_key_file], tls.certificate_file
        return
    with tempfile.TemporaryDirectory(prefix="storescpd-tls-") as folder:
        with open(tls.certificate_file, "rb") as f:
            cert_pem = os.path.join(folder, "cert.pem")
            _write_private(cert_pem, ssl.DER_cert_to_PEM_cert(f.read()))
        with open(tls.private_key_file, "rb") as f:
            der = f.read()
        keys = []
        for number, label in enumerate(_KEY_LABELS):
            keys.append(os.path.join(folder, f"key{number}.pem"))
            _write_private(keys[-1], _pem(label, der))
        yield keys, cert_pem


def _pem(label: str, der: bytes) -> str:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n"


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)


def wrap(context: ssl.SSLContext, sock: socket.socket) -> ssl.SSLSocket:
    """``sock`` (now detached) as the server side of a TLS connection yet to shake hands."""
    return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)


def handshake(tls_sock: ssl.SSLSocket, timeout: float) -> None:
    """Do the handshake on a :func:`wrap`-ped socket within ``timeout`` seconds in all (a peer
    that sends its hello a byte at a time cannot stretch it); the socket's own timeout is kept
    for what follows. On failure the caller closes the socket (after saying why).

    Raises
    ------
    ssl.SSLError, OSError
        The handshake failed; ``TimeoutError`` when it did not finish in time.
    """
    previous = tls_sock.gettimeout()
    tls_sock.setblocking(False)
    deadline = time.monotonic() + timeout
    wanted: tuple[list[ssl.SSLSocket], list[ssl.SSLSocket]]
    while True:
        try:
            tls_sock.do_handshake()
            break
        except ssl.SSLWantReadError:
            wanted = ([tls_sock], [])
        except ssl.SSLWantWriteError:
            wanted = ([], [tls_sock])
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not any(select.select(*wanted, [], remaining)):
            raise TimeoutError(f"no TLS handshake within {timeout:g} s")
    tls_sock.settimeout(previous)


def failure_reason(err: BaseException) -> str:
    """OpenSSL's reason in words (``peer did not return a certificate``), as DCMTK logs it."""
    if isinstance(err, ssl.SSLCertVerificationError) and err.verify_message:
        return f"certificate verify failed: {err.verify_message}"
    if isinstance(err, ssl.SSLError) and err.reason:
        return str(err.reason).replace("_", " ").lower()
    if isinstance(err, ssl.SSLEOFError | ConnectionError):
        return "connection closed during the handshake"
    return str(err) or type(err).__name__


def describe(tls_sock: ssl.SSLSocket) -> str:
    """``TLSv1.3, TLS_AES_256_GCM_SHA384, peer CN=client`` for the log."""
    cipher = tls_sock.cipher()
    parts = [tls_sock.version() or "?", cipher[0] if cipher else "?"]
    peer = tls_sock.getpeercert()
    if peer:
        subject = ",".join(
            f"{pair[0]}={pair[1]}"
            for rdn in peer.get("subject", ())
            for pair in rdn
            if isinstance(pair, tuple)
        )
        parts.append(f"peer {subject}")
    return ", ".join(parts)
