"""The fast look at in-memory data sets (``encoding._RawLook``) against the full parser: where
it vouches for a raw copy, the full parser must agree, with the same identity and bytes."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pydicom
import pytest
from pydicom.filewriter import write_dataset

from storescpd.worker import encoding
from storescpd.worker.encoding import (
    EXPLICIT_LE,
    IMPLICIT_LE,
    ConversionImpossible,
    OutputFormat,
    UnreadableDataset,
    write_normal,
)

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
FILES = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "rtplan.dcm",
    "rtdose.dcm",
    "reportsi.dcm",
    "test-SR.dcm",
    "waveform_ecg.dcm",
    "priv_SQ.dcm",
    "nested_priv_SQ.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "dicomdirtests/98892001/CT2N/6293",
]
FORMATS = {
    "default": OutputFormat(),
    "-e": OutputFormat(length_explicit=False),
    "-F": OutputFormat(write_file=False),
}


def data_set_bytes(name: str, implicit: bool, undefined: bool, as_sent: bool = False) -> bytes:
    """A test file's data set; ``as_sent``: without trailing padding and group lengths, as
    storescu sends it."""
    ds = pydicom.dcmread(TEST_FILES / name, force=True)
    if as_sent:
        for elem in [e for e in ds if e.tag == 0xFFFCFFFC or e.tag.element == 0]:
            del ds[elem.tag]
    for elem in ds.iterall():
        if elem.VR == "SQ":
            elem.is_undefined_length = undefined
            for item in elem.value:
                item.is_undefined_length_sequence_item = undefined
    fp = pydicom.filebase.DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = implicit
    write_dataset(fp, ds)
    return fp.getvalue()


class _File(io.BufferedReader):
    """Not an ``io.BytesIO``: the full parser's way."""


def both_ways(data: bytes, ts: str, fmt: OutputFormat) -> tuple[object, object]:
    def run(src: io.IOBase) -> object:
        out = io.BytesIO()
        try:
            ident = write_normal(src, ts, out, fmt, "SENDER")  # type: ignore[arg-type]
        except (UnreadableDataset, ConversionImpossible) as err:
            return type(err)
        # A data set without an instance UID gets a fresh one in its meta: compare the rest.
        return ident, out.getvalue() if ident.sop_instance_uid else ident
    return run(io.BytesIO(data)), run(_File(io.BytesIO(data)))  # type: ignore[arg-type]


@pytest.mark.parametrize("as_sent", [False, True], ids=["as-stored", "as-sent"])
@pytest.mark.parametrize("fmt", FORMATS.values(), ids=FORMATS.keys())
@pytest.mark.parametrize("undefined", [False, True], ids=["defined", "undefined"])
@pytest.mark.parametrize("ts", [EXPLICIT_LE, IMPLICIT_LE], ids=["le", "li"])
@pytest.mark.parametrize("name", FILES)
def test_same_file_both_ways(
    name: str, ts: str, undefined: bool, fmt: OutputFormat, as_sent: bool
) -> None:
    data = data_set_bytes(name, ts == IMPLICIT_LE, undefined, as_sent)
    fast, full = both_ways(data, ts, fmt)
    assert fast == full


@pytest.mark.parametrize("ts", [EXPLICIT_LE, IMPLICIT_LE], ids=["le", "li"])
@pytest.mark.parametrize("name", ["CT_small.dcm", "rtplan.dcm", "nested_priv_SQ.dcm"])
def test_the_fast_look_takes_the_usual_case(name: str, ts: str) -> None:
    """A data set as storescu sends it: the look vouches, without the full parser."""
    data = data_set_bytes(name, ts == IMPLICIT_LE, False, as_sent=True)
    found = encoding._raw_identity(memoryview(data), encoding.SYNTAXES[ts], OutputFormat())
    assert found is not None
    assert name == "nested_priv_SQ.dcm" or found[0x00080018]


@pytest.mark.parametrize("ts", [EXPLICIT_LE, IMPLICIT_LE], ids=["le", "li"])
@pytest.mark.parametrize("seed", range(6))
def test_damaged_data_sets_get_the_same_answer(ts: str, seed: int) -> None:
    """Bytes flipped, cut or repeated: whatever the full parser answers, the fast way too."""
    rng = random.Random(seed)
    base = data_set_bytes(rng.choice(FILES[:9]), ts == IMPLICIT_LE, rng.random() < 0.5, True)
    for _ in range(150):
        data = bytearray(base)
        what = rng.randrange(3)
        at = rng.randrange(len(data))
        if what == 0:
            for _ in range(rng.randrange(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif what == 1:
            del data[at:]
        else:
            data[at:at] = data[at : at + rng.randrange(1, 16)]
        fast, full = both_ways(bytes(data), ts, OutputFormat())
        assert fast == full, (what, at)
