"""storescpd.tlsprofiles and storescpd.tls: profiles, suite names, the +ps password, the
bounded handshake."""

from __future__ import annotations

import base64
import io
import socket
import ssl
import time

import pytest

from storescpd import tls, tlsprofiles
from storescpd.options import OPTIONS, TlsOptions

TLS = TlsOptions("server.key", "server.pem")


def cipher_string(options: TlsOptions) -> str:
    return tlsprofiles.cipher_string(options, tls.available_suites())


def test_every_profile_option_has_a_profile() -> None:
    consts = {o.const for o in OPTIONS if o.dest == "tls.profile"}
    assert consts == set(tlsprofiles.PROFILES)
    assert TLS.profile in tlsprofiles.PROFILES


@pytest.mark.parametrize(
    ("profile", "first", "minimum", "maximum"),
    [
        ("bcp195-nd", "DHE-RSA-AES256-GCM-SHA384", ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3),
        ("bcp195", "DHE-RSA-AES256-GCM-SHA384", ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_3),
        ("bcp195-ex", "ECDHE-ECDSA-AES256-GCM-SHA384", ssl.TLSVersion.TLSv1_2,
         ssl.TLSVersion.TLSv1_2),
        ("aes", "AES128-SHA", ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_2),
        ("null", "NULL-SHA", ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_2),
    ],
)  # fmt: skip
def test_profiles(profile: str, first: str, minimum: object, maximum: object) -> None:
    chosen = tlsprofiles.PROFILES[profile]
    assert (chosen.minimum, chosen.maximum) == (minimum, maximum)
    text = cipher_string(TlsOptions("k", "c", profile=profile))
    assert text.split(":")[0] == first
    assert text.endswith(":@SECLEVEL=0")


def test_every_profile_suite_is_known_by_its_tls_name() -> None:
    openssl_names = {openssl for _, openssl in tlsprofiles.SUITES}
    for profile in tlsprofiles.PROFILES.values():
        assert set(profile.suites) <= openssl_names, profile.title


def test_cipher_adds_a_suite_by_its_tls_name() -> None:
    text = cipher_string(
        TlsOptions("k", "c", ciphers=("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",))
    )
    assert "ECDHE-RSA-CHACHA20-POLY1305" in text.split(":")
    again = cipher_string(TlsOptions("k", "c", ciphers=("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",)))
    assert again == cipher_string(TLS)  # already offered: not twice


@pytest.mark.parametrize(
    ("profile", "cipher", "message"),
    [
        ("bcp195-nd", "ECDHE-RSA-AES128-GCM-SHA256",  # OpenSSL names are not TLS names
         "ciphersuite 'ECDHE-RSA-AES128-GCM-SHA256' is unknown (see --list-ciphers)"),
        ("bcp195", "TLS_RSA_WITH_NULL_SHA",
         "Unencrypted ciphersuite 'TLS_RSA_WITH_NULL_SHA' not permitted with security profile "
         "'BCP 195 TLS Profile'"),
    ],
)  # fmt: skip
def test_cipher_errors(profile: str, cipher: str, message: str) -> None:
    with pytest.raises(tlsprofiles.TlsError) as raised:
        cipher_string(TlsOptions("k", "c", profile=profile, ciphers=(cipher,)))
    assert str(raised.value) == message


def test_null_suite_is_allowed_with_the_null_profile() -> None:
    text = cipher_string(TlsOptions("k", "c", profile="null", ciphers=("TLS_RSA_WITH_NULL_SHA",)))
    assert text == "NULL-SHA:@SECLEVEL=0"


def test_available_suites_are_in_table_order() -> None:
    names = [name for name, _ in tlsprofiles.SUITES]
    available = tls.available_suites()
    assert "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" in available
    assert available == [name for name in names if name in available]


def test_list_ciphers_output() -> None:
    out = io.StringIO()
    assert tls.list_ciphers(out) == 0
    lines = out.getvalue().splitlines()
    start = lines.index("Supported TLS ciphersuites are:")
    assert lines[start + 1 :] == [f"  {name}" for name in tls.available_suites()]


def test_terminal_password_is_asked_once_and_never_on_reload(monkeypatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(tls.getpass, "getpass", lambda prompt: asked.append(prompt) or "pw")
    password = tls.TerminalPassword()
    password.interactive = False
    assert password() == ""  # a reload before anything was asked: no prompt
    password.interactive = True
    assert password() == "pw"
    password.interactive = False
    assert password() == "pw"
    assert len(asked) == 1


def test_password_is_not_in_the_options_repr() -> None:
    assert "secret" not in repr(TlsOptions("k", "c", password="secret"))


def _server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers(cipher_string(TLS))
    return context


def test_handshake_is_bounded_in_total() -> None:
    ours, peer = socket.socketpair()
    with peer:
        peer.sendall(b"\x16\x03\x01")  # a ClientHello that never completes
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"no TLS handshake within 0\.3 s"):
            tls.handshake(tls.wrap(_server_context(), ours), 0.3)
        assert time.monotonic() - started < 2
    assert ours.fileno() == -1  # detached into the TLS socket


def test_handshake_with_a_plain_peer_fails_with_a_reason() -> None:
    ours, peer = socket.socketpair()
    with peer:
        peer.sendall(b"\x01\x00\x00\x00\x00\xcd" + bytes(64))  # an A-ASSOCIATE-RQ's start
        with pytest.raises(ssl.SSLError) as raised:
            tls.handshake(tls.wrap(_server_context(), ours), 5)
    assert tls.failure_reason(raised.value) == "wrong version number"


def test_failure_reasons() -> None:
    assert tls.failure_reason(TimeoutError("no TLS handshake within 2 s")) == (
        "no TLS handshake within 2 s"
    )
    assert tls.failure_reason(ConnectionResetError()) == "connection closed during the handshake"


def _dh_pem(prime: int) -> str:
    def integer(value: int) -> bytes:
        body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # a leading 0: positive
        return b"\x02" + _length(len(body)) + body

    def _length(n: int) -> bytes:
        return bytes([n]) if n < 0x80 else b"\x82" + n.to_bytes(2, "big")

    content = integer(prime) + integer(2)
    der = b"\x30" + _length(len(content)) + content
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN DH PARAMETERS-----\n{body}-----END DH PARAMETERS-----\n"


@pytest.mark.parametrize("bits", [512, 1024, 2048, 4096])
def test_dh_prime_bits(bits: int) -> None:
    assert tlsprofiles.dh_prime_bits(_dh_pem(2 ** (bits - 1) + 1)) == bits


@pytest.mark.parametrize(
    "text",
    ["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
     "-----BEGIN DH PARAMETERS-----\nnot base64!\n-----END DH PARAMETERS-----\n",
     "-----BEGIN DH PARAMETERS-----\nAgEC\n-----END DH PARAMETERS-----\n",  # no SEQUENCE
     ""],
)  # fmt: skip
def test_dh_prime_bits_of_other_text(text: str) -> None:
    assert tlsprofiles.dh_prime_bits(text) is None


def test_dh_prime_bits_of_the_built_in_group() -> None:
    assert tlsprofiles.dh_prime_bits(tlsprofiles.FFDHE2048) == 2048
