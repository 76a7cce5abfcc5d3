"""Study folders (-ss, -su, -sp) compared with DCMTK's storescp on identical sends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.conftest import run_dcmtk

STAMP = re.compile(r"\d{8}_\d{9}")


CODECS = {"ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}


def study_files(
    folder: Path, study: str, count: int, patient: bytes = b"Doe^John", charset: str = "ISO_IR 100"
) -> list[Path]:
    """``count`` copies of CT_small in study ``study`` with fresh instance UIDs, the patient's
    name given as the bytes of ``charset``."""
    from pydicom.data import get_testdata_file

    folder.mkdir(parents=True, exist_ok=True)
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    ds.StudyInstanceUID = study
    ds.SpecificCharacterSet = charset
    ds["PatientName"].value = patient.decode(CODECS[charset])
    paths = []
    for n in range(count):
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        path = folder / f"{study[-6:]}-{n}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def layout(od: Path) -> list[tuple[str, int]]:
    """(folder name with its time stamp masked, number of files), in order of creation."""
    folders = [p for p in od.iterdir() if p.is_dir() and not p.name.startswith(".")]
    folders.sort(key=lambda p: min((f.stat().st_mtime_ns for f in p.iterdir()), default=0))
    return [(STAMP.sub("<stamp>", p.name), len(list(p.iterdir()))) for p in folders]


@pytest.mark.parametrize(
    "sort", [["-ss", "PFX"], ["-ss", ""], ["-su", "S"], ["-su", ""], ["-sp"]],
    ids=["ss", "ss-empty", "su", "su-empty", "sp"],
)  # fmt: skip
def test_folders_match_dcmtk_for_interleaved_studies(
    storescpd, dcmtk_storescp, tmp_path: Path, sort: list[str]
) -> None:
    a, b = "1.2.826.0.1.3680043.8.498.1001", "1.2.826.0.1.3680043.8.498.2002"
    sends = [
        study_files(tmp_path / "a1", a, 2, "Müller^Jörg".encode("latin-1")),
        study_files(tmp_path / "b", b, 2, b"../../etc^x"),
        study_files(tmp_path / "a2", a, 1, "Müller^Jörg".encode("latin-1")),
    ]
    layouts = {}
    for name, start in (("ours", storescpd), ("dcmtk", dcmtk_storescp)):
        server = start(sort)
        for files in sends:  # one association per send, one after the other
            sent = run_dcmtk("storescu", "127.0.0.1", str(server.port), *map(str, files))
            assert sent.returncode == 0, sent.stderr
        layouts[name] = layout(server.od)
    assert layouts["ours"] == layouts["dcmtk"]
    # A, B, then A again: -su goes back to A's folder, -ss and -sp open a new one.
    expected_folders = 2 if sort[0] == "-su" else 3
    assert len(layouts["ours"]) == expected_folders, layouts["ours"]
    if sort[0] == "-sp":
        assert layouts["ours"][0][0] == "Mueller_Joerg_<stamp>"
        assert layouts["ours"][1][0] == "______etc_x_<stamp>"


@pytest.mark.parametrize(
    ("charset", "patient"),
    [("ISO_IR 192", "Иванов^Иван"), ("ISO_IR 192", "山田^太郎=やまだ^たろう"), ("ISO_IR 100", "")],
    ids=["cyrillic", "japanese", "empty"],
)
def test_non_latin_and_empty_patient_names_match_dcmtk(
    storescpd, dcmtk_storescp, tmp_path: Path, charset: str, patient: str
) -> None:
    """``-sp`` spells UTF-8 bytes as DCMTK does, inside ``-od``, and warns for every object."""
    files = study_files(tmp_path / "in", "1.2.826.0.1.3680043.8.498.3003", 2,
                        patient.encode(CODECS[charset]), charset)  # fmt: skip
    seen = {}
    for name, start in (("ours", storescpd), ("dcmtk", dcmtk_storescp)):
        server = start(["-sp"])
        sent = run_dcmtk("storescu", "127.0.0.1", str(server.port), *map(str, files))
        assert sent.returncode == 0, sent.stderr
        server.stop()
        warnings = [line for line in server.log.splitlines() if line.startswith("W: ") and
                    "atient" in line]  # fmt: skip
        seen[name] = (layout(server.od), warnings)
    assert seen["ours"] == seen["dcmtk"]
    ((folder, count),) = seen["ours"][0]
    assert count == 2 and "/" not in folder and folder.isascii()
    assert len(seen["ours"][1]) == 2, "one warning per object"
