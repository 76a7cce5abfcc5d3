"""Command-line parity with DCMTK storescp 3.6.7: same ``error:`` line, same exit status.

The identification lines before ``error:`` differ by design (``$storescpd: …`` vs
``$dcmtk: …``), so only the ``error:`` line and the exit status are compared. No DCMTK server
ever listens here: every command line starts with ``-od <missing directory>``, and storescp
checks the output directory after all options and before it binds (SPEC §3), so a command line
that storescp accepted would still end with status 1 and no ``error:`` line — and not match ours.
A missing ``/usr/bin/storescp`` fails the test under ``CI=true`` and skips it elsewhere.
"""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

import pytest

from storescpd import options
from tests.conftest import dcmtk

PORT = "11112"
# (the "error: …" line or None, exit status, how it ended): "refused" with a message,
# "silent" without any output, "accepted" when only the guard stopped it
Outcome = tuple[str | None, int, str]
GUARD_MESSAGE = "specified output directory does not exist"


def error_line(stderr: str) -> str | None:
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) <= 1, stderr
    return lines[0] if lines else None


def dcmtk_outcome(argv: list[str], cwd: Path) -> Outcome:
    result = subprocess.run(
        [dcmtk("storescp"), *argv], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=30, check=False,
    )  # fmt: skip
    ending = "accepted" if GUARD_MESSAGE in result.stderr else "refused"
    return error_line(result.stderr), result.returncode, ending if result.stderr else "silent"


def our_outcome(argv: list[str]) -> Outcome:
    """Ours, stated as storescp's: an accepted command line would then stop at the guard."""
    out, err = io.StringIO(), io.StringIO()
    result = options.run_command_line(argv, out, err)
    if isinstance(result, options.Options):
        # under --inetd storescp's F: line goes to /dev/null
        return None, 1, "silent" if result.inetd else "accepted"
    return error_line(err.getvalue()), int(result), "refused" if err.getvalue() else "silent"


@pytest.fixture
def guard(tmp_path: Path) -> list[str]:
    """Options that stop storescp before it binds, whatever else the command line holds."""
    return ["-od", str(tmp_path / "missing")]


BAD_COMMAND_LINES = [
    ["-Z", PORT],
    ["--", PORT],
    ["--aetitle=X", PORT],
    ["--verb", PORT],
    ["+pb", PORT],
    [],  # missing port (the guard counts as arguments, so no usage)
    ["-pdu", "abc", PORT],
    ["-pdu", "100", PORT],
    ["-pdu", "200000", PORT],
    ["-pdu", "-5000", PORT],
    ["-pdu", " -5000", PORT],
    ["-pdu", "", PORT],
    ["-pdu", "0x2000", PORT],
    ["-pdu", "5000", "-pdu", "200000", PORT],
    ["--sleep-after", "-1", PORT],
    ["-ts", "-2", PORT],
    ["-ta", "0", PORT],
    ["-td", "0", PORT],
    ["+cl", "10", PORT],
    ["+p", "4", "x", PORT],
    ["0"],
    ["-1"],
    ["65536"],
    ["abc"],
    [""],
    ["@"],
    ["+xs", "+te", PORT],
    ["+xr", "+td", PORT],
    ["+xa", "+ti", PORT],
    ["+te", "+ti", "+xs", PORT],
    ["+B", "+te", PORT],
    ["+B", "-g", PORT],
    ["+B", "-ss", "p", PORT],
    ["-tn", "+uf", PORT],
    ["+uf", "-tn", PORT],
    ["-ll", "info", "-v", PORT],
    ["-ll", "bogus", PORT],
    ["-ll", "WARNING", PORT],
    ["-lc", "f", "-ll", "info", PORT],
    ["+v", PORT],
    ["+v", "-ll", "warn", PORT],
    ["+p", "4", "4", "-F", PORT],
    ["-xf", "f", "p", "+xe", PORT],
    ["-xf", "f", "p", "-pm", PORT],
    ["+tb", "+cl", "5", PORT],
    ["-xcs", "cmd", PORT],
    # not ["-ss", "p", "-xcs", "cmd", "--fork"]: DCMTK refuses it, storescpd's coordinator
    # makes it work (tests/unit/test_options.py)
    ["-rns", PORT],
    ["-tos", "5", PORT],
    ["--fork", "--inetd"],  # storescp is silent: --inetd pointed stderr at /dev/null
    ["-ss", "p", "-xcs", "cmd", "--inetd"],  # end of study is refused with --inetd
    ["-sp", "-rns", "--inetd"],
    ["-q", "-pdu", "1", PORT],  # quiet: no message, still status 1
    ["-q", "-Z", PORT],
    ["-q", "0"],
    [PORT, "-aet"],
    ["-xf", "f"],
    ["+tls", "key"],
    [PORT, "104"],
    ["+pa", PORT],
    ["+px", "+py", PORT],
    ["-ic", "-vc", PORT],
    ["+cf", "x", PORT],
    ["+tls", "k", "c", "-tls", "+pw", "x", PORT],
    ["+tls", "k", "c", "+ws", PORT],
    ["+tls", "k", "c", "+cra", "+crv", PORT],
    ["+tls", "k", "c", "+cs", "X", "+pz", PORT],
    ["+pa", "-tn", "+uf", PORT],
    ["-pdu", "1", "-ll", "x", PORT],
]


@pytest.mark.parametrize("argv", BAD_COMMAND_LINES, ids=lambda argv: " ".join(argv) or "<none>")
def test_bad_command_lines_fail_like_storescp(argv: list[str], guard: list[str],
                                              tmp_path: Path) -> None:  # fmt: skip
    expected = dcmtk_outcome([*guard, *argv], tmp_path)
    assert expected[2] != "accepted", "storescp accepted this command line"
    assert our_outcome([*guard, *argv]) == expected


def test_missing_command_file(guard: list[str], tmp_path: Path) -> None:
    argv = [*guard, f"@{tmp_path / 'nowhere'}", PORT]
    assert our_outcome(argv) == dcmtk_outcome(argv, tmp_path)


def test_command_file_expansion(guard: list[str], tmp_path: Path) -> None:
    command_file = tmp_path / "args"
    command_file.write_text("-pdu 'x y' \"\"\n")
    argv = [*guard, f"@{command_file}", PORT]
    assert our_outcome(argv) == dcmtk_outcome(argv, tmp_path)


def storescp_option_names() -> list[str]:
    """Every short and long option name in storescp's own usage text."""
    usage = subprocess.run([dcmtk("storescp"), "--help"], capture_output=True, text=True,
                           timeout=30, check=True).stdout  # fmt: skip
    names: list[str] = []
    for line in usage.splitlines():
        match = re.match(r"\s+(?:([-+]\S+)\s+)?(--[a-z0-9-]+)\b", line)
        if match:
            names.extend(name for name in match.groups() if name)
    return names


def test_every_storescp_option_is_in_the_table() -> None:
    names = storescp_option_names()
    assert len(names) > 150
    for name in names:
        assert name in options.BY_NAME, name
        option = options.BY_NAME[name]
        assert name in (option.short, option.long)
    ours = {o.long for o in options.OPTIONS}
    assert ours - set(names) == STORESCPD_EXTRAS


# Options storescpd has and DCMTK's storescp has not; each must be in --help like the rest.
STORESCPD_EXTRAS = {
    "--no-echo", "--network-timeout", "--no-sync",
    "--workers", "--max-workers", "--max-requests", "--graceful-timeout",
    "--max-worker-memory", "--worker-timeout", "--max-associations", "--daemon", "--pid-file",
    "--listen", "--worker-idle-timeout", "--access-daemon", "--hosts-allow", "--hosts-deny",
    "--user", "--group", "--max-associations-per-host",
}  # fmt: skip


@pytest.mark.parametrize("position", ["alone", "before-port"])
def test_value_counts_match(position: str, guard: list[str], tmp_path: Path) -> None:
    """Each option at the end, or before the port: storescp's verdict, value counts included."""
    for name in storescp_option_names():
        if options.BY_NAME[name].exclusive:
            continue
        argv = [*guard, name] if position == "alone" else [*guard, name, PORT]
        assert our_outcome(argv) == dcmtk_outcome(argv, tmp_path), name
