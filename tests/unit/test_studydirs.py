"""Study folder and -rns names (SPEC §6.3, §6.4, §7.2)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from storescpd.studydirs import (
    conc_studies_name,
    map_patient_name,
    patient_folder_name,
    patient_name_warning,
    rename_for_study,
    rename_prefix,
    study_uid_name,
)

WHEN = datetime(2026, 11, 22, 12, 43, 9, 545_123)


def test_conc_studies_names() -> None:
    assert conc_studies_name("PFX", WHEN) == "PFX_20261122_124309545"
    assert conc_studies_name("", WHEN) == "20261122_124309545"


def test_study_uid_names_and_refusals() -> None:
    assert study_uid_name("S", "1.2.3") == "S_1.2.3"
    assert study_uid_name("", "1.2.3") == "1.2.3"
    for bad in ("..", "", "1.2/3", "a.b", "1" * 65):
        with pytest.raises(ValueError):
            study_uid_name("", bad)


@pytest.mark.parametrize(
    ("raw", "mapped"),
    [
        ("Müller^Jörg d'Arc".encode("latin-1"), "Mueller_Joerg_d_Arc"),
        ("Müller".encode(), "MA_ller"),  # UTF-8 bytes mapped one by one, as DCMTK
        (b"../../etc", "______etc"),
        (b"A/B\\SECOND", "A_B"),
        (b"", "ANONYMOUS"),
        (None, "ANONYMOUS"),
        (b"   ", "ANONYMOUS"),
        ("ÀÆÇÐÑ×ØÞßÿ".encode("latin-1"), "AACDN_O_ssy"),
    ],
)
def test_patient_name_mapping(raw: bytes | None, mapped: str) -> None:
    assert map_patient_name(raw) == mapped
    assert "/" not in mapped and "." not in mapped


def test_patient_folder_name() -> None:
    assert patient_folder_name(b"Doe^John", WHEN) == "Doe_John_20261122_124309545"


@pytest.mark.parametrize(
    ("name", "time_names", "prefix"),
    [("CT.1.2.3.dcm", False, "CT"), ("SRd.1.2", False, "SR"), ("UNKNOWN.1.2", False, "UN"),
     ("20261122124309545.CT.dcm", True, "CT"), ("20261122124309545_0001.MR", True, "MR")],
)  # fmt: skip
def test_rename_prefix(name: str, time_names: bool, prefix: str) -> None:
    assert rename_prefix(name, time_names) == prefix


def test_rename_numbers_in_order_and_never_replaces(tmp_path: Path) -> None:
    first = [tmp_path / f"CT.1.{n}" for n in range(3)] + [tmp_path / "MR.1.9"]
    for n, path in enumerate(first):
        path.write_text(str(n))
    renamed = rename_for_study(str(tmp_path), map(str, first), time_names=False)
    assert [Path(p).name for p in renamed] == ["CT000001", "CT000002", "CT000003", "MR000001"]
    assert (tmp_path / "CT000002").read_text() == "1"
    # The study comes back (-su): its new files continue the numbering.
    again = tmp_path / "CT.1.7"
    again.write_text("again")
    (renamed_again,) = rename_for_study(str(tmp_path), [str(again)], time_names=False)
    assert Path(renamed_again).name == "CT000004"
    assert (tmp_path / "CT000001").read_text() == "0"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "CT000001", "CT000002", "CT000003", "CT000004", "MR000001",
    ]  # fmt: skip


def test_rename_keeps_a_vanished_file_out(tmp_path: Path) -> None:
    kept = tmp_path / "CT.1.1"
    kept.write_text("x")
    result = rename_for_study(str(tmp_path), [str(tmp_path / "CT.gone"), str(kept)], False)
    assert result == [str(tmp_path / "CT.gone"), str(tmp_path / "CT000002")]


@pytest.mark.parametrize(
    ("raw", "charset", "warns"),
    [
        (b"Doe^John", "ISO_IR 192", None),  # ASCII is faithful in any character set
        ("Müller".encode("latin-1"), "ISO_IR 100", None),
        ("Müller".encode("latin-1"), None, None),  # no (0008,0005): Latin-1 is assumed
        ("Иван".encode(), "ISO_IR 192", "not in Latin-1 (charset: ISO_IR 192)"),
        (b"Doe\\" + "Иван".encode(), "ISO_IR 192", None),  # only the first value counts
        (b"", "ISO_IR 100", "using 'ANONYMOUS' instead"),
        (None, None, "using 'ANONYMOUS' instead"),
    ],
)
def test_patient_name_warning(raw: bytes | None, charset: str | None, warns: str | None) -> None:
    warning = patient_name_warning(raw, charset)
    assert warning is None if warns is None else warns in (warning or "")
