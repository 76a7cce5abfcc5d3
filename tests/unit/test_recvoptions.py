"""Unit tests for storescpd.recvoptions: DCMTK dcmrecv 3.6.7's command line (SPEC §12.1) as a
view over storescpd's option table."""

from __future__ import annotations

import dataclasses
import io

import pytest

from storescpd import options
from storescpd.options import OptionError, Options, parse
from storescpd.recvoptions import DCMRECV, OPTIONS_DCMRECV

PORT = "11112"


def recv(*argv: str) -> Options:
    return parse(list(argv), DCMRECV)


def recv_error(*argv: str) -> str:
    with pytest.raises(OptionError) as info:
        recv(*argv)
    return info.value.message


def test_names_are_unique() -> None:
    longs = [o.long for o in OPTIONS_DCMRECV]
    shorts = [o.short for o in OPTIONS_DCMRECV if o.short]
    assert len(longs) == len(set(longs)) and len(shorts) == len(set(shorts))


def test_shared_entries_are_storescps_own() -> None:
    """Everything but the group, a short name, a block or the help text comes from storescp's
    entry, so a fix there reaches both commands."""
    own = {"--use-called-aetitle", "--no-subdir", "--series-date-subdir",
           "--short-unique-names", "--system-time-names"}  # fmt: skip
    for option in OPTIONS_DCMRECV:
        if option.long in own:
            assert option.long not in options.BY_LONG
            continue
        shared = options.BY_LONG[option.long]
        assert dataclasses.replace(option, group=shared.group, short=shared.short,
                                   block=shared.block, help=shared.help) == shared  # fmt: skip
    assert {o.long for o in OPTIONS_DCMRECV if o.dest.startswith("tls.")} == {
        o.long for o in options.OPTIONS if o.dest.startswith("tls.")
    }


def test_check_order_covers_every_option_once() -> None:
    order = [name for name in DCMRECV.check_order if name != options.PORT]
    exclusive = {o.long for o in OPTIONS_DCMRECV if o.exclusive}
    assert len(order) == len(set(order))
    assert set(order) | exclusive == set(DCMRECV.by_long)


def test_every_destination_is_a_field() -> None:
    for option in OPTIONS_DCMRECV:
        if not option.exclusive and not option.dest.startswith("tls."):
            assert option.dest in options.option_fields(), option.long


def test_defaults() -> None:
    opts = recv(PORT)
    assert (opts.port, opts.aetitle, opts.dcmrecv, opts.config_file) == (11112, "DCMRECV", True,
                                                                         None)  # fmt: skip
    assert not (opts.unique_filenames or opts.short_unique_names or opts.system_time_names)
    assert not opts.series_date_subdir and not opts.length_explicit
    assert not parse([PORT]).dcmrecv


@pytest.mark.parametrize(
    ("argv", "field", "value"),
    [
        (["+fu"], "unique_filenames", True),
        (["+fsu"], "short_unique_names", True),
        (["+fst"], "system_time_names", True),
        (["+fst", "+fd"], "system_time_names", False),
        (["+fd", "+fsu"], "short_unique_names", True),
        (["+ssd"], "series_date_subdir", True),
        (["+ssd", "-s"], "series_date_subdir", False),
        (["-aet", "ME"], "aetitle", "ME"),
        (["-aet", "ME", "-uca"], "aetitle", "DCMRECV"),
        (["-uca", "-aet", "ME"], "aetitle", "ME"),
        (["+B"], "bit_preserving", True),
        (["+B", "--ignore"], "ignore", True),
        (["--ignore", "+B"], "ignore", False),
        (["-xf", "f", "p"], "config_file", ("f", "p")),
        (["-fe", ".dcm"], "filename_extension", ".dcm"),
        (["-ta", "010"], "acse_timeout", 8),
        (["-od", "out/"], "output_directory", "out"),
    ],
)
def test_options_take_effect(argv: list[str], field: str, value: object) -> None:
    assert getattr(recv(*argv, PORT), field) == value


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "Missing parameter port"),
        (["-pdu", "1"], "Missing parameter port"),
        (["-pdu", "1", "0"], "Invalid value for option --max-pdu (underflow: 1)"),
        (["-pdu", "1", "-ta", "0", PORT], "Invalid value for option --acse-timeout (underflow: 0)"),
        (["+ssd", "+B", PORT], "--bit-preserving not allowed with --series-date-subdir"),
        (["+B", "+ssd", PORT], "--bit-preserving not allowed with --series-date-subdir"),
        (["--fork", PORT], "Unknown option --fork"),
        (["-uf", PORT], "Unknown option -uf"),
        (["+pw", "x", PORT], "--use-passwd only allowed with --enable-tls"),
        ([PORT, PORT], "Too many parameters"),
    ],
)
def test_errors(argv: list[str], message: str) -> None:
    if not argv:
        argv = ["-v"]
    assert recv_error(*argv) == message


def test_help_is_dcmrecvs() -> None:
    out, err = io.StringIO(), io.StringIO()
    assert options.run_command_line(["--help"], out, err, program=DCMRECV) == 0
    text = out.getvalue()
    assert text.startswith("$storescpd-dcmrecv: storescpd-dcmrecv v")
    assert "usage: storescpd-dcmrecv [options] port" in text
    assert "--short-unique-names" in text and "--sort-conc-studies" not in text
    assert options.run_command_line(["-Z"], out, err, program=DCMRECV) == 1
    assert err.getvalue().endswith("error: Unknown option -Z\n")
    assert "Simple DICOM storage SCP (receiver)" in err.getvalue()
