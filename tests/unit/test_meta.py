"""The preamble and file meta information built by storescpd.worker.meta."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info

from storescpd.worker.meta import (
    BIT_PRESERVING_VERSION_NAME,
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    preamble_and_meta,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
LEE = "1.2.840.10008.1.2.1"

CASES = [
    # (sop class, sop instance, transfer syntax, calling AE, version name)
    (CT, "1.2.3.4", LEE, "STORESCU", IMPLEMENTATION_VERSION_NAME),  # all even lengths
    (CT, "1.2.3.45", "1.2.840.10008.1.2", "ODD", IMPLEMENTATION_VERSION_NAME),  # odd UID and AE
    (CT, "1.2.3", "1.2.840.10008.1.2.2", "A" * 16, BIT_PRESERVING_VERSION_NAME),
]

# Values pydicom would refuse or normalise; DCMTK writes what the data set holds.
EDGE_CASES = [
    # (sop class, sop instance, expected (0002,0002) and (0002,0003) elements)
    ("", "", b"\x02\x00\x02\x00UI\x00\x00" + b"\x02\x00\x03\x00UI\x00\x00"),
    (
        "1.2",
        "1.2.3.4 ",
        b"\x02\x00\x02\x00UI\x04\x001.2\x00" + b"\x02\x00\x03\x00UI\x08\x001.2.3.4 ",
    ),
]


def pydicom_meta(cls: str, inst: str, ts: str, ae: str, version: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = cls
    meta.MediaStorageSOPInstanceUID = inst
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = version
    if ae:
        meta.SourceApplicationEntityTitle = ae
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_file_meta_info(fp, meta, enforce_standard=True)
    return bytes(128) + b"DICM" + fp.getvalue()


@pytest.mark.parametrize(("cls", "inst", "ts", "ae", "version"), CASES)
def test_equals_pydicom_file_meta(cls: str, inst: str, ts: str, ae: str, version: str) -> None:
    assert preamble_and_meta(cls, inst, ts, ae, version) == pydicom_meta(cls, inst, ts, ae, version)


@pytest.mark.parametrize(("cls", "inst", "ts", "ae", "version"), CASES)
def test_pydicom_reads_it_back(cls: str, inst: str, ts: str, ae: str, version: str) -> None:
    data = preamble_and_meta(cls, inst, ts, ae, version)
    ds = dcmread(BytesIO(data), force=True)
    meta = ds.file_meta
    assert meta.FileMetaInformationGroupLength == len(data) - 144
    assert meta.FileMetaInformationVersion == b"\x00\x01"
    assert meta.MediaStorageSOPClassUID == cls
    assert meta.MediaStorageSOPInstanceUID == inst
    assert meta.TransferSyntaxUID == ts
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName == version
    assert meta.get("SourceApplicationEntityTitle", "") == ae


@pytest.mark.parametrize(("cls", "inst", "expected"), EDGE_CASES)
def test_values_are_written_as_given(cls: str, inst: str, expected: bytes) -> None:
    data = preamble_and_meta(cls, inst, LEE, "SCU")
    start = 144 + 14  # preamble, DICM, group length, version
    assert data[start : start + len(expected)] == expected


def test_empty_calling_ae_title_is_omitted() -> None:
    assert b"\x02\x00\x16\x00" not in preamble_and_meta(CT, "1.2.3.4", LEE, "")


def test_layout() -> None:
    data = preamble_and_meta(CT, "1.2.3.4", LEE, "SCU")
    assert data[:128] == bytes(128)
    assert data[128:132] == b"DICM"
    assert data[132:140] == b"\x02\x00\x00\x00UL\x04\x00"
    assert len(data) % 2 == 0


def test_implementation_identity_is_valid() -> None:
    assert len(IMPLEMENTATION_CLASS_UID) <= 64
    parts = IMPLEMENTATION_CLASS_UID.split(".")
    assert all(part.isdigit() and (part == "0" or part[0] != "0") for part in parts)
    assert len(IMPLEMENTATION_VERSION_NAME) <= 16
    assert len(BIT_PRESERVING_VERSION_NAME) <= 16
