"""Unit tests for storescpd.hosts_access: each row is a behaviour observed with tcpdmatch -d."""

from __future__ import annotations

import subprocess

import pytest

from storescpd import hosts_access as ha
from storescpd.hosts_access import Host, Outcome

GRANTED, DENIED, DELEGATED = Outcome.GRANTED, Outcome.DENIED, Outcome.DELEGATED
LOCALHOST = Host("localhost", "127.0.0.1")
LISTS = {
    "/etc/dicom/modalities": "10.1.2.3 10.5.\n#x 10.6.\n",
    "/l/nested": "/etc/dicom/modalities",
}


def verdict(
    allow: str,
    deny: str = "ALL: ALL\n",
    client: Host | str = "10.1.2.3",
    daemon: str = "sd",
    server: Host | None = None,
    user: str = ha.UNKNOWN,
) -> ha.Verdict:
    host = ha.peer(client) if isinstance(client, str) else client
    return ha.decide(
        ha.parse(allow, "hosts.allow"),
        ha.parse(deny, "hosts.deny"),
        daemon,
        host,
        server,
        user=user,
        pid=4242,
        read_list=LISTS.get,
    )


# (hosts.allow line, client, expected) with hosts.deny "ALL: ALL"
CLIENT_PATTERNS = [
    ("sd: 10.1.2.3", "10.1.2.3", GRANTED),
    ("sd: 10.1.2.4", "10.1.2.3", DENIED),
    ("sd: 10.1.", "10.1.2.3", GRANTED),
    ("sd: 10.1.2.3.", "10.1.2.3", DENIED),
    ("sd: 010.1.2.3", "10.1.2.3", DENIED),
    ("sd: .2.3", "10.1.2.3", GRANTED),  # a suffix is tried on the address too
    ("sd: .localhost", LOCALHOST, DENIED),  # a suffix needs more in front of it
    ("sd: localhost", LOCALHOST, GRANTED),
    ("sd: LOCALHOST", LOCALHOST, GRANTED),
    ("sd: localhost", "127.0.0.1", DENIED),  # -dhl: no name, only the address
    ("sd: 127.", LOCALHOST, GRANTED),
    ("sd: 10.1.0.0/255.255.0.0", "10.1.2.3", GRANTED),
    ("sd: 10.1.2.0/24", "10.1.2.3", GRANTED),
    ("sd: 10.1.2.3/24", "10.1.2.3", DENIED),  # host bits in the net: never matches
    ("sd: 10.1.2.3/32", "10.1.2.3", GRANTED),
    ("sd: 10.1.2.3/255.255.255.255", "10.1.2.3", DENIED),  # not a valid mask
    ("sd: 0.0.0.0/0", "10.1.2.3", DENIED),  # /0 is not a valid length
    ("sd: 0.0.0.0/0.0.0.0", "10.1.2.3", GRANTED),
    ("sd: 10.0.0.0/33", "10.1.2.3", DENIED),
    ("sd: 10.0.0.0/8x", "10.1.2.3", GRANTED),  # the length is read like atoi()
    ("sd: 10.0.0.0/+8", "10.1.2.3", GRANTED),
    ("sd: 10.0.0.0/0x8", "10.1.2.3", DENIED),
    ("sd: 10/8", "10.1.2.3", DENIED),  # the net needs four parts
    ("sd: 0xa.0.0.0/8", "10.1.2.3", GRANTED),  # ... each read like inet_addr()
    ("sd: 012.0.0.0/8", "10.1.2.3", GRANTED),  # 012 is octal 10
    ("sd: 011.0.0.0/8", "11.0.0.1", DENIED),
    ("sd: 10.0.255.0/255.0.255.0", "10.1.255.3", GRANTED),  # non-contiguous masks work
    ("sd: [::1]", "::1", GRANTED),
    ("sd: [0:0:0:0:0:0:0:1]", "::1", GRANTED),
    ("sd: [2001:DB8::]/32", "2001:db8::5", GRANTED),
    ("sd: [2001:db8::1]/64", "2001:db8::5", GRANTED),  # v6 nets are masked before comparing
    ("sd: [2001:db8::]/32", "2001:db9::5", DENIED),
    ("sd: [::]/0", "::1", GRANTED),
    ("sd: [::1]/129", "::1", DENIED),
    ("sd: [::1]x", "::1", DENIED),
    ("sd: [10.1.2.3]", "10.1.2.3", DENIED),
    ("sd: 10.1.2.0/24", "::ffff:10.1.2.3", GRANTED),  # v4-mapped is matched as IPv4
    ("sd: [::ffff:10.1.2.3]", "::ffff:10.1.2.3", DENIED),
    ("sd: 2001:db8::5", "2001:db8::5", DENIED),  # unbracketed: the colon ends the field
    ("sd: 10.1.*", "10.1.2.3", GRANTED),
    ("sd: 10.?.2.3", "10.1.2.3", GRANTED),
    ("sd: 1*3", "10.1.2.3", GRANTED),
    ("sd: 2001*", "2001:db8::5", GRANTED),
    ("sd: LOCAL*", LOCALHOST, GRANTED),
    ("sd: .2.?", "10.1.2.3", DENIED),  # a leading dot wins over the wildcard
    ("sd: ALL", "10.1.2.3", GRANTED),
    ("sd: all", "10.1.2.3", GRANTED),
    ("sd: LOCAL", LOCALHOST, GRANTED),
    ("sd: LOCAL", "10.1.2.3", DENIED),
    ("sd: LOCAL", Host("ct.example.org", "10.1.2.3"), DENIED),
    ("sd: KNOWN", LOCALHOST, GRANTED),
    ("sd: KNOWN", "10.1.2.3", DENIED),
    ("sd: KNOWN", Host(ha.PARANOID, "10.1.2.3"), DENIED),
    ("sd: UNKNOWN", "10.1.2.3", GRANTED),
    ("sd: UNKNOWN", LOCALHOST, DENIED),
    ("sd: PARANOID", Host(ha.PARANOID, "10.1.2.3"), GRANTED),
    ("sd: PARANOID", "10.1.2.3", DENIED),
    ("sd: .example.org", Host("ct.example.org", "10.1.2.3"), GRANTED),
    ("sd: ct.example.", Host("ct.example.org", "10.1.2.3"), GRANTED),
    ("sd: @modalities", "10.1.2.3", DENIED),  # NIS netgroups never match
    ("sd: /etc/dicom/modalities", "10.1.2.3", GRANTED),
    ("sd: /etc/dicom/modalities", "10.5.0.1", GRANTED),
    ("sd: /etc/dicom/modalities", "10.6.0.1", GRANTED),  # no comments in list files
    ("sd: /etc/dicom/modalities", "10.7.0.1", DENIED),
    ("sd: /l/nested", "10.1.2.3", GRANTED),
    ("sd: /etc/dicom/missing", "10.1.2.3", DENIED),
    ("sd: ALL EXCEPT 10.1.2.3", "10.1.2.3", DENIED),
    ("sd: ALL except 10.1.2.3", "10.1.2.3", DENIED),
    ("sd: ALL EXCEPT 10.1. EXCEPT 10.1.2.3", "10.1.2.3", GRANTED),
    ("sd: ALL EXCEPT 10.1. EXCEPT 10.1.2.3", "10.1.2.4", DENIED),
    ("sd: 10.1.2.3 EXCEPT", "10.1.2.3", GRANTED),
    ("sd: EXCEPT 10.1.2.3", "10.1.2.3", DENIED),
    ("sd: 10.0.0.1,,10.1.2.3", "10.1.2.3", GRANTED),
    ("sd:\t10.0.0.1\t10.1.2.3", "10.1.2.3", GRANTED),
    ("sd: ", "10.1.2.3", DENIED),
]


@pytest.mark.parametrize(("line", "client", "expected"), CLIENT_PATTERNS)
def test_client_patterns(line: str, client: Host | str, expected: Outcome) -> None:
    assert verdict(line + "\n", client=client).outcome is expected


# (hosts.allow line, daemon, server, expected) with hosts.deny "ALL: ALL"
DAEMON_PATTERNS = [
    ("sd: ALL", "sd", None, GRANTED),
    ("sd: ALL", "SD", None, GRANTED),
    ("sd: ALL", "storescp", None, DENIED),
    ("ALL EXCEPT sd: ALL", "sd", None, DENIED),
    ("ALL EXCEPT sd: ALL", "other", None, GRANTED),
    ("s?: ALL", "sd", None, GRANTED),
    (".d: ALL", "s.d", None, GRANTED),
    ("s.: ALL", "s.d", None, GRANTED),
    ("KNOWN: ALL", "sd", None, GRANTED),
    ("KNOWN: ALL", "unknown", None, DENIED),
    ("[sd]: ALL", "sd", None, DENIED),
    ("sd@127.0.0.2: ALL", "sd", Host(ha.UNKNOWN, "127.0.0.2"), GRANTED),
    ("sd@127.0.0.2: ALL", "sd", Host(ha.UNKNOWN, "127.0.0.3"), DENIED),
    ("sd@127.0.0.2: ALL", "sd", None, DENIED),  # DCMTK passes no server endpoint
    ("sd@UNKNOWN: ALL", "sd", None, GRANTED),
    ("sd@LOCAL: ALL", "sd", LOCALHOST, GRANTED),
    ("sd@ALL: ALL", "sd", None, GRANTED),
    ("sd@: ALL", "sd", None, DENIED),
    ("@sd: ALL", "sd", None, DENIED),
]


@pytest.mark.parametrize(("line", "daemon", "server", "expected"), DAEMON_PATTERNS)
def test_daemon_patterns(line: str, daemon: str, server: Host | None, expected: Outcome) -> None:
    assert verdict(line + "\n", daemon=daemon, server=server).outcome is expected


USER_PATTERNS = [
    ("sd: root@10.1.2.3", "root", GRANTED),
    ("sd: root@10.1.2.3", ha.UNKNOWN, DENIED),
    ("sd: UNKNOWN@10.1.2.3", ha.UNKNOWN, GRANTED),
    ("sd: KNOWN@ALL", ha.UNKNOWN, DENIED),
    ("sd: *@10.1.2.3", ha.UNKNOWN, GRANTED),
    ("sd: a*.@ALL", "ab.", GRANTED),  # the wildcard wins over the trailing-dot prefix
    ("sd: 10.1.2.3@", ha.UNKNOWN, DENIED),
]


@pytest.mark.parametrize(("line", "user", "expected"), USER_PATTERNS)
def test_user_patterns(line: str, user: str, expected: Outcome) -> None:
    assert verdict(line + "\n", user=user).outcome is expected


# (allow, deny, expected outcome, expected source)
SEARCH_ORDER = [
    ("", "", GRANTED, "no rule"),
    ("sd: 10.1.2.3\n", "", GRANTED, "hosts.allow line 1"),
    ("", "sd: 10.1.2.3\n", DENIED, "hosts.deny line 1"),
    ("sd: 10.1.2.3\n", "sd: 10.1.2.3\n", GRANTED, "hosts.allow line 1"),
    ("sd: 10.9.\nsd: 10.1.\nsd: ALL : deny\n", "", GRANTED, "hosts.allow line 2"),
    ("sd: ALL : deny\n", "", DENIED, "hosts.allow line 1"),
    ("", "sd: ALL : allow\n", GRANTED, "hosts.deny line 1"),
    ("", "sd: ALL : ALLOW\n", GRANTED, "hosts.deny line 1"),
    ("sd: ALL : Deny\n", "", DENIED, "hosts.allow line 1"),
    ("sd: ALL : twist /bin/echo 421\n", "", DELEGATED, "hosts.allow line 1"),
    ("", "sd: ALL : spawn /bin/echo %a\n", DENIED, "hosts.deny line 1"),
    # line numbers are where the logical line ends, counting comments and blanks
    ("\n# c\n\nsd: 10.9.2.3 \\\n 10.1.2.3\n", "", GRANTED, "hosts.allow line 5"),
    # a comment line continued by a backslash swallows the next line
    ("# c \\\nsd: ALL\n", "ALL: ALL\n", DENIED, "hosts.deny line 1"),
    # '#' is a comment only in column one
    ("  # c\nsd: ALL : deny\n", "", DENIED, "hosts.allow line 2"),
    ("sd: ALL # : deny\n", "", DENIED, "hosts.allow line 1"),
    # continuation joins without a blank: "10.1.2.3\\\n0" is 10.1.2.30
    ("sd: 10.1.2.3\\\n0\n", "", GRANTED, "no rule"),
    ("sd: 10.1.2.3\r\n", "ALL: ALL\n", GRANTED, "hosts.allow line 1"),
    # only "\n" ends a line; "\f" is not even a list separator
    ("sd: 10.9.9.9\rsd: 10.1.2.3\n", "ALL: ALL\n", DENIED, "hosts.deny line 1"),
    ("sd: 10.1.2.3\fsd\n", "ALL: ALL\n", DENIED, "hosts.deny line 1"),
    # missing final newline: the table ends in error there
    ("sd: 10.1.2.3", "", GRANTED, "no rule"),
    ("sd: 10.1.2.3\nsd: ALL", "", GRANTED, "hosts.allow line 1"),
    ("", "sd: 10.9.9.9\nsd: 10.9.9.8", DENIED, "no rule"),
    ("", "sd: 10.1.2.3\nx", DENIED, "hosts.deny line 1"),
    ("sd: 10.1.2.3" + " " * 2034 + "\n", "", GRANTED, "hosts.allow line 1"),
    ("sd: 10.1.2.3" + " " * 2035 + "\n", "", GRANTED, "no rule"),
    ("", "other: 10.1.2.3" + " " * 2035 + "\n", DENIED, "no rule"),
]


@pytest.mark.parametrize(("allow", "deny", "expected", "source"), SEARCH_ORDER)
def test_search_order_and_lines(allow: str, deny: str, expected: Outcome, source: str) -> None:
    result = verdict(allow, deny)
    assert (result.outcome, result.source) == (expected, source)


def test_missing_and_unreadable_tables() -> None:
    client = ha.peer("10.1.2.3")
    assert ha.decide(None, None, "sd", client).outcome is GRANTED
    broken = ha.unreadable("hosts.deny", "Permission denied")
    refused = ha.decide(None, broken, "sd", client)
    assert refused.outcome is DENIED
    assert str(refused.diagnostics[0]) == (
        "hosts.deny, line 0: cannot open hosts.deny: Permission denied"
    )
    assert ha.decide(ha.unreadable("a", "x"), None, "sd", client).outcome is GRANTED


# (text, diagnostics as "file, line N: message")
PARSE_DIAGNOSTICS = [
    ("sd ALL\nsd: ALL\n", ['hosts.allow, line 1: missing ":" separator']),
    (
        "sd[: ALL\nsd]: ALL\n",
        [
            'hosts.allow, line 1: missing ":" separator',
            'hosts.allow, line 2: missing ":" separator',
        ],
    ),
    (
        "sd: ALL",
        [
            "hosts.allow, line 0: missing newline or line too long",
            "hosts.allow, line 0: all the subsequent rules will be ignored",
        ],
    ),
    (
        "sd: ALL \\\n",
        [
            "hosts.allow, line 1: missing newline or line too long",
            "hosts.allow, line 1: all the subsequent rules will be ignored",
        ],
    ),
    (
        "x" * 2047 + "\nsd: ALL\n",
        [
            "hosts.allow, line 0: missing newline or line too long",
            "hosts.allow, line 0: all the subsequent rules will be ignored",
        ],
    ),
    ("#" + "x" * 2045 + "\n\n   \n", []),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_DIAGNOSTICS)
def test_parse_diagnostics(text: str, expected: list[str]) -> None:
    table = ha.parse(text, "hosts.allow")
    assert [str(d) for d in table.diagnostics] == expected
    assert table.failed is any("newline" in line for line in expected)


def test_parse_keeps_fields_and_bracketed_colons() -> None:
    table = ha.parse("sd, other : [::1] 10.1. : spawn echo a\\:b : allow\n", "hosts.allow")
    (rule,) = table.rules
    assert (rule.daemons, rule.clients, rule.line) == ("sd, other ", " [::1] 10.1. ", 1)
    assert rule.options == " spawn echo a\\:b : allow"


# (options field, expected outcome, error message or None)
OPTION_ERRORS = [
    ("allow", GRANTED, None),
    ("allow=", GRANTED, None),
    ("allow yes", DENIED, 'option "allow" requires no value'),
    ("allow :", DENIED, 'option "allow" must be at end'),
    ("allow : deny", DENIED, 'option "allow" must be at end'),
    ("twist echo : allow", DENIED, 'option "twist" must be at end'),
    ("spawn", DENIED, 'option "spawn" requires value'),
    ("aclexec", DENIED, 'option "aclexec" requires value'),
    ("bogus yes", DENIED, 'bad option name: "bogus"'),
    ("", DENIED, "missing option name"),
    (" : allow", DENIED, "missing option name"),
    ("keepalive", GRANTED, None),
    ("keepalive 5", DENIED, 'option "keepalive" requires no value'),
    ("severity warning", GRANTED, None),
    ("severity AUTH.INFO", GRANTED, None),
    ("severity local7.debug", GRANTED, None),
    ("severity = notice", GRANTED, None),
    ("severity==info", DENIED, 'bad syslog facility or severity: "=info"'),
    ("severity warn", DENIED, 'bad syslog facility or severity: "warn"'),
    ("severity mail", DENIED, 'bad syslog facility or severity: "mail"'),
    ("severity info.mail", DENIED, 'bad syslog facility or severity: "info"'),
    ("severity authpriv.info", DENIED, 'bad syslog facility or severity: "authpriv"'),
    ("severity mail.", DENIED, 'bad syslog facility or severity: ""'),
    ("umask 022", GRANTED, None),
    ("umask 0777", GRANTED, None),
    ("umask 01000", DENIED, 'bad umask value: "01000"'),
    ("umask 999", DENIED, 'bad umask value: "999"'),
    ("nice", GRANTED, None),
    ("nice -5", GRANTED, None),
    ("nice 5x", DENIED, 'bad nice value: "5x"'),
    ("linger 5", GRANTED, None),
    ("linger -5", DENIED, 'bad linger value: "-5"'),
    ("linger", DENIED, 'option "linger" requires value'),
    ("rfc931", GRANTED, None),
    ("rfc931 5", GRANTED, None),
    ("rfc931 0", DENIED, 'bad rfc931 timeout: "0"'),
    ("setenv FOO", GRANTED, None),
    ("banners /etc/banners", GRANTED, None),
    ("banners", DENIED, 'option "banners" requires value'),
    ("user nobody.nogroup", GRANTED, None),
    ("group nogroup", GRANTED, None),
    ("aclexec /bin/true : deny", DENIED, None),
    ("SPAWN echo : severity info : deny : deny", DENIED, 'option "deny" must be at end'),
]


@pytest.mark.parametrize(("options", "expected", "error"), OPTION_ERRORS)
def test_option_validation(options: str, expected: Outcome, error: str | None) -> None:
    result = verdict(f"sd: ALL: {options}\n", deny="")
    assert result.outcome is expected
    errors = [d.message for d in result.diagnostics if d.error]
    assert errors == ([error] if error else [])
    assert all(d.line == 1 and d.file == "hosts.allow" for d in result.diagnostics)


def test_options_are_processed_in_order_until_an_error() -> None:
    result = verdict("sd: ALL: spawn /bin/echo %a : severity x.y : allow\n")
    assert result.outcome is DENIED
    assert [o.keyword for o in result.options] == ["spawn"]
    assert result.commands("spawn")


def test_option_values() -> None:
    rule = "sd: ALL: severity mail.info : setenv  NAME   v  %a  : spawn=echo a\\b\\\\:c : allow\n"
    result = verdict(rule, deny="")
    assert result.outcome is GRANTED
    assert result.severity == "mail.info"
    values = {o.keyword: o.value for o in result.options}
    assert values["setenv"] == "NAME   v  10.1.2.3"
    assert values["spawn"] == "echo a\\b\\:c"
    assert values["allow"] is None


CLIENT = Host("ct.example.org", "10.1.2.3", 4711)
SERVER = Host("pacs", "10.0.0.9", 104)
# (template, client, server, user, expansion)
EXPANSIONS = [
    ("%a %A %d %p %r %R %%", CLIENT, SERVER, "unknown", "10.1.2.3 10.0.0.9 sd 4242 4711 104 %"),
    (
        "%h %H %n %N %s %c %u",
        CLIENT,
        SERVER,
        "unknown",
        "ct.example.org pacs ct.example.org pacs sd@pacs ct.example.org unknown",
    ),
    ("%h|%n|%c|%s", Host("unknown", "10.1.2.3"), Host(), "bob", "10.1.2.3|unknown|bob@10.1.2.3|sd"),
    (
        "%h|%n|%c|%H|%N|%s",
        Host("paranoid", "unknown"),
        Host("paranoid", "unknown"),
        "unknown",
        "unknown|paranoid|unknown|unknown|paranoid|sd",
    ),
    ("%s", Host(), Host("unknown", "127.0.0.2"), "unknown", "sd@127.0.0.2"),
    (
        "%u",
        CLIENT,
        SERVER,
        "a;b$c`d'e\"f*g(h)i<j>k&l\\m=n+o,p.q/r!s%t~u^v{w}x[y]z#0?1 2",
        "a_b_c_d_e_f_g_h_i_j_k_l_m=n+o,p.q/r!s%t_u_v_w_x_y_z_0_1_2",
    ),
    ("%x|% |%", CLIENT, SERVER, "unknown", "||%"),
]


@pytest.mark.parametrize(("template", "client", "server", "user", "expected"), EXPANSIONS)
def test_expand(template: str, client: Host, server: Host, user: str, expected: str) -> None:
    assert ha.expand(template, "sd", client, server, user=user, pid=4242) == expected


def test_unknown_expansion_is_a_warning() -> None:
    result = verdict("sd: ALL: spawn echo %x : allow\n", deny="")
    assert result.outcome is GRANTED
    assert [(d.message, d.error) for d in result.diagnostics] == [("unrecognized %x", False)]


HOSTILE = Host("x$(touch /tmp/pwned);`id`'\"", "10.1.2.3")


@pytest.mark.parametrize(
    ("template", "expected_output"),
    [
        ("printf '<%%s>' %n %a", "<x__touch_/tmp/pwned___id___><10.1.2.3>"),
        ("printf '<%%s>' \"[%n]\" @%a", "<[x__touch_/tmp/pwned___id___]><@10.1.2.3>"),
        ("printf '<%%s>' '[%n]'", "<[x__touch_/tmp/pwned___id___]>"),
        ("printf '<%%s>' \\'%a", "<'10.1.2.3>"),
        ("echo %d | tr s S", "Sd\n"),
    ],
)
def test_commands_pass_expansions_as_single_words(template: str, expected_output: str) -> None:
    result = ha.decide(ha.parse(f"sd: ALL: spawn {template}\n", "a"), None, "sd", HOSTILE)
    (argv,) = result.commands("spawn")
    assert argv[:2] == ("/bin/sh", "-c")
    assert all(HOSTILE.address not in part for part in argv[2:3])  # values are arguments
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=10)
    assert done.stdout == expected_output


def test_twist_is_returned_not_run() -> None:
    result = verdict("sd: 10.1.2.3: twist /bin/echo 421 %a\n")
    assert result.outcome is DELEGATED and not result.allowed
    assert result.commands("twist") == [("/bin/sh", "-c", '/bin/echo 421 "${1}"', "sh", "10.1.2.3")]


@pytest.mark.parametrize(
    ("address", "name", "expected"),
    [
        ("::ffff:10.1.2.3", None, Host("unknown", "10.1.2.3")),
        ("10.1.2.3", "ct.example.org", Host("ct.example.org", "10.1.2.3")),
        ("2001:db8::5", "", Host("unknown", "2001:db8::5")),
        ("not-an-address", None, Host("unknown", "not-an-address")),
    ],
)
def test_peer(address: str, name: str | None, expected: Host) -> None:
    assert ha.peer(address, name) == expected
