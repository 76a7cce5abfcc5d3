"""TLS for storescpd (SPEC §10): ``TlsOptions`` → ``ssl.SSLContext``, ``+cc``, the handshake.

The rules (profiles, suite names, peer-certificate modes) are data here; the I/O is the stdlib
``ssl`` module reading key, certificate and CA files. Imports only the stdlib and
:mod:`storescpd.options`: the master builds the context before it binds (so a bad key is a
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
from dataclasses import dataclass
from typing import TextIO

from storescpd.options import TlsOptions, header

log = logging.getLogger(__name__)

_BCP195 = (  # the server's preference order, as DCMTK storescp offers them
    "DHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
)
_3DES = "DES-CBC3-SHA"  # dropped silently where OpenSSL no longer builds it (Debian 12)


@dataclass(frozen=True, slots=True)
class Profile:
    """A DICOM security profile: protocol versions and TLS ≤ 1.2 suites (OpenSSL names)."""

    title: str  # as DCMTK names it in its messages
    minimum: ssl.TLSVersion
    maximum: ssl.TLSVersion
    suites: tuple[str, ...]
    encrypted: bool = True  # NULL suites are refused with +cs
    extra_suites: bool = True  # +cs is allowed


PROFILES: dict[str, Profile] = {
    "bcp195-nd": Profile("Non-downgrading BCP 195 TLS Profile", ssl.TLSVersion.TLSv1_2,
                         ssl.TLSVersion.TLSv1_3, _BCP195),
    "bcp195": Profile("BCP 195 TLS Profile", ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_3,
                      (*_BCP195, "AES128-SHA", _3DES)),
    "bcp195-ex": Profile("Extended BCP 195 TLS Profile", ssl.TLSVersion.TLSv1_2,
                         ssl.TLSVersion.TLSv1_2,
                         ("ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256",
                          *_BCP195), extra_suites=False),
    "aes": Profile("AES TLS Secure Transport Connection Profile", ssl.TLSVersion.TLSv1,
                   ssl.TLSVersion.TLSv1_2, ("AES128-SHA", _3DES)),
    "null": Profile("Authenticated unencrypted communication", ssl.TLSVersion.TLSv1,
                    ssl.TLSVersion.TLSv1_2, ("NULL-SHA",), encrypted=False),
}  # fmt: skip

SUITES: tuple[tuple[str, str], ...] = (
    # (TLS name as +cc prints it and +cs takes it, OpenSSL name), in IANA code order
    ("TLS_RSA_WITH_NULL_SHA", "NULL-SHA"),
    ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"),
    ("TLS_RSA_WITH_CAMELLIA_128_CBC_SHA", "CAMELLIA128-SHA"),
    ("TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"),
    ("TLS_RSA_WITH_CAMELLIA_256_CBC_SHA", "CAMELLIA256-SHA"),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"),
    ("TLS_RSA_WITH_AES_256_CBC_SHA256", "AES256-SHA256"),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
    ("TLS_DHE_DSS_WITH_AES_128_CBC_SHA", "DHE-DSS-AES128-SHA"),
    ("TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA", "DHE-DSS-CAMELLIA128-SHA"),
    ("TLS_DHE_RSA_WITH_AES_128_CBC_SHA", "DHE-RSA-AES128-SHA"),
    ("TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA", "DHE-RSA-CAMELLIA128-SHA"),
    ("TLS_DHE_DSS_WITH_AES_128_CBC_SHA256", "DHE-DSS-AES128-SHA256"),
    ("TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", "DHE-RSA-AES128-SHA256"),
    ("TLS_DHE_DSS_WITH_AES_128_GCM_SHA256", "DHE-DSS-AES128-GCM-SHA256"),
    ("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "DHE-RSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", "ECDHE-ECDSA-AES256-SHA384"),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", "ECDHE-RSA-AES256-SHA384"),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"),
    ("TLS_DHE_DSS_WITH_AES_256_CBC_SHA", "DHE-DSS-AES256-SHA"),
    ("TLS_DHE_RSA_WITH_AES_256_CBC_SHA", "DHE-RSA-AES256-SHA"),
    ("TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA", "DHE-DSS-CAMELLIA256-SHA"),
    ("TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA", "DHE-RSA-CAMELLIA256-SHA"),
    ("TLS_DHE_DSS_WITH_AES_256_CBC_SHA256", "DHE-DSS-AES256-SHA256"),
    ("TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", "DHE-RSA-AES256-SHA256"),
    ("TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "DHE-RSA-CHACHA20-POLY1305"),
    ("TLS_DHE_DSS_WITH_AES_256_GCM_SHA384", "DHE-DSS-AES256-GCM-SHA384"),
    ("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "DHE-RSA-AES256-GCM-SHA384"),
)
_OPENSSL_NAME = dict(SUITES)
FFDHE2048 = """\
-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""
"""The RFC 7919 ``ffdhe2048`` group: the DHE parameters used unless ``+dp`` names others
(Python's ``ssl`` has no automatic DH, and DCMTK's storescp offers DHE suites first)."""
_ALL = "ALL:COMPLEMENTOFALL:@SECLEVEL=0"
PEER_CERT = {"require": ssl.CERT_REQUIRED, "verify": ssl.CERT_OPTIONAL, "ignore": ssl.CERT_NONE}
SEED_BYTES = 1024
MIN_DH_BITS = 2048


class TlsError(Exception):
    """TLS material that cannot be used; the text is the one ``F:`` line storescpd logs."""


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


def cipher_string(tls: TlsOptions) -> str:
    """The OpenSSL cipher list for the profile plus ``+cs`` suites (TLS ≤ 1.2 only).

    Raises
    ------
    TlsError
        For a suite name OpenSSL does not know, or an unencrypted one under an encrypting
        profile.
    """
    profile = PROFILES[tls.profile]
    suites = list(profile.suites)
    available = set(available_suites())
    for name in tls.ciphers:
        openssl = _OPENSSL_NAME.get(name)
        if openssl is None or name not in available:
            raise TlsError(f"ciphersuite '{name}' is unknown (see --list-ciphers)")
        if "NULL" in openssl and profile.encrypted:
            raise TlsError(
                f"Unencrypted ciphersuite '{name}' not permitted with security profile "
                f"'{profile.title}'"
            )
        if openssl not in suites:
            suites.append(openssl)
    return ":".join(suites) + ":@SECLEVEL=0"


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
    context.set_ciphers(cipher_string(tls))
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
        bits = dh_prime_bits(name)
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


def dh_prime_bits(name: str) -> int | None:
    """The size of the prime in a PEM ``DH PARAMETERS`` file (``None`` if it cannot be read):
    the DER is ``SEQUENCE { INTEGER p, INTEGER g, ... }``."""
    try:
        with open(name, encoding="ascii", errors="replace") as f:
            text = f.read()
        body = text.split("-----BEGIN DH PARAMETERS-----", 1)[1].split("-----END", 1)[0]
        der = base64.b64decode("".join(body.split()), validate=True)
    except (OSError, IndexError, ValueError):
        return None
    offset = _der_header(der, 0, 0x30)
    if offset is None:
        return None
    start = _der_header(der, offset, 0x02)
    if start is None:
        return None
    length = _der_length(der, offset + 1)
    if length is None:
        return None
    prime = der[start : start + length[0]].lstrip(b"\0")
    return int.from_bytes(prime, "big").bit_length() if prime else None


def _der_header(der: bytes, offset: int, tag: int) -> int | None:
    """Where the contents of the element with ``tag`` at ``offset`` start."""
    if offset >= len(der) or der[offset] != tag:
        return None
    length = _der_length(der, offset + 1)
    return None if length is None else offset + 1 + length[1]


def _der_length(der: bytes, offset: int) -> tuple[int, int] | None:
    """(content length, bytes the length field takes) at ``offset``."""
    if offset >= len(der):
        return None
    first = der[offset]
    if first < 0x80:
        return first, 1
    count = first & 0x7F
    if count == 0 or offset + 1 + count > len(der):
        return None
    return int.from_bytes(der[offset + 1 : offset + 1 + count], "big"), 1 + count


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
