"""``+ac`` end to end: the verdicts of tcpdmatch, enforced before any DICOM byte is read.

Clients bind to different 127.0.0.x source addresses to look like different hosts; each rule set
is also given to the real ``tcpdmatch`` so the test's expectation is libwrap's, not ours.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from pynetdicom import AE

from tests.conftest import (
    Server,
    _accepts_connections,
    dcmtk,
    free_port,
    poll_until,
    require_tool,
)

VERIFICATION = "1.2.840.10008.1.1"
CLIENTS = ("127.0.0.1", "127.0.0.5", "127.0.0.9")
RULE_SETS = {
    "deny-all": ("", "ALL: ALL\n"),
    "allow-one": ("storescpd: 127.0.0.5\n", "ALL: ALL\n"),
    "deny-one": ("", "storescpd: 127.0.0.9\n"),
    "except": ("storescpd: 127.0.0.0/255.255.255.0 EXCEPT 127.0.0.1\n", "storescpd: ALL\n"),
    "other-daemon": ("", "storescp: ALL\n"),
}


def tcpdmatch_allows(folder: Path, daemon: str, client: str) -> bool:
    tool = require_tool("tcpdmatch", "/usr/sbin/tcpdmatch")
    out = subprocess.run(
        [tool, "-d", daemon, client], cwd=folder, capture_output=True, text=True, check=False
    ).stdout
    verdicts = [line.split(":", 1)[1].strip() for line in out.splitlines() if "access:" in line]
    assert verdicts, out
    return verdicts[-1] == "granted"


def echo_from(server: Server, source: str) -> bool:
    return echo_to(server.port, source)


@pytest.mark.parametrize(
    "mode", [[], ["--workers", "2"], ["--fork"]], ids=["single", "pool", "fork"]
)
@pytest.mark.parametrize("rules", RULE_SETS, ids=RULE_SETS.keys())
def test_same_verdicts_as_tcpdmatch(storescpd, tmp_path: Path, rules: str, mode: list[str]) -> None:
    allow_text, deny_text = RULE_SETS[rules]
    (tmp_path / "hosts.allow").write_text(allow_text)
    (tmp_path / "hosts.deny").write_text(deny_text)
    server = storescpd(
        [
            *mode, "-v", "+ac", "-dhl",
            "--hosts-allow", str(tmp_path / "hosts.allow"),
            "--hosts-deny", str(tmp_path / "hosts.deny"),
        ]
    )  # fmt: skip
    for client in CLIENTS:
        expected = tcpdmatch_allows(tmp_path, "storescpd", client)
        assert echo_from(server, client) is expected, (rules, client, server.log)
    denied = sum(not tcpdmatch_allows(tmp_path, "storescpd", c) for c in CLIENTS)
    assert server.log.count("TCP wrapper: denied connection from unknown") == denied
    # A refused peer never reached the DICOM layer: no worker or child served it.
    assert server.log.splitlines().count("I: Association Received") == len(CLIENTS) - denied
    assert server.log.count("Association Received in child") == (
        len(CLIENTS) - denied if "--fork" in mode else 0
    )


def test_access_daemon_reuses_storescp_rules(storescpd, tmp_path: Path) -> None:
    (tmp_path / "hosts.allow").write_text("storescp: 127.0.0.5\n")
    (tmp_path / "hosts.deny").write_text("storescp: ALL\n")
    server = storescpd(
        [
            "+ac", "-dhl", "--access-daemon", "storescp",
            "--hosts-allow", str(tmp_path / "hosts.allow"),
            "--hosts-deny", str(tmp_path / "hosts.deny"),
        ]
    )  # fmt: skip
    assert echo_from(server, "127.0.0.5")
    assert not echo_from(server, "127.0.0.9")


def test_hup_rereads_the_rules_without_a_restart(storescpd, tmp_path: Path) -> None:
    allow, deny = tmp_path / "hosts.allow", tmp_path / "hosts.deny"
    allow.write_text("")
    deny.write_text("storescpd: 127.0.0.5\n")
    server = storescpd(
        ["-v", "+ac", "-dhl", "--hosts-allow", str(allow), "--hosts-deny", str(deny)]
    )
    assert not echo_from(server, "127.0.0.5")
    deny.write_text("storescpd: 127.0.0.9\n")
    os.kill(server.pid, signal.SIGHUP)
    # The log line is the loop's acknowledgement that it re-read the files.
    poll_until(lambda: "HUP: reloading" in server.log, 10, "the reload")
    assert echo_from(server, "127.0.0.5")
    assert not echo_from(server, "127.0.0.9")
    assert server.alive()


def start_in_private_etc(
    command: list[str], allow: Path, deny: Path, port: int, log: Path
) -> subprocess.Popen[bytes]:
    """Run ``command`` with ``allow``/``deny`` bind-mounted over /etc's (host files untouched)."""
    script = (
        'mount --bind "$1" /etc/hosts.allow && mount --bind "$2" /etc/hosts.deny && '
        'shift 2 && exec "$@"'
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
             str(allow), str(deny), *command],
            stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, TCP_NODELAY="1"),
        )  # fmt: skip
    poll_until(
        lambda: proc.poll() is not None or _accepts_connections(port), 20, f"{command[0]} to listen"
    )
    assert proc.poll() is None, log.read_text()
    return proc


@pytest.mark.parametrize("rules", RULE_SETS, ids=RULE_SETS.keys())
def test_same_clients_get_through_as_with_dcmtk(tmp_path: Path, rules: str) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private /etc")
    allow_text, deny_text = RULE_SETS[rules]
    allow, deny = tmp_path / "hosts.allow", tmp_path / "hosts.deny"
    # DCMTK's daemon name is "storescp"; storescpd reuses those rules with --access-daemon.
    allow.write_text(allow_text.replace("storescpd:", "storescp:"))
    deny.write_text(deny_text.replace("storescpd:", "storescp:"))
    procs = []
    try:
        ports = {}
        for name, command in {
            "dcmtk": [dcmtk("storescp"), "+ac", "-dhl"],
            "storescpd": [sys.executable, "-m", "storescpd", "+ac", "-dhl",
                          "--access-daemon", "storescp"],
        }.items():  # fmt: skip
            od = tmp_path / name
            od.mkdir()
            ports[name] = free_port()
            command = [*command, "-od", str(od), str(ports[name])]
            log = tmp_path / f"{name}.log"
            procs.append(start_in_private_etc(command, allow, deny, ports[name], log))
        for client in CLIENTS:
            verdicts = {name: echo_to(port, client) for name, port in ports.items()}
            assert verdicts["storescpd"] == verdicts["dcmtk"], (rules, client, verdicts)
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def echo_to(port: int, source: str) -> bool:
    ae = AE(ae_title="ACCESSTEST")
    ae.add_requested_context(VERIFICATION)
    ae.acse_timeout = 5
    ae.network_timeout = 5
    assoc = ae.associate("127.0.0.1", port, bind_address=(source, 0))
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status) and status.Status == 0


def test_name_rules_use_the_reverse_lookup(storescpd, tmp_path: Path) -> None:
    """Without -dhl the peer is matched by name too: localhost is allowed, others are not."""
    (tmp_path / "hosts.allow").write_text("storescpd: localhost\n")
    (tmp_path / "hosts.deny").write_text("storescpd: ALL\n")
    server = storescpd(
        [
            "+ac",
            "--hosts-allow", str(tmp_path / "hosts.allow"),
            "--hosts-deny", str(tmp_path / "hosts.deny"),
        ]
    )  # fmt: skip
    assert echo_from(server, "127.0.0.1")
    assert tcpdmatch_allows(tmp_path, "storescpd", "localhost")
