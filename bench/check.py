"""Correctness of one workload run: every object sent is stored once, and a sample of stored
objects carries the very pixel bytes that were sent."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from pydicom import dcmread

SAMPLE = 5


@dataclass
class Check:
    expected: int
    stored: int
    missing: int
    unexpected: int
    sample_compared: int
    sample_equal: int

    @property
    def ok(self) -> bool:
        return (self.stored == self.expected and not self.missing and not self.unexpected
                and self.sample_equal == self.sample_compared > 0)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


class SourceIndex:
    """SOP Instance UID of each corpus file, read once."""

    def __init__(self) -> None:
        self._uids: dict[Path, str] = {}

    def uid(self, path: Path) -> str:
        if path not in self._uids:
            self._uids[path] = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        return self._uids[path]


def stored_files(od: Path) -> list[Path]:
    """Final files under the output directory; hidden names are temporaries or bookkeeping."""
    return sorted(
        p for p in od.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(od).parts)
    )


def verify(sent: list[Path], od: Path, index: SourceIndex) -> Check:
    """Compare what was sent with what ``od`` holds."""
    want = {index.uid(p): p for p in sent}
    got: dict[str, Path] = {}
    duplicates = 0
    files = stored_files(od)
    for path in files:
        try:
            sop = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        except Exception:  # noqa: BLE001 - an unreadable file counts as unexpected
            duplicates += 1
            continue
        duplicates += sop in got
        got[sop] = path
    common = sorted(set(want) & set(got))
    step = max(1, len(common) // SAMPLE)
    sample = common[::step][:SAMPLE]
    equal = sum(dcmread(want[s]).PixelData == dcmread(got[s]).PixelData for s in sample)
    return Check(
        expected=len(want),
        stored=len(files),
        missing=len(set(want) - set(got)),
        unexpected=len(set(got) - set(want)) + duplicates,
        sample_compared=len(sample),
        sample_equal=equal,
    )
