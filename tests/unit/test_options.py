"""Unit tests for storescpd.options: DCMTK storescp 3.6.7 command-line rules (SPEC §1, §2, §10)."""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import io
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storescpd import __version__, options
from storescpd.exitcodes import ExitCode
from storescpd.options import (
    InformationRequested,
    OptionError,
    Options,
    Request,
    TlsOptions,
    parse,
)

PORT = "11112"


def error_of(*argv: str) -> OptionError:
    with pytest.raises(OptionError) as info:
        parse(list(argv))
    return info.value


# --- the table ----------------------------------------------------------------------------------


def test_names_are_unique() -> None:
    longs = [o.long for o in options.OPTIONS]
    shorts = [o.short for o in options.OPTIONS if o.short]
    assert len(longs) == len(set(longs))
    assert len(shorts) == len(set(shorts))
    assert all(options.is_option(name) for name in longs + shorts)


def test_every_destination_is_a_field() -> None:
    tls_fields = {f.name for f in dataclasses.fields(TlsOptions)} | {"files"}
    for option in options.OPTIONS:
        if option.exclusive:
            continue
        if option.dest.startswith("tls."):
            assert option.dest[4:] in tls_fields, option.long
        else:
            assert option.dest in options.option_fields(), option.long
        if option.value_dest:
            assert option.value_dest in options.option_fields(), option.long


def test_check_order_covers_every_option_once() -> None:
    order = [name for name in options.CHECK_ORDER if name != options.PORT]
    exclusive = {o.long for o in options.OPTIONS if o.exclusive}
    assert len(order) == len(set(order))
    assert set(order) | exclusive == set(options.BY_LONG)


def test_storescpd_extras_are_in_the_table() -> None:
    for name in ("--no-echo", "--network-timeout", "--no-sync"):
        assert options.BY_LONG[name].short == ""
    assert "crash" in options.BY_LONG["--no-sync"].help
    assert "--profile-basic" not in options.BY_LONG


def test_defaults_match_an_empty_command_line() -> None:
    parsed = parse([PORT])
    assert dataclasses.replace(parsed, port=None) == Options()
    assert parsed.port == 11112
    assert parsed.log_level == "warn"
    assert parsed.prefer == "prefer-uncompr"
    assert parsed.tls is None


# --- tokens (SPEC §1.1) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "is_option"),
    [("-v", True), ("+B", True), ("--x", True), ("-5", False), ("+1", False), ("-", False),
     ("+", False), ("@", False), ("", False), ("x-", False), ("-x5", True), ("+=", True)],
)  # fmt: skip
def test_option_or_parameter(token: str, is_option: bool) -> None:
    assert options.is_option(token) is is_option


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--", "104"], "Unknown option --"),
        (["--aetitle=X", "104"], "Unknown option --aetitle=X"),
        (["--verb", "104"], "Unknown option --verb"),
        (["+q", "104"], "Unknown option +q"),
        (["+pb", "104"], "Unknown option +pb"),
        (["104", "-aet"], "Missing value for option --aetitle"),
        (["-xf", "f"], "Missing value for option --config-file"),
        (["+tls", "key"], "Missing value for option --enable-tls"),
        (["+p", "1"], "Missing value for option --padding-create"),
        (["1", "2"], "Too many parameters"),
        (["-Z", "-aet"], "Unknown option -Z"),  # left to right: the first problem wins
        (["-aet", "-Z", "-Y"], "Unknown option -Y"),
        (["-h", "-Z"], "Unknown option -Z"),  # parse errors come before --help
    ],
)
def test_parse_errors(argv: list[str], message: str) -> None:
    err = error_of(*argv)
    assert err.message == message
    assert not err.quiet_suppressible
    assert err.exit_code == ExitCode.COMMAND_LINE == 1


def test_values_are_taken_verbatim() -> None:
    parsed = parse(["-aet", "-X", "-fe", "+B", "-od", "/", "104"])
    assert (parsed.aetitle, parsed.filename_extension, parsed.bit_preserving) == ("-X", "+B", False)
    assert parsed.output_directory == "/"


def test_options_and_parameters_interleave() -> None:
    assert parse(["-v", "104", "-aet", "A"]).port == 104


def test_plus_and_minus_are_different_options() -> None:
    assert parse(["+B", "104"]).bit_preserving is True
    assert parse(["-B", "104"]).bit_preserving is False


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        (["-aet", "A", "-aet", "B"], "aetitle", "B"),
        (["-pdu", "200000", "-pdu", "5000"], "max_pdu", 5000),
        (["+xs", "+xe", "+te"], "prefer", "prefer-little"),
        (["+xe", "+xa"], "prefer", "accept-all"),
        (["+xa", "+x="], "prefer", "prefer-uncompr"),
        (["+xi"], "prefer", "implicit"),
        (["+xd", "+td"], "write_xfer", "deflated"),
        (["+B", "-B", "+te"], "write_xfer", "little"),
        (["+te", "+t="], "write_xfer", "same"),
        (["-g"], "group_length", "remove"),
        (["+g"], "group_length", "create"),
        (["+F", "-F"], "write_file", False),
        (["-e"], "length_explicit", False),
        (["+p", "8", "2"], "padding", (8, 2)),
        (["+p", "8", "2", "-p"], "padding", None),
        (["+uc"], "convert_un", True),
        (["-u"], "enable_new_vr", False),
        (["-ss", "pre", "-su", "x"], "sort", "study-uid"),
        (["-su", "x", "-ss", "pre"], "sort_prefix", "pre"),
        (["-ss", "pre", "-sp"], "sort_prefix", ""),
        (["+uf", "-tn", "-uf"], "timenames", True),
        (["--fork", "--single-process"], "fork", False),
        (["+ac"], "access_control", True),
        (["+ac", "-ac"], "access_control", False),
        (["-v", "-d"], "log_level", "debug"),
        (["-d", "-v"], "log_level", "info"),
        (["-v", "-q"], "log_level", "fatal"),
        (["-ll", "TRACE"], "log_level", "trace"),
        (["-ll", "Info"], "log_level", "info"),
        (["-ll", "all"], "log_level", "trace"),
        (["-ll", "off"], "log_level", "fatal"),
        (["-td", "5"], "dimse_timeout", 5),
        (["-ts", "010"], "socket_timeout", 8),
        (["-ts", "0x10"], "socket_timeout", 16),
        (["-ts", "-1"], "socket_timeout", -1),
        (["-ta", " 7s"], "acse_timeout", 7),
        (["-pdu", " 5000abc"], "max_pdu", 5000),
        (["-pdu", "+5000"], "max_pdu", 5000),
        (["--sleep-after", "3"], "sleep_after", 3),
        (["--network-timeout", "0"], "network_timeout", 0),
        (["+cl", "0"], "compression_level", 0),
        (["-od", "out///"], "output_directory", "out"),
        (["-od", "///"], "output_directory", "/"),
        (["-od", ""], "output_directory", "."),
        (["-xf", "f.cfg", "My Profile"], "config_file", ("f.cfg", "My Profile")),
        (["-xf", "f", "p", "+x="], "config_file", ("f", "p")),
        (["-ss", "a", "-tos", "0"], "eostudy_timeout", 0),
        (["-xcr", "echo #f"], "exec_on_reception", "echo #f"),
        (["--no-echo", "--no-sync"], "no_sync", True),
    ],
)
def test_rightmost_wins_and_values(argv: list[str], field: str, value: object) -> None:
    assert getattr(parse([*argv, PORT]), field) == value


# --- numbers (SPEC §1.2) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("42", 42), (" \t\n\v\f\r42", 42), ("+7", 7), ("7abc", 7), ("0x2000", 0),
     ("010", 10), ("-1", 2**64 - 1), ("-0", 0), ("99999999999999999999999", 2**64 - 1),
     ("-99999999999999999999999", 2**64 - 1), ("", None), (" ", None), ("abc", None),
     ("-", None), ("+-1", None), ("٣", None)],
)  # fmt: skip
def test_scan_unsigned(text: str, value: int | None) -> None:
    assert options.scan_unsigned(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [("010", 8), ("0x10", 16), ("0X1f", 31), ("-0x10", -16), ("08", 0), ("0x", 0), ("0xg", 0),
     ("-7", -7), (" +7s", 7), ("99999999999999999999", 2**63 - 1),
     ("-99999999999999999999", -(2**63)), ("", None), ("x", None), ("--1", None)],
)  # fmt: skip
def test_scan_signed(text: str, value: int | None) -> None:
    assert options.scan_signed(text) == value


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name) if name else None


LIBC = _libc()
NUMBERISH = st.text(alphabet=" \t\n+-0123456789abcdefxX", max_size=24)


@pytest.mark.skipif(LIBC is None, reason="no C library to compare with")
@given(NUMBERISH)
def test_scan_unsigned_agrees_with_c(text: str) -> None:
    assert LIBC is not None
    value = ctypes.c_ulong()
    count = LIBC.sscanf(text.encode(), b"%lu", ctypes.byref(value))
    assert options.scan_unsigned(text) == (value.value if count == 1 else None)


@pytest.mark.skipif(LIBC is None, reason="no C library to compare with")
@given(NUMBERISH)
def test_scan_signed_agrees_with_c(text: str) -> None:
    assert LIBC is not None
    value = ctypes.c_long()
    count = LIBC.sscanf(text.encode(), b"%li", ctypes.byref(value))
    assert options.scan_signed(text) == (value.value if count == 1 else None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-pdu", "abc"], "Invalid value for option --max-pdu (abc)"),
        (["-pdu", "100"], "Invalid value for option --max-pdu (underflow: 100)"),
        (["-pdu", "200000"], "Invalid value for option --max-pdu (overflow: 200000)"),
        (["-pdu", "0x2000"], "Invalid value for option --max-pdu (underflow: 0x2000)"),
        (["-pdu", "-5000"], "Invalid value for option --max-pdu (-5000)"),
        (["-pdu", " -5000"], "Invalid value for option --max-pdu ( -5000)"),
        (["-pdu", "-0"], "Invalid value for option --max-pdu (-0)"),
        (["-pdu", "\t-5"], "Invalid value for option --max-pdu (overflow: \t-5)"),
        (["-pdu", ""], "Invalid value for option --max-pdu"),
        (["-pdu", " "], "Invalid value for option --max-pdu ( )"),
        (["-pdu", "1", "-pdu", "200000"], "Invalid value for option --max-pdu (overflow: 200000)"),
        (["--sleep-after", "-1"], "Invalid value for option --sleep-after (-1)"),
        (["--sleep-during", "x"], "Invalid value for option --sleep-during (x)"),
        (["-ts", "-2"], "Invalid value for option --socket-timeout (underflow: -2)"),
        (["-ts", "abc"], "Invalid value for option --socket-timeout (abc)"),
        (["-ta", "0"], "Invalid value for option --acse-timeout (underflow: 0)"),
        (["-td", "0"], "Invalid value for option --dimse-timeout (underflow: 0)"),
        (["+cl", "10"], "Invalid value for option --compression-level (overflow: 10)"),
        (["+p", "-1", "4"], "Invalid value for option --padding-create (-1)"),
        (["+p", "4", "x"], "Invalid value for option --padding-create (x)"),
        (["-ss", "a", "-tos", "-1"], "Invalid value for option --eostudy-timeout (underflow: -1)"),
        (["--network-timeout", "-5"], "Invalid value for option --network-timeout (-5)"),
        (["-ll", "bogus"], "Invalid log level for --log-level option"),
        (["-ll", "WARNING"], "Invalid log level for --log-level option"),
        (["-ll", "notset"], "Invalid log level for --log-level option"),
    ],
)
def test_bad_option_values(argv: list[str], message: str) -> None:
    assert error_of(*argv, PORT).message == message


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "Missing parameter port"),
        (["0"], "Invalid parameter value 0 (underflow)"),
        (["+0"], "Invalid parameter value +0 (underflow)"),
        (["65536"], "Invalid parameter value 65536 (overflow)"),
        (["-1"], "Invalid parameter value -1 (overflow)"),
        (["-99999999999999999999"], "Invalid parameter value -99999999999999999999 (overflow)"),
        (["abc"], "Invalid parameter value abc"),
        ([""], "Invalid parameter value "),
        (["@"], "Invalid parameter value @"),
    ],
)
def test_bad_port(argv: list[str], message: str) -> None:
    err = error_of("-v", *argv)
    assert err.message == message
    assert not err.quiet_suppressible


@pytest.mark.parametrize(("raw", "port"), [("104", 104), (" 80x", 80), ("65535", 65535)])
def test_port_is_read_like_c(raw: str, port: int) -> None:
    assert parse([raw]).port == port


def test_inetd_needs_and_reads_no_port() -> None:
    assert parse(["--inetd"]).port is None
    assert parse(["--inetd", "abc"]).port is None
    assert parse(["--inetd"]).inetd is True


# --- command files (SPEC §1.3) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("-v  104\n", ["-v", "104"]),
        ("a\tb\r\nc", ["a", "b", "c"]),
        ('a"b c"d', ["ab c", "d"]),
        ('""', [""]),
        ("'x \"y' z", ['x "y', "z"]),
        ('"open quote', ["open quote"]),
        ("# not a comment", ["#", "not", "a", "comment"]),
        ("back\\ slash", ["back\\", "slash"]),
        ("v\vf\f", ["v\vf\f"]),
        ("", []),
    ],
)
def test_split_command_file(text: str, tokens: list[str]) -> None:
    assert options.split_command_file(text) == tokens


def test_command_files_are_expanded_once(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.write_text("-v")
    outer = tmp_path / "outer"
    outer.write_text(f"-aet @{inner} 104")
    parsed = parse([f"@{outer}"])
    assert parsed.aetitle == f"@{inner}"
    assert parsed.port == 104
    expanded = options.expanded_arguments(["-d", f"@{outer}"])
    assert expanded == ["--debug", "--aetitle", f"@{inner}", "104"]


def test_missing_command_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert error_of("104", f"@{missing}").message == f"Cannot open command file '{missing}'"


@pytest.mark.parametrize("content", ["", "  \n"])
def test_empty_command_file_means_no_arguments(tmp_path: Path, content: str) -> None:
    empty = tmp_path / "empty"
    empty.write_text(content)
    with pytest.raises(InformationRequested) as info:
        parse([f"@{empty}"])
    assert info.value.request is Request.USAGE


def test_a_directory_reads_as_empty(tmp_path: Path) -> None:
    assert parse([f"@{tmp_path}", "104"]).port == 104


# --- exclusive options (SPEC §1.4) --------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "wanted"),
    [
        ([], Request.USAGE),
        (["-h"], Request.USAGE),
        (["--help", "1", "2", "+cc", "--version"], Request.USAGE),
        (["11300", "--version"], Request.VERSION),
        (["--version", "+cc", "-pdu", "1"], Request.VERSION),
        (["+cc"], Request.LIST_CIPHERS),
        (["+cc", "--fork", "--inetd"], Request.LIST_CIPHERS),
    ],
)
def test_exclusive_options(argv: list[str], wanted: Request) -> None:
    with pytest.raises(InformationRequested) as info:
        parse(argv)
    assert info.value.request is wanted


def run(*argv: str) -> tuple[Options | int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    result = options.run_command_line(list(argv), out, err)
    return result, out.getvalue(), err.getvalue()


def test_usage_goes_to_stdout() -> None:
    for argv in ((), ("-h",), ("--help", "-pdu", "1")):
        result, out, err = run(*argv)
        assert (result, err) == (ExitCode.OK, "")
        assert out == options.render_help()
    assert "usage: storescpd [options] [port]" in out


def test_version() -> None:
    result, out, err = run("--version", "104")
    assert (result, err) == (ExitCode.OK, "")
    assert out.splitlines()[:3] == [f"$storescpd: storescpd v{__version__} $", "",
                                    "storescpd: DICOM storage (C-STORE) SCP"]  # fmt: skip


def test_list_ciphers_is_handed_to_the_caller() -> None:
    out, err = io.StringIO(), io.StringIO()
    seen: list[io.StringIO] = []

    def lister(stream: object) -> int:
        seen.append(out)
        return 0

    assert options.run_command_line(["+cc"], out, err, list_ciphers=lister) == 0
    assert seen == [out]
    result, _, text = run("+cc")
    assert result == ExitCode.COMMAND_LINE
    assert text.endswith("error: --list-ciphers is not supported yet\n")


def test_error_format() -> None:
    result, out, err = run("-pdu", "100", PORT)
    assert (result, out) == (ExitCode.COMMAND_LINE, "")
    assert err == (
        f"$storescpd: storescpd v{__version__} $\n\nstorescpd: DICOM storage (C-STORE) SCP\n"
        "error: Invalid value for option --max-pdu (underflow: 100)\n"
    )


def test_options_are_returned() -> None:
    result, out, err = run("-v", PORT)
    assert isinstance(result, Options)
    assert (out, err) == ("", "")


# --- quiet and inetd (SPEC §1.5, §8.3) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "printed"),
    [
        (["-q", "-pdu", "1", PORT], False),
        (["-ll", "fatal", "-pdu", "1", PORT], False),
        (["-ll", "off", "-pdu", "1", PORT], False),
        (["-q", "+v", PORT], False),
        (["-q", "-xyz", PORT], True),  # parse errors are always printed
        (["-q", "1", "2"], True),
        (["-q", "0"], True),  # the port is checked before logging is set up
        (["-q", "-ll", "info", PORT], True),
        (["-ll", "error", "-pdu", "1", PORT], True),
        (["--fork", "--inetd"], False),  # stderr is /dev/null once --inetd is seen
        (["--inetd", "-pdu", "1"], False),
        (["--inetd", "-Z"], True),
        (["-pdu", "1", PORT], True),
    ],
)
def test_which_errors_are_printed(argv: list[str], printed: bool) -> None:
    result, out, err = run(*argv)
    assert result == ExitCode.COMMAND_LINE
    assert out == ""
    assert ("error: " in err) is printed


def test_quiet_suppressible_marks_checks_after_logging() -> None:
    assert error_of("-pdu", "1", PORT).quiet_suppressible
    assert error_of("+v", PORT).quiet_suppressible
    assert not error_of("-ll", "x", PORT).quiet_suppressible
    assert not error_of("--fork", "--inetd").quiet_suppressible


# --- conflicts and dependencies (SPEC §2.2-2.8, §10) --------------------------------------------

SORT = "--sort-conc-studies, --sort-on-study-uid or --sort-on-patientname"
EOSTUDY = (
    "--sort-conc-studies, --sort-on-study-uid, --sort-on-patientname, "
    "--exec-on-eostudy or --rename-on-eostudy"
)
COMPRESSED = ["+xs", "+xy", "+xx", "+xv", "+xw", "+xt", "+xu", "+xm", "+xh", "+xn", "+xl", "+x2",
              "+x3", "+xo", "+x4", "+x5", "+xr"]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--fork", "--inetd"], "--inetd not allowed with --fork"),
        (["--inetd", "--fork"], "--inetd not allowed with --fork"),
        (["-ll", "info", "-v"], "--log-level not allowed with --verbose, --debug or --quiet"),
        (["-q", "-ll", "info"], "--log-level not allowed with --verbose, --debug or --quiet"),
        (["-lc", "f", "-ll", "info"], "--log-config not allowed with --log-level"),
        (["-lc", "f", "-d"], "--log-config not allowed with --verbose, --debug or --quiet"),
        (["+v"], "--verbose-pc only allowed with verbose mode"),
        (["+v", "-q"], "--verbose-pc only allowed with verbose mode"),
        (["+v", "-ll", "warn"], "--verbose-pc only allowed with verbose mode"),
        (["-xf", "f", "p", "+xe"], "--config-file not allowed with --prefer-little"),
        (["-xf", "f", "p", "+xi"], "--config-file not allowed with --implicit"),
        (["-xf", "f", "p", "+xa"], "--config-file not allowed with --accept-all"),
        (["-xf", "f", "p", "-pm"], "--config-file not allowed with --promiscuous"),
        (["+xs", "+te"], "--write-xfer-little not allowed with --prefer-lossless"),
        (["+xr", "+tb"], "--write-xfer-big not allowed with --prefer-rle"),
        (["+x5", "+ti"], "--write-xfer-implicit not allowed with --prefer-hevc10"),
        (["+xa", "+td"], "--write-xfer-deflated not allowed with --accept-all"),
        (["+B", "+te"], "--write-xfer-little not allowed with --bit-preserving"),
        (["+te", "+ti", "+xs"], "--write-xfer-little not allowed with --prefer-lossless"),
        (["+B", "-u"], "--disable-new-vr not allowed with --bit-preserving"),
        (["+B", "+u"], "--enable-new-vr not allowed with --bit-preserving"),
        (["+B", "-g"], "--group-length-remove not allowed with --bit-preserving"),
        (["+B", "+g="], "--group-length-recalc not allowed with --bit-preserving"),
        (["+B", "-e"], "--length-undefined not allowed with --bit-preserving"),
        (["+B", "+p", "4", "4"], "--padding-create not allowed with --bit-preserving"),
        (["+p", "4", "4", "-F"], "--padding-create not allowed with --write-dataset"),
        (["-F", "+p", "x", "4"], "--padding-create not allowed with --write-dataset"),
        (["+B", "-ss", "p"], "--sort-conc-studies not allowed with --bit-preserving"),
        (["+B", "-su", "p"], "--sort-on-study-uid not allowed with --bit-preserving"),
        (["+B", "-sp"], "--sort-on-patientname not allowed with --bit-preserving"),
        (["+tb", "+cl", "5"],
         "--compression-level only allowed with --write-xfer-deflated or --write-xfer-same"),
        (["+tb", "+cl", "x"],
         "--compression-level only allowed with --write-xfer-deflated or --write-xfer-same"),
        (["-tn", "+uf"], "--timenames not allowed with --unique-filenames"),
        (["+uf", "-tn"], "--timenames not allowed with --unique-filenames"),
        (["-xcs", "cmd"], f"--exec-on-eostudy only allowed with {SORT}"),
        (["-ss", "p", "-xcs", "cmd", "--inetd"], "--exec-on-eostudy not allowed with --inetd"),
        (["-rns"], f"--rename-on-eostudy only allowed with {SORT}"),
        (["-tos", "5"], f"--eostudy-timeout only allowed with {EOSTUDY}"),
        (["-tos", "x"], f"--eostudy-timeout only allowed with {EOSTUDY}"),
        (["+pw", "x"], "--use-passwd only allowed with --enable-tls"),
        (["+tls", "k", "c", "-tls", "-pw"], "--null-passwd only allowed with --enable-tls"),
        (["-der"], "--der-keys only allowed with --enable-tls"),
        (["+cf", "f"], "--add-cert-file only allowed with --enable-tls"),
        (["+crl", "f"], "--add-crl-file only allowed with --enable-tls"),
        (["+pa"], "--profile-basic only allowed with --enable-tls"),
        (["+pn"], "--profile-null only allowed with --enable-tls"),
        (["+px", "+py"], "--profile-bcp195 only allowed with --enable-tls"),
        (["+py", "+px"], "--profile-bcp195 only allowed with --enable-tls"),
        (["-ic", "-vc"], "--ignore-peer-cert only allowed with --enable-tls"),
        (["+rs", "s"], "--seed only allowed with --enable-tls"),
        (["+dp", "f"], "--dhparam only allowed with --enable-tls"),
        (["+cs", "X"], "--cipher only allowed with --enable-tls"),
        (["+tls", "k", "c", "+ws"], "--write-seed only allowed with --seed"),
        (["+tls", "k", "c", "+wf", "f"], "--write-seed-file only allowed with --seed"),
        (["+tls", "k", "c", "+crv", "+cra"], "--enable-crl-all not allowed with --enable-crl-vfy"),
        (["+tls", "k", "c", "+cra", "+crv"], "--enable-crl-all not allowed with --enable-crl-vfy"),
        (["+tls", "k", "c", "+cs", "X", "+pz"], "--cipher not allowed with --profile-bcp195-ex"),
        # checks run in storescp's order, so the first error is storescp's first error
        (["+xs", "+te", "-pdu", "1"], "Invalid value for option --max-pdu (underflow: 1)"),
        (["-pdu", "1", "-ll", "x"], "Invalid log level for --log-level option"),
        (["+pa", "-tn", "+uf"], "--timenames not allowed with --unique-filenames"),
    ],
)  # fmt: skip
def test_conflicts_and_dependencies(argv: list[str], message: str) -> None:
    err = error_of(*argv, PORT)
    assert err.message == message


@pytest.mark.parametrize("prefer", COMPRESSED)
@pytest.mark.parametrize("write", ["+te", "+tb", "+ti", "+td"])
def test_compressed_transfer_syntaxes_cannot_be_converted(prefer: str, write: str) -> None:
    message = error_of(prefer, write, PORT).message
    assert message == (f"{options.BY_NAME[write].long} not allowed with "
                       f"{options.BY_NAME[prefer].long}")  # fmt: skip


@pytest.mark.parametrize(
    "argv",
    [
        ["+xs", "+xe", "+te"],  # +xe won the block before the check
        ["+xd", "+te"],  # deflated can always be inflated
        ["-xf", "f", "p", "+x="],
        ["-xf", "f", "p", "+xs", "+x="],
        ["+B", "-B", "-g"],
        ["+te", "+cl", "5", "+t="],
        ["+td", "+cl", "9"],
        ["+uf", "-uf", "-tn"],
        ["-ss", "p", "-xcs", "c", "-rns", "-tos", "0", "-xs"],
        ["-xcs", "c", "-tos", "1", "-ss", "p"],
        ["--fork", "--single-process", "--inetd"],
        ["-ss", "x", "--fork"],  # documented, never enforced by storescp
        ["-v", "+v"],
        ["-ll", "debug", "+v"],
        ["-lc", "log.ini", "+v"],
        ["+tls", "k", "c", "+rs", "s", "+ws", "-vc", "+pz", "+cra", "+crl", "r"],
        ["+tls", "k", "c", "+cs", "A", "+cs", "B", "+pz", "+py"],
        ["-tls"],
    ],
)
def test_allowed_combinations(argv: list[str]) -> None:
    parse([*argv, PORT])


def test_tls_settings() -> None:
    parsed = parse(["+tls", "key.pem", "cert.pem", "+pw", "secret", "-der", "+cf", "a", "+cf", "b",
                    "+cd", "dir", "+crl", "r", "+px", "+cs", "X", "+cs", "Y", "+dp", "dh",
                    "+rs", "seed", "+ws", "-ic", PORT])  # fmt: skip
    assert parsed.tls == TlsOptions(
        private_key_file="key.pem", certificate_file="cert.pem", password="secret",
        key_format="der", cert_files=("a", "b"), cert_dirs=("dir",), crl_files=("r",),
        crl_check="leaf", profile="bcp195", ciphers=("X", "Y"), dhparam="dh", seed="seed",
        write_seed_file="seed", peer_cert="ignore",
    )  # fmt: skip
    other = parse(["+tls", "k", "c", "-pw", "+rs", "s", "+wf", "out", "+cra", PORT]).tls
    assert other is not None
    assert (other.password, other.write_seed_file, other.crl_check) == ("", "out", "all")
    assert parse(["+tls", "k", "c", "-tls", PORT]).tls is None


# --- helpers for the caller ---------------------------------------------------------------------


def test_used_options_are_long_names() -> None:
    parsed = parse(["-v", "-aet", "X", "+xs", "--no-echo", PORT])
    assert parsed.used_options == {"--verbose", "--aetitle", "--prefer-lossless", "--no-echo"}


def test_eostudy_options_are_allowed_with_fork_unlike_dcmtk() -> None:
    assert parse(["-ss", "p", "-xcs", "cmd", "-rns", "--fork", PORT]).exec_on_eostudy == "cmd"


@pytest.mark.parametrize(
    ("argv", "later"),
    [
        ([PORT], []),
        (["--fork", PORT], []),
        (["+ac", PORT], []),
        (["+ac", "-ac", PORT], []),
        (["--inetd"], []),
        (["-xf", "f", "p", PORT], []),
        (["-ss", "p", "-su", "q", PORT], []),
        (["-sp", "-xcs", "c", "-rns", "-tos", "1", "-xs", "-xcr", "c", PORT], []),
        (["+tls", "k", "c", "-pem", "+rs", "s", "+ws", PORT], []),
        (["-tls", PORT], []),
    ],
)  # fmt: skip
def test_not_yet_supported(argv: list[str], later: list[str]) -> None:
    assert options.not_yet_supported(parse(argv)) == later


def test_expanded_arguments_use_long_names() -> None:
    assert options.expanded_arguments(["-v", "+B", "-aet", "-q", "104"]) == [
        "--verbose", "--bit-preserving", "--aetitle", "-q", "104"]  # fmt: skip
    with pytest.raises(OptionError):
        options.expanded_arguments(["-Z"])


def test_help_lists_every_option() -> None:
    text = options.render_help()
    for option in options.OPTIONS:
        assert option.long in text
        assert option.help.split("\n")[0] in text
    assert max(len(line) for line in text.splitlines()) <= 100


@given(st.lists(st.sampled_from(["-v", "-q", "+B", "-B", "+te", "+xs", "+xe", "-pdu", "5000",
                                 "+uf", "-tn", "-ss", "p", "-aet", "@", "1", "104", "+p", "4",
                                 "-F", "+F", "--fork", "-xcs", "x", "+v", "-ll", "info"]),
                max_size=8))  # fmt: skip
def test_parse_fails_only_with_its_own_errors(argv: list[str]) -> None:
    try:
        parsed = parse(argv)
    except (OptionError, InformationRequested):
        return
    given_names = {options.BY_NAME[token].long for token in argv if token in options.BY_NAME}
    assert parsed.used_options <= given_names
    assert parsed.port is not None
