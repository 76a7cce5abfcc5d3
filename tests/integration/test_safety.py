"""Data-safety tests: hostile UIDs, a 200 MB object, a killed server, statuses, fault options.

These check DESIGN §4–5 and SPEC §5.3/§8.4 from the outside, as a peer would: a C-STORE request is
built by hand (pynetdicom primitives, SPEC Appendix D) whenever the request's UIDs must differ from
the data set's or break the UID grammar, and DCMTK's ``storescu`` sends the big object. Every
server gets a ``TMPDIR`` of its own inside the test's directory, so "no file anywhere else" can be
checked on a tree that nothing else writes to.
"""

from __future__ import annotations

import hashlib
import io
import os
import queue
import shutil
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    generate_uid,
)
from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_ECHO, C_STORE
from pynetdicom.pdu import P_DATA_TF

from tests.conftest import Server, poll_until, run_dcmtk

StartServer = Callable[..., Server]

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DATASET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000

VERIFICATION = UID("1.2.840.10008.1.1")

# The peer waits this long for a response that a healthy server sends in milliseconds.
RESPONSE_TIMEOUT = 30.0


def is_failure(status: int | None) -> bool:
    """A Storage failure status (PS3.4 B.2.3): out of resources, mismatch, cannot understand."""
    if status is None:
        return False
    return 0xA700 <= status <= 0xA7FF or 0xA900 <= status <= 0xA9FF or 0xC000 <= status <= 0xCFFF


# --------------------------------------------------------------------------------------------
# Data sets
# --------------------------------------------------------------------------------------------


def ct_data_set(ct_small: Path, sop_instance_uid: str) -> Dataset:
    ds = dcmread(ct_small)
    ds.SOPInstanceUID = sop_instance_uid
    return ds


def encode_explicit_le(ds: Dataset) -> bytes:
    """The data set as it travels on an Explicit VR Little Endian context (no file meta)."""
    out = DicomBytesIO()
    out.is_little_endian = True
    out.is_implicit_VR = False
    write_dataset(out, ds)
    return out.getvalue()


def odd_length_uid() -> str:
    """A fresh UID of odd length, so that one trailing space makes its value even (no NUL pad)."""
    while True:
        uid = str(generate_uid())
        if len(uid) % 2 == 1 and len(uid) < 64:
            return uid


def encode_with_padded_instance_uid(ct_small: Path, uid: str) -> bytes:
    """CT_small whose (0008,0018) value is ``uid`` plus one space, byte for byte.

    pydicom strips trailing spaces from UIDs when it writes, so the space is put in afterwards
    in place of a marker character of the same length.
    """
    marked = uid + "9"
    encoded = encode_explicit_le(ct_data_set(ct_small, marked))
    element = b"\x08\x00\x18\x00UI" + struct.pack("<H", len(marked))
    assert encoded.count(element + marked.encode()) == 1
    return encoded.replace(element + marked.encode(), element + uid.encode() + b" ")


# --------------------------------------------------------------------------------------------
# A peer that can say things a well-behaved SCU would not
# --------------------------------------------------------------------------------------------


class Checkpoint(threading.Event):
    """pynetdicom's reactor checkpoint, counting the reactor's arrivals at it.

    Waiting for ``Association._is_paused`` is not enough: it is still True for a moment after
    the reactor has passed an open checkpoint, and a fast server's response can then be taken
    off the queue by the reactor ("Received unexpected C-STORE service message").
    """

    def __init__(self, is_set: bool) -> None:
        super().__init__()
        self.arrivals = 0
        self._arrived = threading.Condition()
        if is_set:
            self.set()

    def wait(self, timeout: float | None = None) -> bool:
        with self._arrived:
            self.arrivals += 1
            self._arrived.notify_all()
        return super().wait(timeout)

    def pause(self, timeout: float) -> None:
        """Close the checkpoint; return once the reactor is held at it."""
        with self._arrived:
            # An arrival counted after the clear finds the checkpoint closed and stays.
            after = self.arrivals + 1
            self.clear()
            if not self._arrived.wait_for(lambda: self.arrivals >= after, timeout):
                raise TimeoutError("pynetdicom's reactor did not come to its checkpoint")


class Peer:
    """One association from a pynetdicom requestor that can send hand-made DIMSE requests."""

    def __init__(self, assoc: Association) -> None:
        self.assoc = assoc
        self.message_id = 0
        # Private name, pynetdicom 3.0.4: the reactor looks the attribute up on every turn.
        self.checkpoint = Checkpoint(assoc._reactor_checkpoint.is_set())
        assoc._reactor_checkpoint = self.checkpoint

    def context_id(self, abstract_syntax: str) -> int:
        for cx in self.assoc.accepted_contexts:
            if cx.abstract_syntax == abstract_syntax and cx.context_id is not None:
                return cx.context_id
        raise AssertionError(f"no accepted context for {abstract_syntax}")

    def store(self, sop_class: str, sop_instance: str, data_set: bytes) -> int | None:
        """Send a C-STORE-RQ with these request UIDs and data set bytes; None: no response."""
        req = C_STORE()
        req.MessageID = self._next_id()
        req.Priority = 2
        req.AffectedSOPClassUID = UID(sop_class)
        # Relaxed for the answer too: it echoes the UID, and this client must be able to read it.
        with relaxed_uid_checks():
            req.AffectedSOPInstanceUID = UID(sop_instance)
            req.DataSet = io.BytesIO(data_set)
            return self._exchange(req, self.context_id(sop_class))

    def echo(self) -> int | None:
        req = C_ECHO()
        req.MessageID = self._next_id()
        req.AffectedSOPClassUID = VERIFICATION
        return self._exchange(req, self.context_id(VERIFICATION))

    def _next_id(self) -> int:
        self.message_id += 1
        return self.message_id

    def _exchange(self, req: C_STORE | C_ECHO, context_id: int) -> int | None:
        # As Association.send_c_store does: the reactor is paused so that it does not take the
        # response off the queue before we do (private names, pynetdicom 3.0.4).
        try:
            self.checkpoint.pause(5)
            self.assoc.dimse.send_msg(req, context_id)
            rsp = self._await_response()
        finally:
            self.checkpoint.set()
        status = getattr(rsp, "Status", None)
        return None if status is None else int(status)

    def _await_response(self) -> object:
        # Not get_msg(block=True): after some aborts pynetdicom queues nothing, and that call
        # would then wait out the whole DIMSE timeout. Wake up now and then to look.
        deadline = time.monotonic() + RESPONSE_TIMEOUT
        while time.monotonic() < deadline:
            try:
                return self.assoc.dimse.msg_queue.get(timeout=0.1)[1]
            except queue.Empty:
                if not self.assoc.is_established:
                    return None
        return None


@contextmanager
def relaxed_uid_checks() -> Iterator[None]:
    """Let this client put UIDs that break the grammar into a request (never done by a server)."""
    saved = _config.VALIDATORS["UI"]
    _config.VALIDATORS["UI"] = lambda value: (True, "")
    try:
        yield
    finally:
        _config.VALIDATORS["UI"] = saved


@contextmanager
def associate(
    server: Server,
    abstract_syntaxes: Sequence[str] = (CTImageStorage, VERIFICATION),
    handlers: Sequence[
        tuple[evt.InterventionEvent | evt.NotificationEvent, Callable[..., None]]
    ] = (),
) -> Iterator[Peer]:
    ae = AE(ae_title="SAFETYSCU")
    ae.dimse_timeout = RESPONSE_TIMEOUT
    for uid in abstract_syntaxes:
        ae.add_requested_context(uid, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", server.port, evt_handlers=list(handlers))
    assert assoc.is_established, f"association refused or failed:\n{server.log}"
    try:
        yield Peer(assoc)
    finally:
        if assoc.is_established:
            assoc.release()
        if assoc.is_alive():
            assoc.kill()


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def regular_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def visible_files(od: Path) -> set[Path]:
    """Files a scanner of the output directory would pick up (no dot-names, any depth)."""
    return {
        p
        for p in regular_files(od)
        if not any(part.startswith(".") for part in p.relative_to(od).parts)
    }


def data_set_offset(f: io.BufferedReader) -> int:
    """Offset of the data set in a Part 10 file that carries (0002,0000) group length."""
    head = f.read(144)
    assert head[128:132] == b"DICM" and head[132:136] == b"\x02\x00\x00\x00", "no group length"
    return 144 + int(struct.unpack("<I", head[140:144])[0])


def data_set_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(data_set_offset(f))
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def start_isolated(
    storescpd: StartServer, tmp_path: Path, args: Sequence[str] = (), od: Path | None = None
) -> Server:
    """storescpd with its own TMPDIR under ``tmp_path``, so its spool files stay in view."""
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    return storescpd(list(args), od=od, extra_env={"TMPDIR": str(tmp)})


# --------------------------------------------------------------------------------------------
# 1. Path safety
# --------------------------------------------------------------------------------------------


def pave_the_way(od: Path, name: str) -> None:
    """Create the directories a naive ``od + '/' + name`` writer would walk through.

    A missing check then shows up as a file written where it must not be, not as a lucky ENOENT.
    """
    here = od
    for part in Path(name).parent.parts:
        here = here / part
        if part not in (".", ".."):
            here.mkdir(exist_ok=True)


HOSTILE_UIDS = {
    "parent-parent": "../../x",
    "escapes-od": "../../../x",
    "65-chars": "1." + "2" * 63,
    "70-chars": "1." + "2" * 68,
    "absolute": "/etc/passwd",
    "dot-dot": "..",
}


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
@pytest.mark.parametrize("hostile", HOSTILE_UIDS.values(), ids=HOSTILE_UIDS.keys())
def test_hostile_instance_uid_is_refused_and_the_association_goes_on(
    storescpd: StartServer, tmp_path: Path, ct_small: Path, hostile: str
) -> None:
    od = tmp_path / "a" / "b" / "od"
    od.mkdir(parents=True)
    pave_the_way(od, f"CT.{hostile}")
    server = start_isolated(storescpd, tmp_path, od=od)
    before = regular_files(tmp_path)
    good = str(generate_uid())

    with associate(server) as peer:
        bad_status = peer.store(
            CTImageStorage, hostile, encode_explicit_le(ct_data_set(ct_small, hostile))
        )
        good_status = peer.store(
            CTImageStorage, good, encode_explicit_le(ct_data_set(ct_small, good))
        )

    assert is_failure(bad_status), f"hostile UID {hostile!r} answered {bad_status!r}"
    assert good_status == SUCCESS, f"store after the refusal answered {good_status!r}"
    assert visible_files(od) == {od / f"CT.{good}"}
    new_files = regular_files(tmp_path) - before
    assert new_files == {od / f"CT.{good}"}, f"files appeared: {sorted(map(str, new_files))}"
    assert not (tmp_path / "a" / "x").exists() and not (tmp_path / "x").exists()


@pytest.mark.filterwarnings("ignore:Invalid value for VR UI")
def test_hostile_uid_status_is_cannot_understand(
    storescpd: StartServer, tmp_path: Path, ct_small: Path
) -> None:
    """The status we chose for a UID that may not name a file (SPEC §5.3: 0xC000)."""
    server = start_isolated(storescpd, tmp_path)
    with associate(server) as peer:
        status = peer.store(
            CTImageStorage, "../../x", encode_explicit_le(ct_data_set(ct_small, "../../x"))
        )
    assert status == CANNOT_UNDERSTAND


# --------------------------------------------------------------------------------------------
# 2. Memory: a 200 MB object streams through
# --------------------------------------------------------------------------------------------

BIG_ROWS = BIG_COLUMNS = 10240  # 16-bit samples: 200 MiB of Pixel Data
RSS_LIMIT_KB = 100 * 1024


def write_big_secondary_capture(path: Path) -> str:
    uid = str(generate_uid())
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = uid
    ds.StudyInstanceUID = str(generate_uid())
    ds.SeriesInstanceUID = str(generate_uid())
    ds.PatientName = "Big^Object"
    ds.PatientID = "BIG"
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = BIG_ROWS
    ds.Columns = BIG_COLUMNS
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    # Not a repeating page: a stored copy that lost or shifted a block would not match.
    block = hashlib.sha256(b"storescpd").digest() * 4096
    pixels = bytearray()
    for i in range(BIG_ROWS * BIG_COLUMNS * 2 // len(block)):
        pixels += struct.pack("<I", i) + block[4:]
    ds.PixelData = bytes(pixels)
    ds["PixelData"].VR = "OW"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return uid


def peak_rss_kb(pid: int) -> int:
    """VmHWM of ``pid`` and of each of its live children (a worker may do the receiving)."""
    peak = 0
    for p in [pid, *children_of(pid)]:
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak


def children_of(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
    return kids


@pytest.mark.timeout(600)
def test_200_mb_object_is_stored_intact_in_bounded_memory(
    storescpd: StartServer, tmp_path: Path
) -> None:
    source = tmp_path / "big.dcm"
    server = start_isolated(storescpd, tmp_path)
    stored = server.od / "SC.unset"
    try:
        uid = write_big_secondary_capture(source)
        stored = server.od / f"SC.{uid}"
        result = run_dcmtk("storescu", "127.0.0.1", str(server.port), str(source), timeout=300)
        peak = peak_rss_kb(server.pid)
        assert result.returncode == 0, result.stdout + result.stderr
        assert stored.exists(), f"not stored; directory holds {os.listdir(server.od)}"
        assert data_set_digest(stored) == data_set_digest(source)
        assert peak < RSS_LIMIT_KB, f"peak RSS {peak} kB while receiving 200 MiB"
    finally:
        source.unlink(missing_ok=True)
        stored.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# 3. Crash safety: SIGKILL while a store is in flight
# --------------------------------------------------------------------------------------------

BATCH = 300
KILL_AFTER_ACKS = 100


def data_pdvs(pdu: object) -> list[int]:
    """Message control headers of the data-set fragments in a P-DATA-TF (PS3.8 E.2)."""
    if not isinstance(pdu, P_DATA_TF):
        return []
    # Each item is a PresentationDataValueItem whose data starts with the control header.
    headers = [bytes(item.data or b"\x01")[0] for item in pdu.presentation_data_value_items]
    return [h for h in headers if not h & 1]


# When to kill, judged on each PDU the client has just sent during the armed store.
KILL_MOMENTS: dict[str, Callable[[object], bool]] = {
    "command": lambda pdu: isinstance(pdu, P_DATA_TF),
    "first-fragment": lambda pdu: bool(data_pdvs(pdu)),
    "last-fragment": lambda pdu: any(h & 2 for h in data_pdvs(pdu)),
}


class Killer:
    """Sends SIGKILL to the server from the client's DUL thread at a chosen point of a store."""

    def __init__(self, pid: int, moment: str) -> None:
        self.pid = pid
        self.moment = moment
        self.armed = threading.Event()
        self.fired = threading.Event()

    def on_pdu_sent(self, event: evt.Event) -> None:
        if not self.armed.is_set() or self.fired.is_set():
            return
        if KILL_MOMENTS[self.moment](event.pdu):
            self._fire()

    def _fire(self) -> None:
        self.fired.set()
        os.kill(self.pid, signal.SIGKILL)


@pytest.mark.parametrize("moment", KILL_MOMENTS)
def test_sigkill_mid_store_leaves_every_acknowledged_file_complete(
    storescpd: StartServer, tmp_path: Path, ct_small: Path, moment: str
) -> None:
    server = start_isolated(storescpd, tmp_path)
    source = dcmread(ct_small)
    killer = Killer(server.pid, moment)
    acknowledged: list[str] = []

    with associate(server, handlers=[(evt.EVT_PDU_SENT, killer.on_pdu_sent)]) as peer:
        for _ in range(BATCH):
            uid = str(generate_uid())
            if len(acknowledged) == KILL_AFTER_ACKS:
                killer.armed.set()
            status = peer.store(CTImageStorage, uid, encode_explicit_le(ct_data_set(ct_small, uid)))
            if status == SUCCESS:
                acknowledged.append(uid)
            if killer.fired.is_set() or status is None:
                break

    assert killer.fired.is_set(), "the server was never killed"
    server.proc.wait(10)
    assert len(acknowledged) >= KILL_AFTER_ACKS
    for uid in acknowledged:
        path = server.od / f"CT.{uid}"
        assert path.exists(), f"acknowledged instance {uid} has no file"
    for path in visible_files(server.od):
        stored = dcmread(path)
        assert path.name == f"CT.{stored.SOPInstanceUID}"
        assert stored.PixelData == source.PixelData, f"{path.name} is not complete"


# --------------------------------------------------------------------------------------------
# 4. Statuses and fault-injection options
# --------------------------------------------------------------------------------------------


def test_instance_uid_mismatch_is_refused_and_leaves_no_file(
    storescpd: StartServer, tmp_path: Path, ct_small: Path
) -> None:
    """DCMTK answers 0xA900 but keeps the file (SPEC §5.2 step 5); we keep nothing."""
    server = start_isolated(storescpd, tmp_path)
    with associate(server) as peer:
        status = peer.store(
            CTImageStorage,
            str(generate_uid()),
            encode_explicit_le(ct_data_set(ct_small, str(generate_uid()))),
        )
    assert status == DATASET_MISMATCH
    assert regular_files(server.od) == set()


def test_uid_padding_accepts_a_space_padded_instance_uid(
    storescpd: StartServer, tmp_path: Path, ct_small: Path
) -> None:
    # Without -up DCMTK 3.6.7 accepts this too (its UI reader drops the space), so only the
    # -up case is pinned down here.
    uid = odd_length_uid()
    server = start_isolated(storescpd, tmp_path, ["-up"])
    with associate(server) as peer:
        status = peer.store(CTImageStorage, uid, encode_with_padded_instance_uid(ct_small, uid))
    assert status == SUCCESS
    assert visible_files(server.od) == {server.od / f"CT.{uid}"}


def test_ignore_answers_success_and_writes_nothing(
    storescpd: StartServer, tmp_path: Path, ct_small: Path
) -> None:
    server = start_isolated(storescpd, tmp_path, ["--ignore"])
    uid = str(generate_uid())
    with associate(server) as peer:
        status = peer.store(CTImageStorage, uid, encode_explicit_le(ct_data_set(ct_small, uid)))
    assert status == SUCCESS
    assert regular_files(server.od) == set()


@pytest.mark.parametrize("option", ["--abort-after", "--abort-during"])
def test_abort_options_store_nothing_and_keep_serving(
    storescpd: StartServer, tmp_path: Path, ct_small: Path, option: str
) -> None:
    server = start_isolated(storescpd, tmp_path, [option])
    uid = str(generate_uid())
    with associate(server) as peer:
        status = peer.store(CTImageStorage, uid, encode_explicit_le(ct_data_set(ct_small, uid)))
        assert status is None, f"{option}: got a response {status!r} instead of an abort"
        poll_until(lambda: not peer.assoc.is_alive(), 10, "the aborted association to end")
        assert peer.assoc.is_aborted
    with associate(server) as peer:
        assert peer.echo() == SUCCESS
    assert regular_files(server.od) == set()
    assert regular_files(tmp_path / "tmp") == set(), "spool file of the aborted store left"
    assert server.alive()


def test_sleep_after_delays_the_next_response(
    storescpd: StartServer, tmp_path: Path, ct_small: Path
) -> None:
    server = start_isolated(storescpd, tmp_path, ["--sleep-after", "1"])
    uid = str(generate_uid())
    with associate(server) as peer:
        started = time.monotonic()
        status = peer.store(CTImageStorage, uid, encode_explicit_le(ct_data_set(ct_small, uid)))
        stored_at = time.monotonic()
        echo = peer.echo()
        echoed_at = time.monotonic()
    assert status == SUCCESS and echo == SUCCESS
    assert stored_at - started < 0.9, "the sleep came before the store's own response"
    assert echoed_at - stored_at >= 0.9, "the next response was not delayed"


def make_directory_a_file(od: Path) -> None:
    shutil.rmtree(od)
    od.write_bytes(b"not a directory\n")


def make_directory_read_only(od: Path) -> None:
    od.chmod(0o500)


@pytest.mark.parametrize(
    "spoil", [make_directory_a_file, make_directory_read_only], ids=["file", "chmod-0500"]
)
def test_unwritable_output_directory_answers_out_of_resources(
    storescpd: StartServer, tmp_path: Path, ct_small: Path, spoil: Callable[[Path], None]
) -> None:
    if spoil is make_directory_read_only and os.geteuid() == 0:
        pytest.skip("root writes into a 0500 directory anyway")
    server = start_isolated(storescpd, tmp_path)
    spoil(server.od)
    before = regular_files(tmp_path)
    uid = str(generate_uid())
    try:
        with associate(server) as peer:
            status = peer.store(CTImageStorage, uid, encode_explicit_le(ct_data_set(ct_small, uid)))
            good = peer.echo()
    finally:
        if server.od.is_dir():
            server.od.chmod(0o700)
    assert status == OUT_OF_RESOURCES
    assert good == SUCCESS, "the association did not go on after the failure"
    assert regular_files(tmp_path) - before == set(), "a temporary or partial file was left"
    if server.od.is_dir():
        assert regular_files(server.od) == set()
