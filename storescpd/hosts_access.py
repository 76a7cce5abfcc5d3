"""TCP-wrapper access control: hosts.allow / hosts.deny parsing and the verdict for one peer.

Reproduces Debian libwrap 7.6.q as hosts_access(5) and hosts_options(5) describe it and as
``tcpdmatch`` behaves (SPEC §9, ECOSYSTEM §3): allow table first, then deny table, else grant;
first matching rule wins; the option field is the extended language (``allow``, ``deny``,
``spawn``, ``twist`` ...). Pure: stdlib only and no I/O of its own. The caller reads the tables,
resolves the peer name (or leaves it ``unknown``, as DCMTK's ``-dhl`` does), supplies ``/file``
client lists through a callback, and runs the commands a verdict returns.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

UNKNOWN = "unknown"
PARANOID = "paranoid"

# libwrap reads a logical line into a 2048-byte buffer: 2046 characters plus newline fit.
_LINE_ROOM = 2047
_LIST_SEPARATORS = re.compile(r"[ \t\r\n,]+")
_FILE_SEPARATORS = re.compile(r"[ \t\n\v\f\r]+")
_BLANKS = " \t\r\n"
_ASCII_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# Characters libwrap lets through unchanged in % expansions; anything else becomes "_".
_SAFE = frozenset("1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_INT = re.compile(r"[+-]?[0-9]+")
_OCTAL = re.compile(r"[+-]?[0-7]+")
_ATOI = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")
_QUAD_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")
_FACILITIES = frozenset(
    ["auth", "cron", "daemon", "kern", "lpr", "mail", "news", "user", "uucp"]
    + [f"local{n}" for n in range(8)]
)
_LEVELS = frozenset(["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"])
_MAX_FILE_DEPTH = 8

ReadList = Callable[[str], "str | None"]


def _fold(text: str) -> str:
    # libwrap compares with strcasecmp in the C locale: ASCII letters only.
    return text.translate(_ASCII_FOLD)


def _known(name: str) -> bool:
    return _fold(name) not in (UNKNOWN, PARANOID)


@dataclass(frozen=True, slots=True)
class Host:
    """One end of the connection: host name (or ``unknown``/``paranoid``), address, port."""

    name: str = UNKNOWN
    address: str = UNKNOWN
    port: int = 0

    @property
    def info(self) -> str:
        """The name when known, else the address (libwrap's ``%h``)."""
        return self.name if _known(self.name) else self.address


def peer(address: str, name: str | None = None, port: int = 0) -> Host:
    """A host from a socket address; IPv4-mapped IPv6 becomes dotted IPv4 (as Debian's libwrap).

    ``name`` is the reverse-lookup result, or None when there is none (DCMTK ``-dhl``).
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        address = str(ip.ipv4_mapped)
    return Host(name or UNKNOWN, address, port)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A problem libwrap would report to syslog: warnings are skipped lines, errors deny."""

    file: str
    line: int
    message: str
    error: bool = False

    def __str__(self) -> str:
        return f"{self.file}, line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class Rule:
    """``daemon_list : client_list [: options]``; ``line`` is where the logical line ends."""

    file: str
    line: int
    daemons: str
    clients: str
    options: str | None


@dataclass(frozen=True, slots=True)
class Table:
    """One parsed access-control file.

    ``failed`` is libwrap's error state: the file could not be opened, or a line had no final
    newline or was too long. Rules before the failure still apply; past it, a failed allow table
    matches nothing and a failed deny table refuses everyone.
    """

    name: str
    rules: tuple[Rule, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    failed: bool = False


def unreadable(name: str, reason: str) -> Table:
    """The table for a file that exists but cannot be read (a missing file is ``None``)."""
    return Table(name, (), (Diagnostic(name, 0, f"cannot open {name}: {reason}", True),), True)


def parse(text: str, name: str) -> Table:
    """Parse hosts.allow/hosts.deny text as libwrap reads it, line by line.

    Backslash-newline joins lines; a line starting with ``#`` (after joining) or holding only
    blanks is skipped; a line without a colon is skipped with a warning; a line over libwrap's
    buffer or without a final newline ends the table with a warning.
    """
    rules: list[Rule] = []
    diagnostics: list[Diagnostic] = []
    for line_no, logical in _logical_lines(text):
        if logical is None:
            diagnostics.append(Diagnostic(name, line_no, "missing newline or line too long"))
            diagnostics.append(
                Diagnostic(name, line_no, "all the subsequent rules will be ignored")
            )
            return Table(name, tuple(rules), tuple(diagnostics), failed=True)
        rule = _rule(logical, name, line_no)
        if isinstance(rule, Diagnostic):
            diagnostics.append(rule)
        elif rule is not None:
            rules.append(rule)
    return Table(name, tuple(rules), tuple(diagnostics))


def _logical_lines(text: str) -> list[tuple[int, str | None]]:
    """(line number, text) per logical line; text None marks an unterminated or long line."""
    result: list[tuple[int, str | None]] = []
    buffer, line_no = "", 0
    for physical in _physical_lines(text):
        if not physical.endswith("\n") or len(physical) > _LINE_ROOM - len(buffer):
            result.append((line_no, None))
            return result
        line_no += 1
        if physical.endswith("\\\n"):
            buffer += physical[:-2]
            continue
        result.append((line_no, _cut_at_nul(buffer + physical[:-1])))
        buffer = ""
    if buffer:
        result.append((line_no, None))
    return result


def _physical_lines(text: str) -> list[str]:
    # Only "\n" ends a line for fgets(); str.splitlines() would also split at "\r", "\f" ...
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _cut_at_nul(line: str) -> str | None:
    # C string handling stops at NUL: an empty rest is a blank line, anything else lost its newline.
    head, nul, _ = line.partition("\0")
    if not nul:
        return line
    return "" if not head else None


def _rule(line: str, name: str, line_no: int) -> Rule | Diagnostic | None:
    if line.startswith("#") or not line.strip(_BLANKS):
        return None
    daemons, rest = _split_field(line)
    if rest is None:
        return Diagnostic(name, line_no, 'missing ":" separator')
    clients, options = _split_field(rest)
    return Rule(name, line_no, daemons, clients, options)


def _split_field(text: str) -> tuple[str, str | None]:
    # Colons inside [...] belong to IPv6 addresses; libwrap only counts bracket depth.
    depth = 0
    for index, char in enumerate(text):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == ":" and depth == 0:
            return text[:index], text[index + 1 :]
    return text, None


class Outcome(enum.Enum):
    """What libwrap decides: serve, refuse, or hand the connection to a ``twist`` command."""

    GRANTED = "granted"
    DENIED = "denied"
    DELEGATED = "delegated"


@dataclass(frozen=True, slots=True)
class Option:
    """One processed option of the matching rule, in rule order.

    ``keyword`` is lower case; ``value`` is after % expansion where libwrap expands it (spawn,
    twist, aclexec, setenv), and ``argv`` is set for the commands (spawn, twist, aclexec).
    """

    keyword: str
    value: str | None = None
    argv: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision for one request, with the rule that made it and the options to apply."""

    outcome: Outcome
    rule: Rule | None = None
    options: tuple[Option, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.GRANTED

    @property
    def source(self) -> str:
        """``hosts.allow line 3`` for the log, or ``no rule`` for the default grant."""
        return f"{self.rule.file} line {self.rule.line}" if self.rule else "no rule"

    @property
    def severity(self) -> str | None:
        """The last ``severity`` option (``[facility.]level``), if any."""
        values = [o.value for o in self.options if o.keyword == "severity"]
        return values[-1] if values else None

    def commands(self, keyword: str) -> list[tuple[str, ...]]:
        """argv of every ``spawn``, ``twist`` or ``aclexec`` option, in order."""
        return [o.argv for o in self.options if o.keyword == keyword and o.argv]


@dataclass(frozen=True, slots=True)
class _Request:
    daemon: str
    client: Host
    server: Host
    user: str
    pid: int
    read_list: ReadList
    notes: list[Diagnostic] = field(default_factory=list)


def _no_files(path: str) -> str | None:
    return None


def decide(
    allow: Table | None,
    deny: Table | None,
    daemon: str,
    client: Host,
    server: Host | None = None,
    *,
    user: str = UNKNOWN,
    pid: int = 0,
    read_list: ReadList = _no_files,
) -> Verdict:
    """hosts_access(5): the first matching rule of ``allow`` grants, else of ``deny`` refuses,
    else access is granted. Options of the matching rule may override either way.

    ``None`` tables are missing files (empty). ``read_list(path)`` returns the text of a
    ``/file`` client list, or None when it cannot be read. ``pid`` fills ``%p``.
    """
    request = _Request(daemon, client, server or Host(), user, pid, read_list)
    found = _table_match(allow, request)
    if found is not None:
        return _apply(found, Outcome.GRANTED, request)
    found = _table_match(deny, request)
    if found is not None:
        return _apply(found, Outcome.DENIED, request)
    if deny is not None and deny.failed:
        # libwrap grants only on a clean "no match" of the deny table; an error refuses.
        return Verdict(Outcome.DENIED, None, (), deny.diagnostics)
    return Verdict(Outcome.GRANTED, None, (), tuple(request.notes))


def _table_match(table: Table | None, request: _Request) -> Rule | None:
    if table is None:
        return None
    for rule in table.rules:
        if _list_match(_tokens(rule.daemons), request, _server_match) and _list_match(
            _tokens(rule.clients), request, _client_match
        ):
            return rule
    return None


def _tokens(text: str) -> list[str]:
    return [token for token in _LIST_SEPARATORS.split(text) if token]


def _list_match(
    tokens: Sequence[str], request: _Request, match: Callable[[str, _Request], bool]
) -> bool:
    # "a EXCEPT b EXCEPT c" reads as "a EXCEPT (b EXCEPT c)".
    for index, token in enumerate(tokens):
        if _fold(token) == "except":
            return False
        if match(token, request):
            rest = [_fold(t) for t in tokens[index + 1 :]]
            if "except" not in rest:
                return True
            exceptions = tokens[index + 1 + rest.index("except") + 1 :]
            return not _list_match(exceptions, request, match)
    return False


def _server_match(token: str, request: _Request) -> bool:
    at = token.find("@", 1)
    if at < 0:
        return _string_match(token, request.daemon)
    return _string_match(token[:at], request.daemon) and _host_match(
        token[at + 1 :], request.server, request, 0
    )


def _client_match(token: str, request: _Request) -> bool:
    at = token.find("@", 1)
    if at < 0:
        return _host_match(token, request.client, request, 0)
    return _host_match(token[at + 1 :], request.client, request, 0) and _string_match(
        token[:at], request.user
    )


def _host_match(token: str, host: Host, request: _Request, depth: int) -> bool:
    folded = _fold(token)
    if token.startswith("@"):
        return False  # NIS netgroups: no NIS here, and libwrap finds no member without one
    if token.startswith("/"):
        return _file_match(token, host, request, depth)
    if folded == "known":
        return _fold(host.address) != UNKNOWN and _known(host.name)
    if folded == "local":
        return "." not in host.name and _known(host.name)
    if token.startswith("["):
        return _ipv6_match(token, host.address)
    if "/" in token:
        net, _, mask = token.partition("/")
        return _masked_match(net, mask, host.address)
    if _string_match(token, host.address):
        return True
    # A pattern made only of digits, dots and slashes is an address: never compare it to names.
    return bool(token.strip("0123456789./")) and _string_match(token, host.name)


def _string_match(token: str, text: str) -> bool:
    pattern, value = _fold(token), _fold(text)
    if token.startswith("."):
        cut = len(value) - len(pattern)
        return cut > 0 and value[cut:] == pattern
    if pattern == "all":
        return True
    if pattern == "known":
        return value != UNKNOWN
    if "*" in token or "?" in token:
        return _glob(pattern).fullmatch(value) is not None
    if token.endswith("."):
        return value.startswith(pattern)
    return pattern == value


def _glob(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def _file_match(path: str, host: Host, request: _Request, depth: int) -> bool:
    text = request.read_list(path) if depth < _MAX_FILE_DEPTH else None
    if text is None:
        request.notes.append(Diagnostic(path, 0, f"cannot open {path}"))
        return False
    tokens = (t for t in _FILE_SEPARATORS.split(text) if t)
    return any(_host_match(t, host, request, depth + 1) for t in tokens)


def _ipv6_match(token: str, address: str) -> bool:
    net, slash, length = token.partition("/")
    if not net.endswith("]") or "%" in net:
        return False
    try:
        client = ipaddress.IPv6Address(address)
        network = ipaddress.IPv6Address(net[1:-1])
    except ValueError:
        return False
    if not slash:
        return client == network
    bits = _atoi(length)
    if not 0 <= bits <= 128:
        return False
    shift = 128 - bits
    return int(client) >> shift == int(network) >> shift


def _masked_match(net_text: str, mask_text: str, address: str) -> bool:
    net = _dot_quad(net_text)
    if net is None:
        return False
    mask = _dot_quad(mask_text)
    if mask is None:
        bits = _atoi(mask_text)
        if not 0 < bits <= 32:
            return False
        mask = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
    value = _dot_quad(address)
    # The net is compared as written: host bits set in it make the pattern match nothing.
    return value is not None and value & mask == net


def _dot_quad(text: str) -> int | None:
    """inet_addr() of exactly four parts (decimal, 0octal, 0xhex); None for 255.255.255.255 too."""
    parts = text.split(".")
    if len(parts) != 4 or not all(_QUAD_PART.fullmatch(p) for p in parts):
        return None
    values = [_c_number(p) for p in parts]
    if any(v > 255 for v in values):
        return None
    number = values[0] << 24 | values[1] << 16 | values[2] << 8 | values[3]
    return None if number == 0xFFFFFFFF else number


def _c_number(part: str) -> int:
    if part[:2] in ("0x", "0X"):
        return int(part[2:] or "0", 16)
    if part.startswith("0"):
        return int(part, 8)
    return int(part)


def _atoi(text: str) -> int:
    found = _ATOI.match(text)
    return int(found.group(1)) if found else 0


class _OptionError(Exception):
    """An option libwrap rejects: the rest of the rule is ignored and access is denied."""


@dataclass(frozen=True, slots=True)
class _Spec:
    value: str  # "none", "required" or "optional"
    last: bool = False
    expand: bool = False


_SPECS: dict[str, _Spec] = {
    "allow": _Spec("none", last=True),
    "deny": _Spec("none", last=True),
    "twist": _Spec("required", last=True, expand=True),
    "spawn": _Spec("required", expand=True),
    "aclexec": _Spec("required", expand=True),
    "setenv": _Spec("required", expand=True),
    "severity": _Spec("required"),
    "banners": _Spec("required"),
    "umask": _Spec("required"),
    "user": _Spec("required"),
    "group": _Spec("required"),
    "linger": _Spec("required"),
    "keepalive": _Spec("none"),
    "nice": _Spec("optional"),
    "rfc931": _Spec("optional"),
}
_COMMANDS = frozenset({"spawn", "twist", "aclexec"})
_FINAL = {"allow": Outcome.GRANTED, "deny": Outcome.DENIED, "twist": Outcome.DELEGATED}


def _apply(rule: Rule, outcome: Outcome, request: _Request) -> Verdict:
    """Run hosts_options(5) processing of the matched rule's option field, in order."""
    options: list[Option] = []
    notes = request.notes
    if rule.options is not None:
        try:
            for text, more in _option_fields(rule.options):
                option = _option(text, more, rule, request)
                options.append(option)
                if option.keyword in _FINAL:
                    outcome = _FINAL[option.keyword]
        except _OptionError as problem:
            notes.append(Diagnostic(rule.file, rule.line, str(problem), True))
            outcome = Outcome.DENIED
    return Verdict(outcome, rule, tuple(options), tuple(notes))


def _option_fields(text: str) -> list[tuple[str, bool]]:
    """Split at colons not escaped as ``\\:``; each field says whether another follows it."""
    fields: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and text[index + 1 : index + 2] == ":":
            current.append(":")
            index += 1
        elif char == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    fields.append("".join(current))
    return [(f, i < len(fields) - 1) for i, f in enumerate(fields)]


def _option(text: str, more: bool, rule: Rule, request: _Request) -> Option:
    keyword, value = _keyword_value(text.strip(_BLANKS))
    if not keyword:
        raise _OptionError("missing option name")
    name = _fold(keyword)
    spec = _SPECS.get(name)
    if spec is None:
        raise _OptionError(f'bad option name: "{keyword}"')
    if spec.value == "required" and value is None:
        raise _OptionError(f'option "{keyword}" requires value')
    if spec.value == "none" and value is not None:
        raise _OptionError(f'option "{keyword}" requires no value')
    if spec.last and more:
        raise _OptionError(f'option "{keyword}" must be at end')
    if value is not None and name in _COMMANDS:
        text = _expand(value, rule, _quiet(request))
        return Option(name, text, _command(value, rule, request))
    if value is not None and spec.expand:
        return Option(name, _expand(value, rule, request))
    _check_value(name, value)
    return Option(name, value)


def _keyword_value(text: str) -> tuple[str, str | None]:
    # "keyword value", "keyword=value" and "keyword = value" are all accepted.
    end = len(text)
    for index, char in enumerate(text):
        if char in "= \t\r\n":
            end = index
            break
    rest = text[end:].lstrip(_BLANKS)
    if rest.startswith("="):
        rest = rest[1:].lstrip(_BLANKS)
    return text[:end], (rest or None)


def _check_value(name: str, value: str | None) -> None:
    if name == "severity" and value is not None:
        _check_severity(value)
    elif name == "umask" and value is not None:
        if not _OCTAL.fullmatch(value) or not 0 <= int(value, 8) <= 0o777:
            raise _OptionError(f'bad umask value: "{value}"')
    elif name == "nice" and value is not None and not _INT.fullmatch(value):
        raise _OptionError(f'bad nice value: "{value}"')
    elif name == "linger" and value is not None:
        if not _INT.fullmatch(value) or int(value) < 0:
            raise _OptionError(f'bad linger value: "{value}"')
    elif name == "rfc931" and value is not None and (not _INT.fullmatch(value) or int(value) <= 0):
        raise _OptionError(f'bad rfc931 timeout: "{value}"')


def _check_severity(value: str) -> None:
    facility, dot, level = value.partition(".")
    if not dot:
        facility, level = "", value
    elif _fold(facility) not in _FACILITIES:
        raise _OptionError(f'bad syslog facility or severity: "{facility}"')
    if _fold(level) not in _LEVELS:
        raise _OptionError(f'bad syslog facility or severity: "{level}"')


def _expansions(request: _Request) -> dict[str, str]:
    client, server = request.client, request.server
    user_known = _fold(request.user) != UNKNOWN
    server_info = server.info
    values = {
        "a": client.address,
        "A": server.address,
        "c": f"{request.user}@{client.info}" if user_known else client.info,
        "d": request.daemon,
        "h": client.info,
        "H": server_info,
        "n": client.name,
        "N": server.name,
        "p": str(request.pid),
        "r": str(client.port),
        "R": str(server.port),
        "s": request.daemon if _fold(server_info) == UNKNOWN else f"{request.daemon}@{server_info}",
        "u": request.user,
    }
    return {key: "".join(c if c in _SAFE else "_" for c in v) for key, v in values.items()}


def _pieces(template: str, rule: Rule, request: _Request) -> list[tuple[str, bool]]:
    """The template as (text, from_peer) pieces, warning about unknown % sequences."""
    values = _expansions(request)
    pieces: list[tuple[str, bool]] = []
    index = 0
    while index < len(template):
        char = template[index]
        if char != "%" or index + 1 == len(template):
            pieces.append((char, False))
            index += 1
            continue
        letter = template[index + 1]
        if letter == "%":
            pieces.append(("%", False))
        elif letter in values:
            pieces.append((values[letter], True))
        else:
            request.notes.append(Diagnostic(rule.file, rule.line, f"unrecognized %{letter}"))
        index += 2
    return pieces


def _expand(template: str, rule: Rule, request: _Request) -> str:
    """libwrap's % expansion as text: for setenv, banners and log lines."""
    return "".join(text for text, _ in _pieces(template, rule, _quiet(request)))


def _quiet(request: _Request) -> _Request:
    # Commands are expanded twice (argv and display text): warn about bad % only once.
    return replace(request, notes=[])


def _command(template: str, rule: Rule, request: _Request) -> tuple[str, ...]:
    """argv running the rule's shell text with every expansion passed as its own argument.

    The administrator's text stays shell code (pipes, ``&``, redirections work as under
    libwrap); a peer-controlled value only reaches the shell as ``"${N}"``: one word, never code.
    """
    script: list[str] = []
    arguments: list[str] = []
    quote, escaped = "", False
    for text, from_peer in _pieces(template, rule, request):
        if from_peer:
            arguments.append(text)
            reference = f"${{{len(arguments)}}}"
            script.append(_REFERENCE[quote].format(reference))
            escaped = False
            continue
        script.append(text)
        quote, escaped = _shell_state(quote, escaped, text)
    return ("/bin/sh", "-c", "".join(script), "sh", *arguments)


# How to splice "${N}" into unquoted, double-quoted and single-quoted shell text.
_REFERENCE = {"": '"{}"', '"': "{}", "'": "'\"{}\"'"}


def _shell_state(quote: str, escaped: bool, char: str) -> tuple[str, bool]:
    """Quoting state after ``char``: inside ' or " or neither; is a backslash pending."""
    if escaped:
        return quote, False
    if char == "\\" and quote != "'":
        return quote, True
    if quote == "" and char in "'\"":
        return char, False
    if quote == char:
        return "", False
    return quote, False


def expand(
    template: str,
    daemon: str,
    client: Host,
    server: Host | None = None,
    *,
    user: str = UNKNOWN,
    pid: int = 0,
) -> str:
    """% expansion of ``template`` as libwrap does it, e.g. for a ``banners`` file's text."""
    rule = Rule("", 0, "", "", None)
    request = _Request(daemon, client, server or Host(), user, pid, _no_files)
    return _expand(template, rule, request)
