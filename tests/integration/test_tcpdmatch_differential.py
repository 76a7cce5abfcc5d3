"""Differential test: storescpd.hosts_access.decide against libwrap's own oracle, tcpdmatch.

Thousands of generated rule sets x clients x daemon names; ``tcpdmatch -d`` reads hosts.allow and
hosts.deny from its working directory. We build our request from what tcpdmatch says it used
(client/server host name and address, user), so its own name lookups cannot skew the comparison.

Limits: client names are only ``localhost`` (resolvable from /etc/hosts), ``unknown`` and
``paranoid``; tcpdmatch never looks up a client address. Server endpoints are ``127.0.0.1``,
``localhost``, ``unknown`` and ``paranoid`` only: tcpdmatch reverse-resolves a server address, and
one missing from /etc/hosts would go to DNS. NIS netgroups, ``user`` and
``group`` options (they look up the account database) and % expansion text are not compared here:
tcpdmatch prints only the verdict on stdout (its rule and option lines go to syslog).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from storescpd import hosts_access as ha

SEED = 20240605
RULE_SETS = 260
QUERIES_PER_SET = 12
TCPDMATCH = shutil.which("tcpdmatch") or (
    "/usr/sbin/tcpdmatch" if os.path.exists("/usr/sbin/tcpdmatch") else None
)

CLIENTS = [
    "10.1.2.3",
    "10.1.2.200",
    "10.9.2.3",
    "11.0.0.1",
    "192.168.7.66",
    "192.168.7.5",
    "127.0.0.1",
    "0.0.0.1",
    "::1",
    "2001:db8::5",
    "fe80::1",
    "::ffff:10.1.2.3",
    "::ffff:127.0.0.1",
    "unknown",
    "paranoid",
    "localhost",
]
USERS = ["", "", "", "bob@", "root@", "B.x@"]
DAEMONS = ["sd", "SD", "other", "s.d", "unknown"]
# Server addresses without an /etc/hosts entry would make tcpdmatch ask DNS (5 s timeouts here).
SERVERS = ["", "", "", "@127.0.0.1", "@localhost", "@unknown", "@paranoid"]

CLIENT_TOKENS = [
    "10.1.2.3",
    "127.0.0.1",
    "192.168.7.66",
    "[::1]",
    "[2001:db8::5]",
    "[0:0::1]",
    "10.",
    "10.1.",
    "192.168.",
    "127.",
    "1",
    "10.1.2.3.",
    "010.1.2.3",
    ".2.3",
    ".localhost",
    ".0.1",
    ".host",
    ".",
    "localhost",
    "LocalHost",
    "other.host",
    "10.0.0.0/8",
    "10.1.2.0/255.255.255.0",
    "10.1.2.3/32",
    "10.1.2.0/24",
    "10.1.2.3/24",
    "0.0.0.0/0",
    "0.0.0.0/0.0.0.0",
    "192.168.7.64/30",
    "192.168.7.64/255.255.255.192",
    "127.0.0.0/255.0.0.0",
    "10.1.2.3/255.255.255.255",
    "0xa.1.2.3/32",
    "012.1.2.3/32",
    "10.1.2/24",
    "10.1.2.0/33",
    "10.1.2.0/24x",
    "10.1.2.128/+25",
    "11.0.0.0/255.0.255.0",
    "[2001:db8::]/32",
    "[::]/0",
    "[fe80::]/10",
    "[::1]/128",
    "[2001:db8::4]/127",
    "[::ffff:10.1.2.3]",
    "[10.1.2.3]",
    "[::1]/129",
    "[2001:DB8::]/32x",
    "10.1.*",
    "*.3",
    "10.?.2.3",
    "local*",
    "*",
    "?",
    "UNKNOW?",
    "2001*",
    "*:*",
    "1*1",
    "ALL",
    "all",
    "LOCAL",
    "KNOWN",
    "UNKNOWN",
    "PARANOID",
    "known",
    "unknown",
    "paranoid",
    "bob@ALL",
    "root@10.1.2.3",
    "KNOWN@ALL",
    "UNKNOWN@10.",
    "b*@ALL",
    "@netgroup",
    "ALL@",
    "B.@ALL",
]
DAEMON_TOKENS = [
    "sd",
    "SD",
    "other",
    "ALL",
    "s?",
    "s*",
    ".d",
    "s.",
    "KNOWN",
    "UNKNOWN",
    "sd@127.0.0.1",
    "sd@127.0.0.2",
    "ALL@LOCAL",
    "sd@UNKNOWN",
    "sd@[::1]",
    "ALL@127.",
    "sd@",
    "@sd",
    "ALL@KNOWN",
    "sd@PARANOID",
]
OPTIONS = [
    "allow",
    "deny",
    "ALLOW",
    "Deny",
    "severity info",
    "severity mail.warning",
    "severity bogus",
    "severity = notice",
    "spawn /bin/echo %a %h",
    "twist /bin/echo %d",
    "setenv X %c",
    "keepalive",
    "keepalive 3",
    "nice",
    "nice x",
    "nice -3",
    "umask 022",
    "umask 999",
    "linger 5",
    "linger -1",
    "rfc931",
    "rfc931 0",
    "banners /tmp",
    "aclexec /bin/true",
    "bogus",
    "",
    "spawn echo a\\:b",
    "allow=",
    "allow yes",
    "spawn",
    "twist",
]


@dataclass(frozen=True)
class Case:
    directory: Path
    daemon: str
    client: str


def _token_list(rng: random.Random, pool: list[str], lists: list[str]) -> str:
    tokens = [rng.choice(pool + lists) for _ in range(rng.randint(1, 4))]
    if rng.random() < 0.3:
        tokens.insert(rng.randint(0, len(tokens)), rng.choice(["EXCEPT", "except"]))
    if rng.random() < 0.1:
        tokens += ["EXCEPT", rng.choice(pool)]
    return "".join(tok + rng.choice([" ", ", ", ",", "\t"]) for tok in tokens).rstrip(" ,\t")


def _options(rng: random.Random) -> str:
    if rng.random() < 0.55:
        return ""
    chosen = [rng.choice(OPTIONS) for _ in range(rng.randint(1, 3))]
    return "".join(rng.choice([":", " : ", ": "]) + option for option in chosen)


def _line(rng: random.Random, lists: list[str]) -> str:
    roll = rng.random()
    if roll < 0.05:
        return "# " + _token_list(rng, CLIENT_TOKENS, [])
    if roll < 0.08:
        return rng.choice(["", "   ", "  # indented", "sd ALL"])
    daemons = _token_list(rng, DAEMON_TOKENS, [])
    clients = _token_list(rng, CLIENT_TOKENS, lists)
    line = f"{daemons}{rng.choice([':', ' : ', ': '])}{clients}{_options(rng)}"
    if rng.random() < 0.08 and " " in line:
        cut = rng.choice([i for i, c in enumerate(line) if c == " "])
        line = line[:cut] + " \\\n" + line[cut:]
    return line


def _table(rng: random.Random, lists: list[str]) -> str:
    lines = [_line(rng, lists) for _ in range(rng.randint(0, 6))]
    ending = "\r\n" if rng.random() < 0.05 else "\n"
    text = "".join(line + ending for line in lines)
    if rng.random() < 0.02:
        text += "sd: ALL"  # no final newline
    if rng.random() < 0.02:
        text = "ALL: ALL" + " " * rng.choice([2030, 2038, 2039]) + "\n" + text
    return text


def _rule_set(rng: random.Random, directory: Path) -> None:
    directory.mkdir()
    lists = [str(directory / "missing")]
    for index in range(2):
        path = directory / f"list{index}"
        path.write_text(" ".join(rng.sample(CLIENT_TOKENS, 4)) + "\n")
        lists.append(str(path))
    (directory / "hosts.allow").write_text(_table(rng, lists))
    (directory / "hosts.deny").write_text(_table(rng, lists))


def _cases(rng: random.Random, root: Path) -> list[Case]:
    cases = []
    for number in range(RULE_SETS):
        directory = root / f"set{number:03d}"
        _rule_set(rng, directory)
        for _ in range(QUERIES_PER_SET):
            daemon = rng.choice(DAEMONS) + rng.choice(SERVERS)
            client = rng.choice(USERS) + rng.choice(CLIENTS)
            cases.append(Case(directory, daemon, client))
    return cases


def _oracle(case: Case) -> str:
    assert TCPDMATCH is not None
    done = subprocess.run(
        [TCPDMATCH, "-d", case.daemon, case.client],
        cwd=case.directory,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout


def _ours(case: Case, oracle_output: str) -> ha.Outcome:
    seen: dict[str, str] = {}
    for line in oracle_output.splitlines():
        key, _, value = line.partition(":")
        words = value.split(None, 1)
        if len(words) == 2:
            seen[f"{key} {words[0]}"] = words[1].strip()
    client = ha.peer(seen.get("client address", ha.UNKNOWN), seen.get("client hostname"))
    server = ha.peer(seen.get("server address", ha.UNKNOWN), seen.get("server hostname"))

    def read(name: str) -> str | None:
        path = Path(name)
        return path.read_text() if path.is_file() else None

    def table(name: str) -> ha.Table:
        return ha.parse((case.directory / name).read_text(), name)

    verdict = ha.decide(
        table("hosts.allow"),
        table("hosts.deny"),
        case.daemon.partition("@")[0],
        client,
        server,
        user=seen.get("client username", ha.UNKNOWN),
        read_list=read,
    )
    return verdict.outcome


def _expected(output: str) -> ha.Outcome:
    verdicts = [line.split()[1] for line in output.splitlines() if line.startswith("access:")]
    assert len(verdicts) == 1, output
    return ha.Outcome(verdicts[0])


@pytest.fixture(scope="module")
def tcpdmatch() -> str:
    if TCPDMATCH is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tcpdmatch is missing (apt-get install tcpd)")
        pytest.skip("tcpdmatch is missing (apt-get install tcpd)")
    return TCPDMATCH


@pytest.mark.timeout(300)
def test_decide_agrees_with_tcpdmatch(tcpdmatch: str, tmp_path: Path) -> None:
    cases = _cases(random.Random(SEED), tmp_path)
    with ThreadPoolExecutor(max_workers=max(2, 2 * (os.cpu_count() or 1))) as pool:
        outputs = list(pool.map(_oracle, cases))
    disagreements = []
    for case, output in zip(cases, outputs, strict=True):
        expected, got = _expected(output), _ours(case, output)
        if expected is not got:
            allow = (case.directory / "hosts.allow").read_text()
            deny = (case.directory / "hosts.deny").read_text()
            disagreements.append(
                f"{case.daemon} {case.client}: tcpdmatch {expected.value}, ours {got.value}\n"
                f"  allow={allow!r}\n  deny={deny!r}"
            )
    assert len(cases) >= 3000
    assert not disagreements, f"{len(disagreements)} disagreements:\n" + "\n".join(
        disagreements[:8]
    )
