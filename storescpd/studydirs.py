"""Names of study folders (``-ss``, ``-su``, ``-sp``) and of renamed files (``-rns``).

DCMTK's rules (SPEC §6.3, §6.4, §7.2), with one deliberate difference each where DCMTK loses
data or writes outside ``-od``: a Study Instance UID that is not a UID names no folder (DCMTK's
Debian build lets ``..`` through), and ``-rns`` never replaces an existing file (DCMTK's
``rename(2)`` silently does when a study returns under ``-su``): numbering continues instead.
Pure: stdlib only, no I/O except in :func:`rename_for_study`.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable
from datetime import datetime

from storescpd.naming import is_valid_uid

log = logging.getLogger(__name__)

ANONYMOUS = "ANONYMOUS"

# Latin-1 letters 0xC0-0xFF spelled in ASCII (SPEC §6.4); "_" for x, /, thorn and eth-less signs.
_LATIN1_UPPER = (
    "A", "A", "A", "A", "Ae", "A", "A", "C", "E", "E", "E", "E", "I", "I", "I", "I",
    "D", "N", "O", "O", "O", "O", "Oe", "_", "O", "U", "U", "U", "Ue", "Y", "_", "ss",
    "a", "a", "a", "a", "ae", "a", "a", "c", "e", "e", "e", "e", "i", "i", "i", "i",
    "d", "n", "o", "o", "o", "o", "oe", "_", "o", "u", "u", "u", "ue", "y", "_", "y",
)  # fmt: skip


def stamp(when: datetime) -> str:
    """``YYYYMMDD_HHMMSSmmm``: the local time of a study's first object."""
    return (
        f"{when.year:04d}{when.month:02d}{when.day:02d}_"
        f"{when.hour:02d}{when.minute:02d}{when.second:02d}{when.microsecond // 1000:03d}"
    )


def conc_studies_name(prefix: str, when: datetime) -> str:
    """``-ss p``: ``<p>_<stamp>``, or just the stamp when ``p`` is empty."""
    return f"{prefix}_{stamp(when)}" if prefix else stamp(when)


def study_uid_name(prefix: str, study_uid: str) -> str:
    """``-su p``: ``<p>_<Study Instance UID>``, or the UID alone.

    Raises
    ------
    ValueError
        When the UID is not a UID (it would name a folder chosen by the peer, ``..`` included).
    """
    if not is_valid_uid(study_uid):
        raise ValueError(f"Study Instance UID {study_uid!r} is not a valid UID")
    return f"{prefix}_{study_uid}" if prefix else study_uid


def patient_folder_name(patient_name: bytes | None, when: datetime) -> str:
    """``-sp``: the patient's name spelled in ASCII letters and digits, then the stamp."""
    return f"{map_patient_name(patient_name)}_{stamp(when)}"


def patient_name_warning(raw: bytes | None, charset: str | None) -> str | None:
    """What DCMTK warns about, for every object ``-sp`` sorts, when the name cannot be spelled
    faithfully: it is missing, or it holds non-ASCII bytes of a character set other than
    Latin-1 (mapped byte by byte all the same)."""
    value = _first_value(raw)
    if not value:
        return (
            "element PatientName (0010,0010) absent or empty in data set, using 'ANONYMOUS' instead"
        )
    if charset and charset != "ISO_IR 100" and any(byte >= 0x80 for byte in value):
        return f"Patient name not in Latin-1 (charset: {charset}), ASCII dir name may be broken"
    return None


def _first_value(raw: bytes | None) -> bytes:
    return (raw or b"").split(b"\\", 1)[0].rstrip(b" \0")


def map_patient_name(raw: bytes | None) -> str:
    """DCMTK's byte-wise mapping of (0010,0010): letters and digits kept, Latin-1 letters
    spelled out, everything else (``^``, space, ``/``, ``.``, UTF-8 continuation bytes) ``_``.

    The result can hold neither a separator nor a dot, so it always names a folder inside
    ``-od``. Only the first value counts; an empty one is ``ANONYMOUS``.
    """
    value = _first_value(raw)
    if not value:
        return ANONYMOUS
    out = []
    for byte in value:
        char = chr(byte)
        if char.isascii() and char.isalnum():
            out.append(char)
        elif byte >= 0xC0:
            out.append(_LATIN1_UPPER[byte - 0xC0])
        else:
            out.append("_")
    return "".join(out)


def rename_prefix(file_name: str, time_names: bool) -> str:
    """The two characters a ``-rns`` name starts with (SPEC §7.2): the first two of the
    modality prefix, which follows the time stamp (and its ``_NNNN`` serial) with ``-tn``."""
    if time_names:
        file_name = file_name.split(".", 1)[1] if "." in file_name else file_name
    return file_name[:2]


def rename_for_study(folder: str, files: Iterable[str], time_names: bool) -> list[str]:
    """``-rns``: rename ``files`` (in reception order) inside ``folder`` to ``<xx><NNNNNN>``.

    Each file takes the next number not yet used by a file of the same two-character prefix,
    so a study that comes back continues the numbering instead of replacing its first files.
    ``link`` + ``unlink`` (not ``rename``) so that an existing name is never replaced.
    Returns the new paths, in order; a file that cannot be renamed keeps its name (warned).
    """
    renamed = []
    counters: dict[str, int] = {}
    for path in files:
        prefix = rename_prefix(os.path.basename(path), time_names)
        number = counters.get(prefix, 0)
        while True:
            number += 1
            target = os.path.join(folder, f"{prefix}{number:06d}")
            try:
                os.link(path, target)
            except FileExistsError:
                continue
            except OSError as err:
                if err.errno == errno.ENOENT:
                    log.warning("cannot rename file '%s': it no longer exists", path)
                else:
                    log.warning("cannot rename file '%s' to '%s': %s", path, target, err)
                target = ""
            break
        counters[prefix] = number
        if target:
            os.unlink(path)
            renamed.append(target)
        else:
            renamed.append(path)
    return renamed
