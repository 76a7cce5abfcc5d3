"""The benchmark's input: deterministic DICOM files generated with pydicom into a cache directory.

Small objects are CT_small (pydicom's test file, ~39 KB) with UIDs derived from their index, spread
over several studies and laid out as directories of 50 (3 with ``--quick``) so that every
workload can hand each sender whole directories (``storescu +sd``). Large objects are multi-frame
16-bit secondary captures of about 32 MB each. The same parameters always give the same bytes,
so a cache directory is reused when its stamp matches and regenerated otherwise.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

ROOT_UID = "1.2.826.0.1.3680043.10.1427"  # bench-only UID root; only the uniqueness matters
STUDIES = 8
MF_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7.3"  # multi-frame grayscale word secondary capture
FRAME_ROWS = 512
FRAME_BYTES = FRAME_ROWS * FRAME_ROWS * 2


@dataclass(frozen=True)
class CorpusSize:
    """How many objects to generate; the full size is issue 7's."""

    small: int
    large: int
    large_mb: int
    per_dir: int  # small objects per directory: one directory is the smallest unit a sender gets


FULL = CorpusSize(small=2000, large=20, large_mb=32, per_dir=50)
QUICK = CorpusSize(small=24, large=2, large_mb=1, per_dir=3)


@dataclass(frozen=True)
class Corpus:
    """Paths of a generated corpus; ``small_dirs`` hold ``per_dir`` files each."""

    root: Path
    small_dirs: tuple[Path, ...]
    large_dir: Path

    def small_files(self) -> list[Path]:
        return sorted(p for d in self.small_dirs for p in d.iterdir())

    def large_files(self) -> list[Path]:
        return sorted(self.large_dir.iterdir())


def uid(*parts: int) -> str:
    return ".".join([ROOT_UID, *(str(p) for p in parts)])


def ensure(cache: Path, size: CorpusSize) -> Corpus:
    """Return the corpus for ``size`` under ``cache``, generating it when missing or stale."""
    stamp = json.dumps({"v": 1, **size.__dict__}, sort_keys=True)
    root = cache / ("corpus-" + hashlib.sha1(stamp.encode()).hexdigest()[:10])
    dirs = -(-size.small // size.per_dir)
    corpus = Corpus(
        root=root,
        small_dirs=tuple(root / "small" / f"{i:03d}" for i in range(dirs)),
        large_dir=root / "large",
    )
    if (root / "stamp.json").exists() and (root / "stamp.json").read_text() == stamp:
        return corpus
    shutil.rmtree(root, ignore_errors=True)
    _write_small(corpus, size.small, size.per_dir)
    _write_large(corpus, size.large, size.large_mb)
    (root / "stamp.json").write_text(stamp)
    return corpus


def _write_small(corpus: Corpus, count: int, per_dir: int) -> None:
    template = dcmread(str(get_testdata_file("CT_small.dcm")))
    for i in range(count):
        study = i % STUDIES
        ds = template.copy()
        ds.StudyInstanceUID = uid(1, study)
        ds.SeriesInstanceUID = uid(2, study)
        ds.SOPInstanceUID = uid(3, i)
        ds.PatientID = f"BENCH{study:02d}"
        ds.PatientName = f"BENCH^PATIENT{study:02d}"
        ds.InstanceNumber = i
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        out = corpus.small_dirs[i // per_dir]
        out.mkdir(parents=True, exist_ok=True)
        ds.save_as(out / f"ct{i:05d}.dcm", enforce_file_format=True)


def _write_large(corpus: Corpus, count: int, megabytes: int) -> None:
    corpus.large_dir.mkdir(parents=True, exist_ok=True)
    frames = max(1, megabytes * 1024 * 1024 // FRAME_BYTES)
    rows = FRAME_ROWS
    for i in range(count):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = UID(MF_SOP_CLASS)
        ds.file_meta.MediaStorageSOPInstanceUID = UID(uid(5, i))
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = MF_SOP_CLASS
        ds.SOPInstanceUID = uid(5, i)
        ds.StudyInstanceUID = uid(4, i % 2)
        ds.SeriesInstanceUID = uid(6, i % 2)
        ds.PatientID = "BENCHMF"
        ds.PatientName = "BENCH^MULTIFRAME"
        ds.Modality = "OT"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.NumberOfFrames = frames
        ds.Rows = ds.Columns = rows
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        # Pixel bytes differ per object and per frame so a byte comparison can catch a mix-up.
        seed = hashlib.sha256(ds.SOPInstanceUID.encode()).digest()
        frame = (seed * (rows * rows * 2 // len(seed) + 1))[: rows * rows * 2]
        ds.PixelData = b"".join(bytes([f & 0xFF]) + frame[1:] for f in range(frames))
        ds.save_as(corpus.large_dir / f"mf{i:03d}.dcm", enforce_file_format=True)
