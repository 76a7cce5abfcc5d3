"""What storescpd writes in normal mode, checked against DCMTK's storescp 3.6.7 as the oracle.

For each pydicom test file, each network transfer syntax and each output option set:

1. a capture storescp (``+B``) records the bytes storescu really sends and the accepted TS;
2. a reference storescp with the output options stores the same file;
3. ``write_normal`` writes those captured bytes with the same options;

then ``dcmdump`` of the two files must agree, the meta lines that name the implementation and the
meta group length aside. Trailing padding (``+p``) depends on the meta header's length, so for
it the file length must be a multiple of the pad length instead.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pydicom
import pytest

from storescpd.worker.encoding import (
    WRITE_XFER,
    ConversionImpossible,
    OutputFormat,
    UnreadableDataset,
    write_normal,
)
from tests.conftest import Server, dcmtk, run_dcmtk, start_dcmtk_storescp

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
CALLING_AE = "STORESCU"

# Network transfer syntax: what storescu proposes (-R: only the contexts the file needs, so any
# SOP class goes) and what both the capture and the reference storescp prefer.
NETWORKS: dict[str, tuple[list[str], list[str]]] = {
    "le": (["-R", "-xe"], []),
    "be": (["-R", "-xb"], ["+xb"]),
    "li": (["-R", "-xi"], ["+xi"]),
    "df": (["-R", "-xd"], ["+xd"]),
    # Compressed files: storescu proposes the file's own TS with the matching option.
    "jpeg8": (["-xy"], ["+xa"]),
    "jpeg12": (["-xx"], ["+xa"]),
    "jpeg-lossless": (["-xs"], ["+xa"]),
    "jls-lossless": (["-xt"], ["+xa"]),
    "j2k-lossless": (["-xv"], ["+xa"]),
}

OPTION_SETS: dict[str, tuple[list[str], OutputFormat]] = {
    "default": ([], OutputFormat()),
    "+te": (["+te"], OutputFormat(write_xfer="little")),
    "+tb": (["+tb"], OutputFormat(write_xfer="big")),
    "+ti": (["+ti"], OutputFormat(write_xfer="implicit")),
    "+td": (["+td"], OutputFormat(write_xfer="deflated")),
    "-e": (["-e"], OutputFormat(length_explicit=False)),
    "+g": (["+g"], OutputFormat(group_length="create")),
    "-g": (["-g"], OutputFormat(group_length="remove")),
    "-u": (["-u"], OutputFormat(enable_new_vr=False)),
    "+p": (["+p", "256", "16"], OutputFormat(padding=(256, 16))),
    "-F": (["-F"], OutputFormat(write_file=False)),
    "+uc": (["+uc"], OutputFormat(convert_un=True)),
}

# Left out: files storescu refuses to send (no SOP Class/Instance UID: empty_charset_LEI.dcm,
# priv_SQ.dcm, nested_priv_SQ.dcm; truncated: MR_truncated.dcm, rtplan_truncated.dcm).
UNCOMPRESSED = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_padded.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "ExplVR_BigEnd.dcm",
    "SC_rgb_small_odd.dcm",
    "SC_rgb_small_odd_big_endian.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "rtdose.dcm",
    "rtdose_1frame.dcm",
    "rtdose_expb.dcm",
    "rtdose_expb_1frame.dcm",
    "rtplan.dcm",
    "liver_1frame.dcm",
    "liver_expb_1frame.dcm",
    "reportsi.dcm",
    "reportsi_with_empty_number_tags.dcm",
    "test-SR.dcm",
    "waveform_ecg.dcm",
    "examples_overlay.dcm",
    "examples_palette.dcm",
    "dicomdirtests/77654033/CR1/6154",
    "dicomdirtests/98892001/CT2N/6293",
    "dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000000",
]
DEFLATED = ["image_dfl.dcm"]
COMPRESSED = [  # (file, network)
    ("SC_rgb_jpeg_dcmtk.dcm", "jpeg8"),
    ("JPEG-lossy.dcm", "jpeg12"),
    ("MR_small_jpeg_ls_lossless.dcm", "jls-lossless"),
    ("MR_small_jp2klossless.dcm", "j2k-lossless"),
    ("SC_rgb_jpeg_gdcm.dcm", "jpeg-lossless"),
]

# Known, legitimate differences between DCMTK and storescpd: (file, network, option set) -> why.
# Both come from the private dictionaries, which differ between DCMTK and pydicom; they matter only
# when an implicit VR data set is read.
_CT2N = "dicomdirtests/98892001/CT2N/6293"
_CT2N_WHY = "pydicom's private dictionary knows (0049,1001) as SQ, DCMTK's does not: UN"
EXCEPTIONS: dict[tuple[str, str, str], str] = {
    ("dicomdirtests/77654033/CR1/6154", "li", "+te"): (
        "DCMTK's private dictionary knows (0019,1010) as SH, pydicom's does not: UN"
    ),
    (_CT2N, "li", "+te"): _CT2N_WHY,
    (_CT2N, "li", "+g"): _CT2N_WHY,
    (_CT2N, "li", "-e"): _CT2N_WHY,
}


SYNTHETIC = "synthetic"  # made by synthetic_file(): new VRs, UN, nested undefined lengths


def synthetic_file(path: Path) -> None:
    """A CT object exercising what the bundled files lack: every post-1993 VR, a UN element
    with a known tag (for +uc), group length elements, nested undefined-length sequences and
    items, and trailing padding inside an item."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.add_new(0x00080000, "UL", 0)  # group length, recalculated by DCMTK
    ds.add_new(0x00081190, "UR", "http://example.com/x")
    ds.add_new(0x00180015, "CS", "HEAD")
    ds.add_new(0x00189517, "UC", "odd")
    ds.add_new(0x00287FE0, "UT", "some text")
    ds.add_new(0x00091001, "UN", b"\x01\x02\x03\x04")
    ds.add_new(0x00080070, "UN", b"ACME")  # Manufacturer (LO) sent as UN
    ds.add_new(0x00660016, "OF", b"\x00\x00\x80\x3f" * 3)
    ds.add_new(0x00660040, "OL", b"\x01\x00\x00\x00")
    ds.add_new(0x00720082, "SV", -1)
    ds.add_new(0x00720083, "UV", 1)
    inner = Dataset()
    inner.CodeValue = "121"
    inner.add_new(0xFFFCFFFC, "OB", b"\x00" * 6)
    item = Dataset()
    item.add_new(0x00080000, "UL", 0)
    item.CodeMeaning = "meaning"
    item.ConceptCodeSequence = Sequence([inner])
    ds.ContentSequence = Sequence([item, Dataset()])
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.save_as(path, enforce_file_format=True)  # pydicom writes undefined-length sequences


def _cases() -> Iterator[tuple[str, str, str]]:
    for option_set in OPTION_SETS:
        yield SYNTHETIC, "le", option_set
    for network in ("be", "li"):
        for option_set in ("default", "+te", "-u", "+uc"):
            yield SYNTHETIC, network, option_set
    for name in UNCOMPRESSED:
        for option_set in OPTION_SETS:
            yield name, "le", option_set
        for network in ("be", "li"):
            for option_set in ("default", "+te", "+ti", "-e", "-u", "+g"):
                yield name, network, option_set
    for name in DEFLATED:
        for option_set in OPTION_SETS:
            yield name, "df", option_set
    for name, network in COMPRESSED:
        yield name, network, "default"


def _param(case: tuple[str, str, str]) -> object:
    why = EXCEPTIONS.get(case)
    marks = [pytest.mark.xfail(reason=why, strict=True)] if why else []
    return pytest.param(*case, id="-".join(case).replace("/", "_"), marks=marks)


class Oracle:
    """DCMTK storescp servers (started on first use) and storescu to feed them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers: dict[tuple[str, ...], Server] = {}
        self.captures: dict[tuple[str, str], tuple[str, bytes]] = {}

    def server(self, args: list[str]) -> Server:
        key = tuple(args)
        if key not in self.servers:
            n = len(self.servers)
            od = self.root / f"od{n}"
            od.mkdir()
            self.servers[key] = start_dcmtk_storescp(args, od, self.root / f"storescp{n}.log")
        return self.servers[key]

    def store(self, network: str, args: list[str], path: Path) -> bytes:
        """Send ``path`` with storescu to a storescp with ``args``; return the file it wrote."""
        scu, scp = NETWORKS[network]
        server = self.server([*scp, *args])
        result = run_dcmtk(
            "storescu", *scu, "-aet", CALLING_AE, "127.0.0.1", str(server.port), str(path)
        )
        assert result.returncode == 0, result.stdout + result.stderr
        written = [p for p in server.od.iterdir() if p.is_file()]
        assert len(written) == 1, (written, server.log)
        data = written[0].read_bytes()
        written[0].unlink()
        return data

    def capture(self, path: Path, network: str) -> tuple[str, bytes]:
        """(accepted transfer syntax, data set bytes as sent) for ``path`` on ``network``."""
        key = (str(path), network)
        if key not in self.captures:
            data = self.store(network, ["+B"], path)
            meta_end = 144 + struct.unpack("<I", data[140:144])[0]
            meta = pydicom.dcmread(io.BytesIO(data[:meta_end]), force=True).file_meta
            self.captures[key] = (str(meta.TransferSyntaxUID), data[meta_end:])
        return self.captures[key]

    def close(self) -> None:
        for server in self.servers.values():
            server.stop()


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oracle]:
    root = tmp_path_factory.mktemp("oracle")
    synthetic_file(root / SYNTHETIC)
    keeper = Oracle(root)
    try:
        yield keeper
    finally:
        keeper.close()


READ_DATA_SET = {
    "1.2.840.10008.1.2": "-ti",
    "1.2.840.10008.1.2.2": "-tb",
    "1.2.840.10008.1.2.1.99": "-te",  # inflated first: dcmdump cannot inflate a bare data set
}


def dcmdump(data: bytes, tmp: Path, name: str, fmt: OutputFormat, out_ts: str) -> list[str]:
    """dcmdump's view of a written file (or of a bare data set under ``-F``)."""
    path = tmp / name
    args = ["-q", "-dc"]
    if not fmt.write_file:
        if out_ts == "1.2.840.10008.1.2.1.99":
            data = zlib.decompress(data, -zlib.MAX_WBITS)
        args += ["-f", READ_DATA_SET.get(out_ts, "-te")]
    path.write_bytes(data)
    result = subprocess.run(
        [dcmtk("dcmdump"), *args, str(path)], capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.decode("latin-1").splitlines()


IGNORED_META = ("(0002,0000)", "(0002,0012)", "(0002,0013)")


def comparable(lines: list[str]) -> list[str]:
    """Drop the meta lines that legitimately differ; blank the top-level padding's length."""
    out = []
    for line in lines:
        if line.startswith(IGNORED_META):
            continue
        if line.startswith("(fffc,fffc)"):
            line = "(fffc,fffc) OB <trailing padding>"
        out.append(line)
    return out


@pytest.mark.parametrize(("name", "network", "option_set"), [_param(c) for c in _cases()])
def test_same_content_as_dcmtk(
    oracle: Oracle, tmp_path: Path, name: str, network: str, option_set: str
) -> None:
    path = oracle.root / SYNTHETIC if name == SYNTHETIC else TEST_FILES / name
    args, fmt = OPTION_SETS[option_set]
    network_ts, sent = oracle.capture(path, network)
    expected = oracle.store(network, args, path)
    out = io.BytesIO()
    write_normal(io.BytesIO(sent), network_ts, out, fmt, CALLING_AE)
    ours = out.getvalue()
    out_ts = network_ts if fmt.write_xfer == "same" else WRITE_XFER[fmt.write_xfer]
    assert comparable(dcmdump(ours, tmp_path, "ours", fmt, out_ts)) == comparable(
        dcmdump(expected, tmp_path, "dcmtk", fmt, out_ts)
    )
    if fmt.padding:
        if out_ts != "1.2.840.10008.1.2.1.99":  # deflated: DCMTK pads before compressing
            assert len(ours) % fmt.padding[0] == 0
    elif fmt.write_xfer != "deflated" and network != "df":
        # Beyond dcmdump's view: the data set bytes themselves are DCMTK's.
        assert _data_set(ours, fmt) == _data_set(expected, fmt)


def _data_set(data: bytes, fmt: OutputFormat) -> bytes:
    if not fmt.write_file:
        return data
    return data[144 + struct.unpack("<I", data[140:144])[0] :]


# ----------------------------------------------------------------------------- no oracle needed


def _data_set_of(path: Path) -> bytes:
    data = path.read_bytes()
    return data[144 + struct.unpack("<I", data[140:144])[0] :]


def test_raw_path_for_ct_small(oracle: Oracle) -> None:
    network_ts, sent = oracle.capture(TEST_FILES / "CT_small.dcm", "le")
    out = io.BytesIO()
    identity = write_normal(io.BytesIO(sent), network_ts, out, OutputFormat(), CALLING_AE)
    assert identity.raw
    assert out.getvalue().endswith(sent)
    assert identity.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert identity.sop_instance_uid == "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
    assert identity.patient_name == b"CompressedSamples^CT1 "
    assert identity.specific_character_set == "ISO_IR 100"


@pytest.mark.parametrize(
    "fmt",
    [
        OutputFormat(write_xfer="big"),
        OutputFormat(length_explicit=False),
        OutputFormat(group_length="create"),
        OutputFormat(padding=(0, 8)),
        OutputFormat(write_xfer="deflated"),
    ],
    ids=["+tb", "-e", "+g", "+p", "+td"],
)
def test_options_that_change_bytes_leave_the_raw_path(fmt: OutputFormat) -> None:
    sent = _data_set_of(TEST_FILES / "CT_small.dcm")  # one sequence, explicit lengths
    identity = write_normal(io.BytesIO(sent), "1.2.840.10008.1.2.1", io.BytesIO(), fmt, "A")
    assert not identity.raw


def _big_data_set(path: Path, size: int) -> None:
    """A CT_small data set whose pixel data is ``size`` bytes, written without holding it."""
    head = _data_set_of(TEST_FILES / "CT_small.dcm")
    cut = head.index(b"\xe0\x7f\x10\x00")
    with open(path, "wb") as f:
        f.write(head[:cut] + struct.pack("<HH2s2xI", 0x7FE0, 0x0010, b"OW", size))
        block = bytes(1 << 20)
        for _ in range(size // len(block)):
            f.write(block)


def test_large_data_set_streams_in_bounded_memory(tmp_path: Path) -> None:
    source = tmp_path / "big.ds"
    size = 200 << 20
    _big_data_set(source, size)
    tracemalloc.start()
    try:
        with open(source, "rb") as src, open(tmp_path / "out.dcm", "wb") as out:
            identity = write_normal(src, "1.2.840.10008.1.2.1", out, OutputFormat(), "A")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert identity.raw
    assert peak < 20 << 20
    assert os.path.getsize(tmp_path / "out.dcm") > size


def test_large_data_set_reencoded_in_bounded_memory(tmp_path: Path) -> None:
    source = tmp_path / "big.ds"
    size = 64 << 20
    _big_data_set(source, size)
    tracemalloc.start()
    try:
        with open(source, "rb") as src, open(tmp_path / "out.dcm", "wb") as out:
            identity = write_normal(src, "1.2.840.10008.1.2.1", out, OutputFormat("big"), "A")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not identity.raw
    assert peak < 20 << 20


UNREADABLE: list[tuple[str, Callable[[bytes], bytes]]] = [
    ("truncated value", lambda ds: ds[:-3]),
    ("truncated header", lambda ds: ds + b"\x08\x00"),
    ("length past end", lambda ds: ds + struct.pack("<HH2sH", 0x0009, 0x0010, b"LO", 200)),
    ("stray item tag", lambda ds: ds + struct.pack("<HHI", 0xFFFE, 0xE000, 0)),
]


@pytest.mark.parametrize(("why", "damage"), UNREADABLE, ids=[u[0] for u in UNREADABLE])
def test_unreadable_data_sets(why: str, damage: Callable[[bytes], bytes]) -> None:
    sent = damage(_data_set_of(TEST_FILES / "CT_small.dcm"))
    with pytest.raises(UnreadableDataset):
        write_normal(io.BytesIO(sent), "1.2.840.10008.1.2.1", io.BytesIO(), OutputFormat(), "A")


def test_broken_deflate_is_unreadable() -> None:
    with pytest.raises(UnreadableDataset):
        write_normal(
            io.BytesIO(b"not deflated at all"),
            "1.2.840.10008.1.2.1.99",
            io.BytesIO(),
            OutputFormat(),
            "A",
        )


@pytest.mark.parametrize("write_xfer", ["little", "big", "implicit", "deflated"])
def test_compressed_cannot_be_converted(write_xfer: str) -> None:
    sent = _data_set_of(TEST_FILES / "SC_rgb_jpeg_dcmtk.dcm")
    with pytest.raises(ConversionImpossible):
        write_normal(
            io.BytesIO(sent),
            "1.2.840.10008.1.2.4.50",
            io.BytesIO(),
            OutputFormat(write_xfer=write_xfer),
            "A",
        )


def test_deflated_output_inflates_to_the_little_endian_encoding() -> None:
    sent = _data_set_of(TEST_FILES / "CT_small.dcm")
    little, deflated = io.BytesIO(), io.BytesIO()
    write_normal(io.BytesIO(sent), "1.2.840.10008.1.2.1", little, OutputFormat("little"), "A")
    write_normal(io.BytesIO(sent), "1.2.840.10008.1.2.1", deflated, OutputFormat("deflated"), "A")
    plain = _data_set(little.getvalue(), OutputFormat())
    packed = _data_set(deflated.getvalue(), OutputFormat())
    assert zlib.decompress(packed, -zlib.MAX_WBITS) == plain
