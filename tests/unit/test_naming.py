"""SOP class prefix table, UID checks, the three file-name schemes and the path guard."""

from __future__ import annotations

import os
import re
from collections import Counter
from datetime import date, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydicom.uid import UID

from storescpd.naming import (
    DEFAULT_STORAGE_CLASSES,
    SOP_CLASSES,
    SopClass,
    TimeNamer,
    instance_file_name,
    is_valid_uid,
    log_code_for,
    prefix_for,
    series_date_folder,
    short_unique_name,
    system_time_name,
    unique_file_name,
    within,
)

PRIVATE_CLASS = "1.2.826.0.1.3680043.8.498.1"
VERIFICATION = "1.2.840.10008.1.1"

# --- the Appendix A table ------------------------------------------------------------------

NOT_DEFAULT_ACCEPTED = {
    "1.2.840.10008.5.1.4.1.1.200.1": "PPcd",
    "1.2.840.10008.5.1.4.1.1.200.3": "PA",
    "1.2.840.10008.5.1.4.1.1.200.7": "PPxd",
    "1.2.840.10008.5.1.4.38.1": "HP",
    "1.2.840.10008.5.1.4.39.1": "CP",
    "1.2.840.10008.5.1.4.43.1": "IT",
    "1.2.840.10008.5.1.4.44.1": "ITa",
    "1.2.840.10008.5.1.4.45.1": "ITg",
}


def test_table_size_and_default_accepted_count() -> None:
    assert len(SOP_CLASSES) == 194
    assert len(DEFAULT_STORAGE_CLASSES) == 186
    assert len(set(DEFAULT_STORAGE_CLASSES)) == 186


def test_the_eight_classes_that_need_a_profile() -> None:
    refused = {row.uid: row.prefix for row in SOP_CLASSES if not row.default_accepted}
    assert refused == NOT_DEFAULT_ACCEPTED
    assert not set(refused) & set(DEFAULT_STORAGE_CLASSES)


def test_uids_and_names_unique_only_sri_prefix_repeats() -> None:
    assert len({row.uid for row in SOP_CLASSES}) == 194
    assert len({row.name for row in SOP_CLASSES}) == 194
    repeated = [p for p, n in Counter(row.prefix for row in SOP_CLASSES).items() if n > 1]
    assert repeated == ["SRi"]


@pytest.mark.parametrize("row", SOP_CLASSES, ids=lambda row: row.prefix)
def test_row_is_well_formed(row: SopClass) -> None:
    uid, name, prefix = row.uid, row.name, row.prefix
    assert is_valid_uid(uid)
    assert re.fullmatch(r"[A-Za-z0-9_]{1,4}", prefix)
    assert re.fullmatch(r"[A-Za-z0-9_]+", name)
    # pydicom is an independent source for the UID; its keyword must name the same class.
    assert UID(uid).type == "SOP Class"
    assert _comparable(UID(uid).keyword) == _comparable(name) or name in KEYWORD_DIFFERS


# Same classes, words in another order in one of the two vocabularies.
KEYWORD_DIFFERS = {
    "ImplantationPlanSRDocumentStorage",
    "DRAFT_SRTextStorage",
    "DRAFT_SRAudioStorage",
    "DRAFT_SRDetailStorage",
    "DRAFT_SRComprehensiveStorage",
}


def _comparable(name: str) -> str:
    key = name.lower().replace("_", "")
    key = re.sub(r"^(retired|draft|diconde)", "", key)
    return re.sub(r"(retired|trial)$", "", key)


@pytest.mark.parametrize(
    ("sop_class", "prefix", "log_code"),
    [
        ("1.2.840.10008.5.1.4.1.1.2", "CT", "CT"),
        ("1.2.840.10008.5.1.4.1.1.4", "MR", "MR"),
        ("1.2.840.10008.5.1.4.1.1.7", "SC", "SC"),
        ("1.2.840.10008.5.1.4.1.1.1.2", "DXm", "DXm"),
        ("1.2.840.10008.5.1.4.1.1.88.67", "SRd", "SRd"),
        ("1.2.840.10008.5.1.4.1.1.88.76", "SRde", "SRde"),
        ("1.2.840.10008.5.1.4.1.1.88.1", "SR_t", "SR_t"),
        ("1.2.840.10008.5.1.4.1.1.88.70", "SRi", "SRi"),
        ("1.2.840.10008.5.1.4.1.1.88.75", "SRi", "SRi"),
        ("1.2.840.10008.5.1.4.34.1", "RB_d", "RB_d"),
        ("1.2.840.10008.5.1.4.1.1.481.13", "Rca", "Rca"),
        ("1.2.840.10008.5.1.4.1.1.9.1", "WV_d", "WV_d"),
        ("1.2.840.10008.5.1.4.1.1.104.1", "PDF", "PDF"),
        ("1.2.840.10008.5.1.1.27", "SP", "SP"),
        ("1.2.840.10008.5.1.4.45.1", "ITg", "ITg"),  # needs a profile, still named
        (PRIVATE_CLASS, "UNKNOWN", "OT"),
        (VERIFICATION, "UNKNOWN", "OT"),
        ("1.2.840.10008.5.1.4.1.1.2 ", "UNKNOWN", "OT"),  # no trimming of a padded UID
        ("", "UNKNOWN", "OT"),
    ],
)
def test_prefix_and_log_code(sop_class: str, prefix: str, log_code: str) -> None:
    assert prefix_for(sop_class) == prefix
    assert log_code_for(sop_class) == log_code


# --- UID grammar ---------------------------------------------------------------------------

UID_64 = "1." + "2" * 62


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("1", True),
        ("0", True),
        ("1.2.3", True),
        ("1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322", True),
        ("1.2.040.003", True),  # leading zeros: not DICOM, but sent by real devices
        (UID_64, True),
        (UID_64 + "3", False),  # 65 characters
        ("", False),
        (".", False),
        ("..", False),
        ("1..2", False),
        (".1.2", False),
        ("1.2.", False),
        ("../../evil1", False),
        ("1.2/3", False),
        ("/1.2", False),
        ("1\\2", False),
        ("1.2\0", False),
        ("1.2 ", False),
        (" 1.2", False),
        ("1. 2", False),
        ("1.2\n", False),
        ("1.2.a", False),
        ("1e5", False),
        ("-1.2", False),
        ("+1.2", False),
        ("١.٢", False),  # Arabic-Indic digits are digits to Python, not to DICOM
        ("1.２", False),  # fullwidth digit
    ],
)
def test_is_valid_uid(value: str, valid: bool) -> None:
    assert is_valid_uid(value) is valid


FORBIDDEN = ("/", "\\", "\0", "..")


# Plain text almost never parses as a UID; the narrow alphabet makes accepted values common.
@given(st.text() | st.text(alphabet="0123456789./\\\0"))
@example("1/2")
@example("1..2")
def test_is_valid_uid_never_accepts_path_syntax(value: str) -> None:
    if is_valid_uid(value):
        assert not any(bad in value for bad in FORBIDDEN)


@given(
    st.lists(st.sampled_from(["0", "1", "9", "12", "."]), max_size=20),
    st.sampled_from(FORBIDDEN),
    st.integers(min_value=0, max_value=20),
)
def test_uid_with_path_syntax_inserted_is_refused(parts: list[str], bad: str, where: int) -> None:
    text = "".join(parts)
    where = min(where, len(text))
    assert not is_valid_uid(text[:where] + bad + text[where:])


# --- name schemes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "uid", "ext", "name"),
    [
        (
            "CT",
            "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322",
            "",
            "CT.1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322",
        ),
        ("MR", "1.2.3", ".dcm", "MR.1.2.3.dcm"),
        ("SRd", "1.2.3", "", "SRd.1.2.3"),
        ("UNKNOWN", "1.2.3.5", "", "UNKNOWN.1.2.3.5"),
    ],
)
def test_instance_file_name(prefix: str, uid: str, ext: str, name: str) -> None:
    assert instance_file_name(prefix, uid, ext) == name


@pytest.mark.parametrize(
    ("uid", "ext"),
    [
        ("../../evil1", ""),
        ("1.2/../../x", ""),
        ("", ""),
        ("1.2.3 ", ""),
        (UID_64 + "3", ""),
        ("1.2.3", "/../x"),  # an extension that is a path
        ("1.2.3", "\\x"),
    ],
)
def test_instance_file_name_refuses(uid: str, ext: str) -> None:
    with pytest.raises(ValueError):
        instance_file_name("CT", uid, ext)


def test_unique_file_name() -> None:
    uid = "1.2.276.0.7230010.3.1.4.8323328.28538.1795351519.505926"
    expected = "CT.X.1.2.276.0.7230010.3.1.4.8323328.28538.1795351519.505926.dcm"
    assert unique_file_name("CT", uid, ".dcm") == expected
    with pytest.raises(ValueError):
        unique_file_name("CT", "1.2/3", "")


T0 = datetime(2026, 11, 22, 12, 44, 17, 893_000)
T1 = datetime(2026, 11, 22, 12, 44, 48, 1_000)
MS = timedelta(milliseconds=1)


@pytest.mark.parametrize(
    ("calls", "names"),
    [
        ([("CT", "", T0)], ["20261122124417893.CT"]),
        ([("CT", "", T1), ("CT", "", T1)], ["20261122124448001.CT", "20261122124448001_0000.CT"]),
        (
            [("CT", "", T1)] * 3,
            ["20261122124448001.CT", "20261122124448001_0000.CT", "20261122124448001_0001.CT"],
        ),
        # sub-millisecond differences are the same millisecond
        (
            [("MR", ".dcm", T1), ("MR", ".dcm", T1 + timedelta(microseconds=998))],
            ["20261122124448001.MR.dcm", "20261122124448001_0000.MR.dcm"],
        ),
        # a new millisecond restarts the serial
        (
            [("CT", "", T1), ("CT", "", T1), ("CT", "", T1 + MS), ("CT", "", T1 + MS)],
            [
                "20261122124448001.CT",
                "20261122124448001_0000.CT",
                "20261122124448002.CT",
                "20261122124448002_0000.CT",
            ],
        ),
        # different prefixes do not collide, each gets its own serial as in DCMTK
        (
            [("CT", "", T1), ("CT", "", T1), ("MR", "", T1), ("MR", "", T1)],
            [
                "20261122124448001.CT",
                "20261122124448001_0000.CT",
                "20261122124448001.MR",
                "20261122124448001_0000.MR",
            ],
        ),
        # DCMTK would reuse the first name here and overwrite; we do not
        (
            [("CT", "", T1), ("MR", "", T1), ("CT", "", T1)],
            ["20261122124448001.CT", "20261122124448001.MR", "20261122124448001_0000.CT"],
        ),
        # the extension is part of the name
        (
            [("CT", "", T1), ("CT", ".dcm", T1)],
            ["20261122124448001.CT", "20261122124448001.CT.dcm"],
        ),
        # a clock step back to an earlier millisecond is a new millisecond for the namer
        (
            [("CT", "", T1), ("CT", "", T1 + MS), ("CT", "", T1)],
            ["20261122124448001.CT", "20261122124448002.CT", "20261122124448001.CT"],
        ),
    ],
)
def test_time_namer(calls: list[tuple[str, str, datetime]], names: list[str]) -> None:
    namer = TimeNamer()
    assert [namer.name(prefix, ext, now) for prefix, ext, now in calls] == names


def test_time_namer_pads_year_and_fields() -> None:
    assert TimeNamer().name("US", "", datetime(987, 1, 2, 3, 4, 5, 6_000)) == "09870102030405006.US"


def test_time_namer_serial_grows_past_four_digits() -> None:
    namer = TimeNamer()
    names = [namer.name("CT", "", T1) for _ in range(10_002)]
    assert names[-2] == "20261122124448001_9999.CT"
    assert names[-1] == "20261122124448001_10000.CT"
    assert len(set(names)) == len(names)


def test_time_namer_reset_restarts_serials() -> None:
    namer = TimeNamer()
    namer.name("CT", "", T1)
    assert namer.name("CT", "", T1) == "20261122124448001_0000.CT"
    namer.reset()
    assert namer.name("CT", "", T1) == "20261122124448001.CT"
    assert namer.name("CT", "", T1) == "20261122124448001_0000.CT"


def test_time_namer_refuses_separator_in_extension() -> None:
    with pytest.raises(ValueError):
        TimeNamer().name("CT", "/x", T1)


# --- path guard ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("directory", "path", "inside"),
    [
        ("/out", "/out/CT.1.2", True),
        ("/out", "/out/sub/CT.1.2", True),
        ("/out/", "/out/CT.1.2", True),
        ("/out", "/out/./CT.1.2", True),
        ("/out", "/out/a/../CT.1.2", True),
        ("/out", "/out", False),
        ("/out", "/out/", False),
        ("/out", "/out/.", False),
        ("/out", "/out/..", False),
        ("/out", "/out/../etc/passwd", False),
        ("/out", "/out/a/../../x", False),
        ("/out", "/outside/x", False),  # a shared string prefix is not containment
        ("/out", "/x", False),
        ("/", "/x", True),
        ("/", "/", False),
        (".", "./CT.1.2", True),
        (".", "CT.1.2", True),
        (".", "../CT.1.2", False),
        ("out", "out/CT.1.2", True),
        ("out", "CT.1.2", False),
        ("out", os.path.join(os.getcwd(), "out", "CT.1.2"), True),
        (os.path.join(os.getcwd(), "out"), "out/CT.1.2", True),
    ],
)
def test_within(directory: str, path: str, inside: bool) -> None:
    assert within(directory, path) is inside


DIRECTORIES = st.sampled_from(["/srv/incoming", ".", "out", "out/", "/", "a/b/../c"])
PREFIXES = st.sampled_from(sorted({row.prefix for row in SOP_CLASSES} | {"UNKNOWN"}))
EXTENSIONS = st.sampled_from(["", ".dcm", ".DCM", "-x"])
UIDS = st.from_regex(r"[0-9]{1,6}(\.[0-9]{1,6}){0,8}", fullmatch=True)  # at most 62 chars


@given(DIRECTORIES, PREFIXES, st.text(), EXTENSIONS)
@example(".", "CT", "..", "")
@example("/srv/incoming", "CT", "../../evil1", "")
def test_any_instance_name_is_refused_or_stays_inside(
    directory: str, prefix: str, uid: str, ext: str
) -> None:
    try:
        name = instance_file_name(prefix, uid, ext)
    except ValueError:
        assert not is_valid_uid(uid)
        return
    assert is_valid_uid(uid)
    assert within(directory, os.path.join(directory, name))


@given(DIRECTORIES, PREFIXES, UIDS, EXTENSIONS)
def test_accepted_names_stay_inside(directory: str, prefix: str, uid: str, ext: str) -> None:
    names = [instance_file_name(prefix, uid, ext), unique_file_name(prefix, uid, ext)]
    names.append(TimeNamer().name(prefix, ext, T1))
    for name in names:
        path = os.path.join(directory, name)
        assert within(directory, path)
        assert os.path.dirname(os.path.abspath(path)) == os.path.abspath(directory)


# --- dcmrecv's names (SPEC §12.2, §12.3) ----------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "started", "draw", "ext", "name"),
    [
        ("CT", 0x6B02E433, 0x325DF7D2, "", "CT_6b02e433325df7d2"),
        ("UNKNOWN", 0x6B02E433, 0x325DF7D2, "", "XX_6b02e433325df7d2"),
        ("SRd", 1, 2, ".dcm", "SRd_0000000100000002.dcm"),
        ("MR", 2**32 + 5, 2**32 - 1, "", "MR_00000005ffffffff"),
    ],
)
def test_short_unique_name(prefix: str, started: int, draw: int, ext: str, name: str) -> None:
    assert short_unique_name(prefix, started, draw, ext) == name


@pytest.mark.parametrize(
    ("when", "prefix", "ext", "name"),
    [
        (datetime(2026, 11, 22, 12, 46, 45, 301842), "CT", "", "20261122124645.301842.CT"),
        (datetime(2026, 1, 2, 3, 4, 5, 6), "UNKNOWN", ".dcm", "20260102030405.000006.UNKNOWN.dcm"),
    ],
)
def test_system_time_name(when: datetime, prefix: str, ext: str, name: str) -> None:
    assert system_time_name(prefix, ext, when) == name


@pytest.mark.parametrize(
    ("series_date", "folder"),
    [
        ("19970430", "data/1997/04/30"),
        ("19970430 ", "data/1997/04/30"),
        ("20240229", "data/2024/02/29"),
        ("20230229", "undef/20261202"),
        ("19971332", "undef/20261202"),
        ("1997043", "undef/20261202"),
        ("../../etc", "undef/20261202"),
        ("1997.04.30", "undef/20261202"),
        ("", "undef/20261202"),
        (None, "undef/20261202"),
    ],
)
def test_series_date_folder(series_date: str | None, folder: str) -> None:
    assert series_date_folder(series_date, date(2026, 12, 2)) == folder
