"""``+ac`` end to end: the verdicts of tcpdmatch, enforced before any DICOM byte is read.

Clients bind to different 127.0.0.x source addresses to look like different hosts; each rule set
is also given to the real ``tcpdmatch`` so the test's expectation is libwrap's, not ours.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from pynetdicom import AE

from tests.conftest import Server, poll_until

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
    tool = shutil.which("tcpdmatch") or "/usr/sbin/tcpdmatch"
    if not os.path.exists(tool):
        if os.environ.get("CI") == "true":
            pytest.fail("tcpdmatch is missing on CI")
        pytest.skip("tcpdmatch is not installed")
    out = subprocess.run(
        [tool, "-d", daemon, client], cwd=folder, capture_output=True, text=True, check=False
    ).stdout
    verdicts = [line.split(":", 1)[1].strip() for line in out.splitlines() if "access:" in line]
    assert verdicts, out
    return verdicts[-1] == "granted"


def echo_from(server: Server, source: str) -> bool:
    ae = AE(ae_title="ACCESSTEST")
    ae.add_requested_context(VERIFICATION)
    ae.acse_timeout = 5
    ae.network_timeout = 5
    assoc = ae.associate("127.0.0.1", server.port, bind_address=(source, 0))
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status) and status.Status == 0


@pytest.mark.parametrize("rules", RULE_SETS, ids=RULE_SETS.keys())
def test_same_verdicts_as_tcpdmatch(storescpd, tmp_path: Path, rules: str) -> None:
    allow_text, deny_text = RULE_SETS[rules]
    (tmp_path / "hosts.allow").write_text(allow_text)
    (tmp_path / "hosts.deny").write_text(deny_text)
    server = storescpd(
        [
            "-v", "+ac", "-dhl",
            "--hosts-allow", str(tmp_path / "hosts.allow"),
            "--hosts-deny", str(tmp_path / "hosts.deny"),
        ]
    )  # fmt: skip
    for client in CLIENTS:
        expected = tcpdmatch_allows(tmp_path, "storescpd", client)
        assert echo_from(server, client) is expected, (rules, client, server.log)
    denied = sum(not tcpdmatch_allows(tmp_path, "storescpd", c) for c in CLIENTS)
    assert server.log.count("TCP wrapper: denied connection from unknown") == denied
    # A refused peer never reached the DICOM layer.
    assert server.log.count("Association Received") == len(CLIENTS) - denied


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
