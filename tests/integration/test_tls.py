"""TLS (+tls) against DCMTK's storescu/echoscu and OpenSSL's s_client, with a test CA.

The keys and certificates are made once per session with the ``openssl`` command-line tool:
a CA, a server pair signed by it, a client pair signed by it, and the server key encrypted
with a password.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import dcmtk, free_port, poll_until, require_tool, run_dcmtk
from tests.integration.test_modes import make_instances, stored

PASSWORD = "s3cret-Pa55"


@dataclass(frozen=True)
class Pki:
    ca: Path
    ca_key: Path
    server_key: Path
    server_cert: Path
    client_key: Path
    client_cert: Path
    encrypted_key: Path

    def server(self, *extra: str) -> list[str]:
        return ["+tls", str(self.server_key), str(self.server_cert), "+cf", str(self.ca), *extra]

    def client(self) -> list[str]:
        return ["+tls", str(self.client_key), str(self.client_cert), "+cf", str(self.ca)]

    def anonymous(self) -> list[str]:
        return ["+tla", "+cf", str(self.ca)]


def openssl(*args: str) -> None:
    tool = require_tool("openssl")
    subprocess.run([tool, *args], check=True, capture_output=True, timeout=60)


def _signed_pair(folder: Path, name: str, ca: Path, ca_key: Path) -> tuple[Path, Path]:
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
            "-subj", f"/CN={name}")  # fmt: skip
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
            "-CAcreateserial", "-days", "2", "-out", str(cert))  # fmt: skip
    return key, cert


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca, ca_key = folder / "ca.pem", folder / "ca.key"
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
            "-out", str(ca), "-days", "2", "-subj", "/CN=storescpd test CA")  # fmt: skip
    server_key, server_cert = _signed_pair(folder, "server", ca, ca_key)
    client_key, client_cert = _signed_pair(folder, "client", ca, ca_key)
    encrypted = folder / "server-encrypted.key"
    openssl("pkey", "-in", str(server_key), "-aes256", "-passout", f"pass:{PASSWORD}",
            "-out", str(encrypted))  # fmt: skip
    return Pki(ca, ca_key, server_key, server_cert, client_key, client_cert, encrypted)


def store(port: int, pki: Pki, files: list[Path]) -> subprocess.CompletedProcess[str]:
    return run_dcmtk("storescu", *pki.client(), "127.0.0.1", str(port), *map(str, files))


def echo(port: int, *tls: str) -> subprocess.CompletedProcess[str]:
    return run_dcmtk("echoscu", *tls, "127.0.0.1", str(port), timeout=30)


@pytest.mark.parametrize(
    "mode", [[], ["--fork"], ["--workers", "2"]], ids=["single", "fork", "pool"]
)
def test_storescu_stores_over_tls(
    storescpd, pki: Pki, ct_small: Path, tmp_path: Path, mode: list[str]
) -> None:
    server = storescpd([*pki.server(), "-v", *mode])
    files = make_instances(ct_small, tmp_path / "in", 5)
    sent = store(server.port, pki, files)
    assert sent.returncode == 0, sent.stderr
    assert len(stored(server.od)) == 5
    assert echo(server.port, *pki.client()).returncode == 0
    assert server.stop() == 0
    assert server.log.count("TLS connection from 127.0.0.1: TLSv1.3") == 2
    assert "peer commonName=client" in server.log


def test_inetd_mode_does_the_handshake(
    socket_activate: list[subprocess.Popen[str]], pki: Pki, ct_small: Path, tmp_path: Path
) -> None:
    tool = require_tool("systemd-socket-activate")
    od = tmp_path / "od"
    od.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        # python -m (not the console script, which may belong to another checkout)
        [tool, "--inetd", "-a", "-l", f"127.0.0.1:{port}", sys.executable, "-m", "storescpd",
         "--inetd",
         *pki.server(), "-od", str(od)],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    socket_activate.append(proc)
    assert proc.stderr is not None
    assert "Listening on" in proc.stderr.readline()
    assert echo(port).returncode != 0  # plain TCP: that one process ends, the next is fresh
    sent = store(port, pki, [ct_small])
    assert sent.returncode == 0, sent.stderr
    assert stored(od) == ["CT.1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"]


def test_require_peer_cert_refuses_a_client_without_one(storescpd, pki: Pki) -> None:
    server = storescpd([*pki.server("-rc")])
    refused = echo(server.port, *pki.anonymous())
    assert refused.returncode != 0
    # The client can be gone before the server has logged why (TLS 1.3 checks the client's
    # certificate after the client's side of the handshake is over).
    reason = "TLS handshake with 127.0.0.1 failed: peer did not return a certificate"
    poll_until(lambda: reason in server.log, 10, "the refusal to be logged")
    assert echo(server.port, *pki.client()).returncode == 0


@pytest.mark.parametrize(("mode", "client"), [("-vc", "client"), ("-vc", "anonymous"),
                                               ("-ic", "anonymous")])  # fmt: skip
def test_weaker_peer_cert_modes_accept(storescpd, pki: Pki, mode: str, client: str) -> None:
    server = storescpd([*pki.server(mode), "--workers", "1"])
    tls = pki.client() if client == "client" else pki.anonymous()
    answered = echo(server.port, *tls)
    assert answered.returncode == 0, answered.stderr


def test_untrusted_client_certificate_is_refused(storescpd, pki: Pki) -> None:
    # Trusting only the server's own certificate, not the CA that signed the client's.
    server = storescpd(["+tls", str(pki.server_key), str(pki.server_cert),
                        "+cf", str(pki.server_cert), "--fork"])  # fmt: skip
    assert echo(server.port, *pki.client()).returncode != 0
    poll_until(lambda: "certificate verify failed" in server.log, 10, "the refusal in the log")


@pytest.mark.parametrize("mode", [[], ["--workers", "1"]], ids=["single", "pool"])
def test_plain_tcp_client_fails_and_the_next_tls_client_is_served(
    storescpd, pki: Pki, ct_small: Path, mode: list[str]
) -> None:
    server = storescpd([*pki.server(), *mode])
    plain = echo(server.port)
    assert plain.returncode != 0
    assert "TLS handshake with 127.0.0.1 failed: wrong version number" in server.log
    sent = store(server.port, pki, [ct_small])
    assert sent.returncode == 0, sent.stderr
    assert len(stored(server.od)) == 1


def test_a_silent_tls_peer_is_dropped_after_the_acse_timeout(storescpd, pki: Pki) -> None:
    server = storescpd([*pki.server(), "-ta", "2"])
    with socket.create_connection(("127.0.0.1", server.port)) as peer:
        peer.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
        peer.settimeout(20)
        started = time.monotonic()
        assert peer.recv(100) == b""  # closed by the server
        waited = time.monotonic() - started
    assert 1.5 < waited < 10, waited
    assert "no TLS handshake within 2 s" in server.log
    assert echo(server.port, *pki.client()).returncode == 0


def test_encrypted_key_with_password(storescpd, pki: Pki, ct_small: Path) -> None:
    server = storescpd(["+tls", str(pki.encrypted_key), str(pki.server_cert), "+cf",
                        str(pki.ca), "+pw", PASSWORD, "--arguments", "-d"])  # fmt: skip
    sent = store(server.port, pki, [ct_small])
    assert sent.returncode == 0, sent.stderr
    assert server.stop() == 0
    assert "'--use-passwd' '********'" in server.log
    assert PASSWORD not in server.log


def run_storescpd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "storescpd", *args], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)  # fmt: skip


@pytest.mark.parametrize(
    ("key", "cert", "password", "message"),
    [
        ("encrypted_key", "server_cert", ["+pw", "wrong"],
         "F: 000b:0004 Unable to load private TLS key from '{key}'"),
        ("encrypted_key", "server_cert", ["-pw"],
         "F: 000b:0004 Unable to load private TLS key from '{key}'"),
        ("missing", "server_cert", [], "F: 000b:0004 Unable to load private TLS key from '{key}'"),
        ("server_key", "missing", [], "F: 000b:0005 Unable to load certificate from '{cert}'"),
        ("server_key", "client_cert", [],
         "F: 000b:0006 Private key '{key}' and certificate '{cert}' do not match"),
    ],
    ids=["wrong-password", "null-password", "missing-key", "missing-cert", "mismatch"],
)  # fmt: skip
def test_unusable_key_is_one_fatal_line(
    pki: Pki, tmp_path: Path, key: str, cert: str, password: list[str], message: str
) -> None:
    key_file = str(getattr(pki, key, tmp_path / "no-such.key"))
    cert_file = str(getattr(pki, cert, tmp_path / "no-such.pem"))
    port = str(free_port())
    result = run_storescpd("+tls", key_file, cert_file, *password, "-od", str(tmp_path), port)
    assert result.returncode == 1
    assert result.stderr == message.format(key=key_file, cert=cert_file) + "\n"
    assert result.stdout == ""


def test_wrong_password_message_matches_dcmtk(pki: Pki, tmp_path: Path) -> None:
    ours = run_storescpd("+tls", str(pki.encrypted_key), str(pki.server_cert), "+pw", "wrong",
                         "-od", str(tmp_path), str(free_port()))  # fmt: skip
    theirs = run_dcmtk("storescp", "+tls", str(pki.encrypted_key), str(pki.server_cert), "+pw",
                       "wrong", "-od", str(tmp_path), str(free_port()))  # fmt: skip
    assert (ours.returncode, theirs.returncode) == (1, 1)
    assert ours.stderr.strip() in theirs.stderr.splitlines()


def test_list_ciphers_names_the_suites_dcmtk_lists() -> None:
    ours = run_storescpd("+cc")
    theirs = run_dcmtk("storescp", "+cc")
    assert ours.returncode == 0 and theirs.returncode == 0
    assert "Supported TLS ciphersuites are:" in ours.stdout
    listed = ours.stdout.split("Supported TLS ciphersuites are:\n", 1)[1].split()
    reference = theirs.stdout.split("Supported TLS ciphersuites are:\n", 1)[1].split()
    assert "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" in listed
    assert sorted(listed) == sorted(reference)


def test_cipher_options_are_checked_at_start_up(pki: Pki, tmp_path: Path) -> None:
    unknown = run_storescpd(*pki.server("+cs", "TLS_NO_SUCH_SUITE"), "-od", str(tmp_path),
                            str(free_port()))  # fmt: skip
    assert unknown.returncode == 1
    assert unknown.stderr == "F: ciphersuite 'TLS_NO_SUCH_SUITE' is unknown (see --list-ciphers)\n"
    null = run_storescpd(*pki.server("+cs", "TLS_RSA_WITH_NULL_SHA"), "-od", str(tmp_path),
                         str(free_port()))  # fmt: skip
    assert null.returncode == 1
    assert null.stderr == (
        "F: Unencrypted ciphersuite 'TLS_RSA_WITH_NULL_SHA' not permitted with security "
        "profile 'Non-downgrading BCP 195 TLS Profile'\n"
    )


def s_client(port: int, *args: str) -> str:
    tool = shutil.which("openssl")
    assert tool is not None
    result = subprocess.run(
        [tool, "s_client", "-connect", f"127.0.0.1:{port}", *args],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    ("profile", "version", "expected"),
    [
        ("+py", "-tls1_1", "alert protocol version"),
        ("+py", "-tls1_2", "Cipher is DHE-RSA-AES256-GCM-SHA384"),
        ("+py", "-tls1_3", "TLSv1.3"),
        ("+pz", "-tls1_3", "alert protocol version"),
        ("+pz", "-tls1_2", "Cipher is DHE-RSA-AES256-GCM-SHA384"),
        ("+pa", "-tls1_2", "Cipher is AES128-SHA"),
        ("+pn", "-tls1_2", "Cipher is NULL-SHA"),
        ("+px", "-tls1", "Cipher is AES128-SHA"),
        ("+py", "-tls1", "alert protocol version"),
    ],
)  # fmt: skip
def test_profiles_versions_and_suites(
    storescpd, pki: Pki, profile: str, version: str, expected: str
) -> None:
    server = storescpd([*pki.server(profile, "-ic"), "--workers", "1"])
    cipher = "NULL-SHA:@SECLEVEL=0" if profile == "+pn" else "ALL:@SECLEVEL=0"
    extra = [] if version == "-tls1_3" else ["-cipher", cipher]
    assert expected in s_client(server.port, version, *extra)


def test_hup_reloads_the_key_and_keeps_the_old_one_if_broken(
    storescpd, pki: Pki, tmp_path: Path
) -> None:
    key = tmp_path / "server.key"
    shutil.copy(pki.server_key, key)
    server = storescpd(["+tls", str(key), str(pki.server_cert), "+cf", str(pki.ca),
                        "--workers", "1", "-v"], keep_notify=True)  # fmt: skip
    key.write_text("not a key\n")
    os.kill(server.pid, signal.SIGHUP)
    server.await_notify(b"READY=1")
    assert "HUP: keeping the running options: 000b:0004 Unable to load private TLS key" in (
        server.log
    )
    assert echo(server.port, *pki.client()).returncode == 0
    # An encrypted key without +pw: +ps never prompts on a reload, so the old key stays.
    shutil.copy(pki.encrypted_key, key)
    os.kill(server.pid, signal.SIGHUP)
    server.await_notify(b"READY=1")
    assert server.log.count("HUP: keeping the running options: 000b:0004") == 2
    assert echo(server.port, *pki.client()).returncode == 0
    shutil.copy(pki.server_key, key)
    os.kill(server.pid, signal.SIGHUP)
    server.await_notify(b"READY=1")
    assert "HUP: serving new associations with the re-read options" in server.log
    assert echo(server.port, *pki.client()).returncode == 0
    assert server.stop(signal.SIGTERM) == 0


CA_CONFIG = """\
[ca]
default_ca = test
[test]
database = {folder}/index.txt
crlnumber = {folder}/crlnumber
default_md = sha256
default_crl_days = 2
"""


def test_revoked_client_certificate_is_refused_with_crl(
    storescpd, pki: Pki, tmp_path: Path
) -> None:
    revoked_key, revoked_cert = _signed_pair(tmp_path, "revoked", pki.ca, pki.ca_key)
    config = tmp_path / "ca.cnf"
    config.write_text(CA_CONFIG.format(folder=tmp_path))
    (tmp_path / "index.txt").write_text("")
    (tmp_path / "crlnumber").write_text("01\n")
    ca = ["-config", str(config), "-keyfile", str(pki.ca_key), "-cert", str(pki.ca)]
    openssl("ca", *ca, "-revoke", str(revoked_cert))
    crl = tmp_path / "crl.pem"
    openssl("ca", *ca, "-gencrl", "-out", str(crl))
    server = storescpd([*pki.server("+crl", str(crl)), "--workers", "1"])
    revoked = ["+tls", str(revoked_key), str(revoked_cert), "+cf", str(pki.ca)]
    assert echo(server.port, *revoked).returncode != 0
    poll_until(lambda: "certificate revoked" in server.log, 10, "the refusal in the log")
    assert echo(server.port, *pki.client()).returncode == 0


@pytest.mark.parametrize("convert", [["pkey"], ["rsa", "-traditional"]], ids=["pkcs8", "pkcs1"])
def test_der_key_and_certificates(storescpd, pki: Pki, tmp_path: Path, convert: list[str]) -> None:
    key, cert, ca = tmp_path / "server.der", tmp_path / "server.crt", tmp_path / "ca.der"
    openssl(*convert, "-in", str(pki.server_key), "-outform", "DER", "-out", str(key))
    openssl("x509", "-in", str(pki.server_cert), "-outform", "DER", "-out", str(cert))
    openssl("x509", "-in", str(pki.ca), "-outform", "DER", "-out", str(ca))
    server = storescpd(["+tls", str(key), str(cert), "-der", "+cf", str(ca)])
    answered = echo(server.port, *pki.client())
    assert answered.returncode == 0, answered.stderr + server.log


def test_seed_file_is_rewritten_after_each_association(storescpd, pki: Pki, tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seed.write_bytes(b"\0" * 1024)
    server = storescpd([*pki.server("+rs", str(seed), "+ws"), "--fork"])
    assert echo(server.port, *pki.client()).returncode == 0
    poll_until(lambda: seed.read_bytes() != b"\0" * 1024, 10, "the seed file to be rewritten")
    assert len(seed.read_bytes()) == 1024
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("seed")] == ["seed"]


def test_a_full_pool_closes_a_tls_peer_without_clear_text(
    storescpd, pki: Pki, ct_small: Path
) -> None:
    server = storescpd([*pki.server(), "--workers", "1", "--max-workers", "1",
                        "--sleep-after", "2"])  # fmt: skip
    holder = subprocess.Popen(
        [dcmtk("storescu"), *pki.client(), "127.0.0.1", str(server.port), str(ct_small)],
        env=dict(os.environ, TCP_NODELAY="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        poll_until(lambda: bool(stored(server.od)), 20, "the first store")
        started = time.monotonic()
        refused = echo(server.port, *pki.client())
        assert refused.returncode != 0
        assert time.monotonic() - started < 2  # at once, not after the holder
        # Closed, not answered with a clear-text A-ASSOCIATE-RJ that its TLS layer would
        # misread as a record of a wrong version.
        assert "wrong version number" not in refused.stderr + refused.stdout
        assert "all 1 workers busy, rejecting association from 127.0.0.1" in server.log
    finally:
        _, err = holder.communicate(timeout=60)
    assert holder.returncode == 0, err


@pytest.mark.parametrize("mode", [[], ["--workers", "2"]], ids=["single", "pool"])
@pytest.mark.parametrize(
    "header",
    [b"\x01\x00\xff\xff\xff\xff", b"\x09\x00\x00\x00\x00\x04"],
    ids=["absurd-length", "unknown-type"],
)
def test_pdu_bounds_hold_inside_tls_too(
    storescpd, pki: Pki, mode: list[str], header: bytes
) -> None:
    """The PDU checks of plain TCP (worker/wire.py) also guard a TLS connection: A-ABORT at once,
    nothing of the announced 4 GiB read, and the next client is served."""
    server = storescpd([*pki.server(), "-ta", "5", *mode])
    context = ssl.create_default_context(cafile=str(pki.ca))
    context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    context.check_hostname = False
    with socket.create_connection(("127.0.0.1", server.port)) as raw, context.wrap_socket(
        raw, server_hostname="server"
    ) as peer:
        peer.settimeout(3)
        peer.sendall(header)
        answer = peer.recv(10)
    assert answer[:1] == b"\x07", answer  # A-ABORT, not a wait for the announced body
    assert answer[8:9] == b"\x02"  # source: service provider
    assert echo(server.port, *pki.client()).returncode == 0
    assert server.stop() == 0
