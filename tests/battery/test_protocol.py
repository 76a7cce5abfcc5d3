"""Hostile upper-layer traffic: each case ends as PS3.8 says, and a real sender is served next.

A case sends bytes a sane requestor never would: garbage, lying lengths, PDUs out of turn,
broken command sets and data sets, aborts and disconnects in the middle of a C-STORE. The server
must answer with what the DICOM upper layer prescribes (PS3.8 §9.2 state table): an
A-ASSOCIATE-RJ with the right result/source/reason, an A-ABORT, or a close (what DCMTK does to a
peer it cannot make sense of) — within its configured timeouts, never by hanging. Afterwards
(and, for a pool, *while* a stalled peer still holds its connection) DCMTK's ``echoscu`` must be
served, the server must have logged no traceback or dead process, and nothing half-received may
be left in the output or spool directories.
"""

from __future__ import annotations

import contextlib
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.battery.conftest import AGAINST_REFERENCE, PATIENCE, TIMEOUT, BatteryServer
from tests.battery.rawpeer import (
    ASSOCIATE_AC,
    ASSOCIATE_RJ,
    COMMAND_LAST,
    COMMAND_MORE,
    DATA_LAST,
    DATA_MORE,
    IMPLICIT_LE,
    RELEASE_RP,
    VERIFICATION,
    Kind,
    RawPeer,
    abort_pdu,
    application_context,
    associate_rq,
    associated,
    c_echo_rq,
    c_store_rq,
    command_set,
    element,
    explicit_element,
    item,
    nested,
    p_data,
    pdu,
    pdv,
    presentation_context,
    release_rq,
    tiny_data_set,
    uid,
    us,
    user_information,
)
from tests.conftest import files_under, poll_until, start_storescpd

CT = "1.2.840.10008.5.1.4.1.1.2"
CT_CONTEXT = 3  # DEFAULT_CONTEXTS: 1 Verification, 3 CT Image Storage
ENDED = frozenset({Kind.ABORTED, Kind.CLOSED})
ANSWERED = frozenset({Kind.ACCEPTED, Kind.REJECTED, Kind.ABORTED})

# --------------------------------------------------------------------------------------------
# Before the association: what arrives instead of, or as, an A-ASSOCIATE-RQ
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Opening:
    """Bytes sent on a fresh connection, and the outcomes PS3.8 allows for them."""

    data: bytes
    allowed: frozenset[Kind]
    reject: tuple[int, int, int] | None = None  # the RJ's (result, source, reason), if one


def rq_with_user_info(body: bytes) -> bytes:
    return associate_rq(user_info=item(0x50, body))


OPENINGS = {
    # Sta2 + Evt19 (unrecognised or invalid PDU) → AA-1: A-ABORT, or DCMTK's close.
    "http-request": Opening(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", ENDED),
    "tls-client-hello": Opening(bytes.fromhex("16030100c4010000c00303") + bytes(190), ENDED),
    "zeros": Opening(bytes(64), ENDED),
    "unknown-pdu-type-0x09": Opening(pdu(0x09, b"abcd"), ENDED),
    "unknown-pdu-type-0xff": Opening(pdu(0xFF, b""), ENDED),
    "rq-length-0": Opening(pdu(0x01, b""), ENDED),
    "rq-length-ffffffff": Opening(pdu(0x01, b"", 0xFFFFFFFF), ENDED),
    "rq-length-short": Opening(associate_rq(length=60), ENDED),
    "rq-truncated": Opening(associate_rq()[:40], ENDED),
    "rq-item-length-lies": Opening(associate_rq(app_context=item(0x10, b"1.2", 0x4000)), ENDED),
    # PDUs out of turn (Sta2 + Evt3/4/10/12/13 → AA-1; Evt16 → AA-2: close).
    "p-data-first": Opening(p_data(pdv(1, COMMAND_LAST, c_echo_rq())), ENDED),
    "release-rq-first": Opening(release_rq(), ENDED),
    "release-rp-first": Opening(pdu(RELEASE_RP, bytes(4)), ENDED),
    "ac-first": Opening(pdu(ASSOCIATE_AC, associate_rq()[6:]), ENDED),
    "rj-first": Opening(pdu(ASSOCIATE_RJ, bytes([0, 1, 1, 1])), ENDED),
    "abort-first": Opening(abort_pdu(), frozenset({Kind.CLOSED})),
    # A-ASSOCIATE-RQs the acceptor must refuse (PS3.8 §9.3.4, SPEC §4.4).
    "protocol-version-0": Opening(associate_rq(protocol_version=0), frozenset({Kind.REJECTED}),
                                  (1, 2, 2)),
    "protocol-version-2": Opening(associate_rq(protocol_version=2), frozenset({Kind.REJECTED}),
                                  (1, 2, 2)),
    "bad-application-context": Opening(
        associate_rq(app_context=application_context("1.2.3.4")), frozenset({Kind.REJECTED}),
        (1, 1, 2)),
    "empty-application-context": Opening(associate_rq(app_context=item(0x10, b"")),
                                         frozenset({Kind.REJECTED, Kind.ABORTED})),
    "no-application-context": Opening(associate_rq(app_context=b""),
                                      frozenset({Kind.REJECTED, Kind.ABORTED})),
    "blank-called-ae": Opening(associate_rq(called=""), frozenset({Kind.REJECTED, Kind.ABORTED})),
    "blank-calling-ae": Opening(associate_rq(calling=""),
                                frozenset({Kind.REJECTED, Kind.ABORTED})),
    # Odd but answerable requests: any answer will do, silence will not.
    "protocol-version-3": Opening(associate_rq(protocol_version=3), frozenset({Kind.ACCEPTED})),
    "no-presentation-contexts": Opening(associate_rq(contexts=()), ANSWERED),
    "128-presentation-contexts": Opening(
        associate_rq(contexts=[presentation_context(i, VERIFICATION) for i in range(1, 256, 2)]),
        frozenset({Kind.ACCEPTED})),
    "300-presentation-contexts": Opening(
        associate_rq(contexts=[presentation_context(2 * i + 1 & 0xFF, CT) for i in range(300)]),
        ANSWERED),
    "even-context-id": Opening(associate_rq(contexts=[presentation_context(2, VERIFICATION)]),
                               ANSWERED),
    "context-without-transfer-syntax": Opening(
        associate_rq(contexts=[presentation_context(1, VERIFICATION, ())]), ANSWERED),
    "context-without-abstract-syntax": Opening(
        associate_rq(contexts=[item(0x20, bytes([1, 0, 0, 0]) + item(0x40, IMPLICIT_LE.encode()))]),
        ANSWERED),
    "no-user-information": Opening(associate_rq(user_info=b""), ANSWERED),
    "empty-user-information": Opening(rq_with_user_info(b""), ANSWERED),
    "unknown-item-type": Opening(associate_rq(tail=item(0x77, b"??")), ANSWERED),
    "unknown-user-sub-item": Opening(
        rq_with_user_info(item(0x51, struct.pack(">I", 16384)) + item(0x99, b"x" * 10)), ANSWERED),
    "user-identity-64k": Opening(
        rq_with_user_info(item(0x51, struct.pack(">I", 16384))
                          + item(0x58, bytes([1, 0]) + struct.pack(">H", 65000) + bytes(65000)
                                 + struct.pack(">H", 0), 65000 + 6)),
        ANSWERED),
}  # fmt: skip


@pytest.mark.parametrize("name", OPENINGS)
def test_opening(bserver: BatteryServer, name: str) -> None:
    case = OPENINGS[name]
    started = time.monotonic()
    with RawPeer(bserver.port, PATIENCE) as peer:
        peer.send(case.data)
        outcome = peer.final()
        elapsed = time.monotonic() - started
        assert outcome.kind in case.allowed, f"{name}: {outcome}, expected {allowed(case)}"
        if case.reject is not None:
            assert outcome.reject == case.reject, f"{name}: {outcome}"
    assert elapsed < PATIENCE
    bserver.check()


@pytest.mark.parametrize("name", ["http-request", "protocol-version-2"])
def test_peer_that_stays_after_abort_or_reject_is_closed(bserver: BatteryServer, name: str) -> None:
    """PS3.8 §9.1.5: after an A-ABORT or RJ the ARTIM timer closes what the peer leaves open."""
    with RawPeer(bserver.port, PATIENCE) as peer:
        peer.send(OPENINGS[name].data)
        outcome = peer.final()
        assert outcome.kind in (Kind.REJECTED, Kind.ABORTED), f"{name}: {outcome}"
        if bserver.concurrent:
            bserver.check(during=True)
        assert peer.closed_after(outcome, PATIENCE), f"{name}: not closed after {outcome}"
    bserver.check()


def allowed(case: Opening) -> str:
    return " or ".join(sorted(kind.value for kind in case.allowed))


def test_back_to_back_associations(bserver: BatteryServer) -> None:
    """Each association starts the moment the last one is released. In a pool, with another
    association holding a worker, a worker's "idle" then often arrives in the same select()
    round as the next connection (this once wedged the master in a blocking read)."""
    with contextlib.ExitStack() as stack:
        if bserver.concurrent:
            stack.enter_context(associated(bserver.port, patience=PATIENCE))
        for _ in range(100):
            with associated(bserver.port, patience=PATIENCE) as peer:
                peer.send(release_rq())
                assert peer.answer().kind is Kind.RELEASED
    bserver.check()


def test_connect_and_close_at_once(bserver: BatteryServer) -> None:
    for _ in range(20):
        RawPeer(bserver.port).close()
    bserver.check()


def test_silent_peer_is_closed_after_the_acse_timeout(bserver: BatteryServer) -> None:
    with RawPeer(bserver.port, PATIENCE) as peer:
        if bserver.concurrent:
            bserver.check(during=True)
        outcome = peer.final()
        assert outcome.kind in ENDED, f"silent peer: {outcome}"
    bserver.check()


def test_huge_rq_streamed_is_cut_short(bserver: BatteryServer) -> None:
    """A header claiming 4 GiB, then megabytes of it: the server stops reading early."""
    with RawPeer(bserver.port, PATIENCE) as peer:
        sent = peer.stream(pdu(0x01, b"", 0xFFFFFFFF), 1 << 20, 64)
        assert sent < 64 << 20, "the server took 64 MiB of a single A-ASSOCIATE-RQ"
    bserver.check()


# --------------------------------------------------------------------------------------------
# During the association: the DIMSE layer and PDUs out of turn
# --------------------------------------------------------------------------------------------

Exchange = Callable[[RawPeer], None]


def send_all(*data: bytes) -> Exchange:
    def exchange(peer: RawPeer) -> None:
        for chunk in data:
            peer.send(chunk)

    return exchange


def command(fields: bytes, context_id: int = 1) -> bytes:
    return p_data(pdv(context_id, COMMAND_LAST, fields))


def stream_fragments(control: int, size: int, total: int, context_id: int = 1) -> Exchange:
    """A command or data set that never ends: ``total`` bytes in fragments of ``size``."""

    def exchange(peer: RawPeer) -> None:
        if control == DATA_MORE:
            peer.send(command(echo_with_data_set(), context_id))
        fragment = p_data(pdv(context_id, control, bytes(size)))
        for _ in range(total // size):
            if not peer.send(fragment):
                return

    return exchange


def echo_with_data_set() -> bytes:
    """A C-ECHO-RQ that says a data set follows."""
    return command_set(
        element(0x00000002, uid(VERIFICATION)),
        element(0x00000100, us(0x0030)),
        element(0x00000110, us(1)),
        element(0x00000800, us(0x0000)),
    )


def unknown_command(field: int) -> bytes:
    return command_set(
        element(0x00000002, uid(VERIFICATION)),
        element(0x00000100, us(field)),
        element(0x00000110, us(1)),
        element(0x00000800, us(0x0101)),
    )


IN_ASSOCIATION: dict[str, Exchange] = {
    # Sta6 + Evt6/3/4 → AA-8; unknown PDU (Evt19) → AA-8.
    "second-associate-rq": send_all(associate_rq()),
    "associate-ac": send_all(pdu(ASSOCIATE_AC, associate_rq()[6:])),
    "associate-rj": send_all(pdu(ASSOCIATE_RJ, bytes([0, 1, 1, 1]))),
    "unknown-pdu-type": send_all(pdu(0x09, b"abcd")),
    # Lengths: the PDU larger than we announced, PDVs that lie (PS3.8 §9.3.5, SPEC §4.5).
    "p-data-length-7fffffff": send_all(p_data(pdv(1, COMMAND_LAST, c_echo_rq()),
                                              length=0x7FFFFFFF)),
    "p-data-larger-than-max-pdu": send_all(p_data(pdv(1, COMMAND_MORE, bytes(20000)),
                                                  pdv(1, COMMAND_LAST, c_echo_rq()))),
    "pdv-length-beyond-pdu": send_all(p_data(pdv(1, COMMAND_LAST, c_echo_rq(), length=1000))),
    "pdv-length-0": send_all(p_data(pdv(1, COMMAND_LAST, b"", length=0))),
    "pdv-length-1": send_all(p_data(struct.pack(">IB", 1, 1))),
    "pdv-without-header": send_all(p_data(pdv(1, COMMAND_LAST, b"", length=2))),
    "empty-p-data": send_all(p_data()),
    "pdv-on-unknown-context": send_all(command(c_echo_rq(), context_id=7)),
    "pdv-on-even-context": send_all(command(c_echo_rq(), context_id=2)),
    # Command sets (PS3.7 §E): garbage, empty, incomplete, unknown or unserved commands.
    "command-garbage": send_all(command(b"\x01\x02\x03garbage!")),
    "command-empty": send_all(command(b"")),
    "command-without-command-field": send_all(command(command_set(element(0x00000110, us(1))))),
    "command-element-length-ffffffff": send_all(command(
        element(0x00000000, struct.pack("<I", 20)) + element(0x00000002, b"1.2", 0xFFFFFFFF))),
    "command-group-length-lies": send_all(command(
        element(0x00000000, struct.pack("<I", 0xFFFFFFF0)) + c_echo_rq()[12:])),
    "command-field-unknown": send_all(command(unknown_command(0x1234))),
    "c-find-rq": send_all(command(unknown_command(0x0020))),
    "c-echo-rsp": send_all(command(unknown_command(0x8030))),
    "n-event-report-rq": send_all(command(unknown_command(0x0100))),
    "c-cancel-rq": send_all(command(unknown_command(0x0FFF))),
    "data-before-command": send_all(p_data(pdv(CT_CONTEXT, DATA_LAST, tiny_data_set(CT, "1.2.3")))),
    "command-after-command-fragment": send_all(p_data(pdv(1, COMMAND_MORE, c_echo_rq()[:20])),
                                               p_data(pdv(3, COMMAND_LAST, c_echo_rq()[20:]))),
    # Memory: a command set, or the data set of a C-ECHO, that never ends.
    "endless-command-set": stream_fragments(COMMAND_MORE, 16000, 4 << 20),
    "endless-c-echo-data-set": stream_fragments(DATA_MORE, 16000, 8 << 20),
}  # fmt: skip


@pytest.mark.parametrize("name", IN_ASSOCIATION)
def test_in_association(bserver: BatteryServer, name: str) -> None:
    started = time.monotonic()
    with associated(bserver.port, patience=PATIENCE) as peer:
        IN_ASSOCIATION[name](peer)
        outcome = peer.final()
        elapsed = time.monotonic() - started
        assert outcome.kind in ENDED, f"{name}: {outcome}, expected an A-ABORT or a close"
        if not AGAINST_REFERENCE:
            # An A-ABORT at once (AA-8, or the DIMSE user's abort), not the idle timer's.
            assert outcome.kind is Kind.ABORTED, f"{name}: {outcome}"
            assert elapsed < TIMEOUT * 0.75, f"{name}: {outcome} only after {elapsed:.1f}s"
    bserver.check()


# Without --dimse-timeout (whose handler watches every PDU) the worker takes P-DATA-TFs past
# pynetdicom's PDU objects and state machine (storescpd.worker.reactor): the same cases there.
SHORTCUT_CASES = [
    name for name in IN_ASSOCIATION
    if name.startswith(("p-data", "pdv", "empty-p-data", "command", "data"))
]  # fmt: skip


@pytest.fixture(scope="module")
def shortcut_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BatteryServer]:
    if AGAINST_REFERENCE:
        pytest.skip("the P-DATA shortcut is storescpd's")
    root = tmp_path_factory.mktemp("battery-shortcut")
    (root / "od").mkdir()
    (root / "tmp").mkdir()
    server = start_storescpd(["-ta", str(TIMEOUT), "--network-timeout", str(TIMEOUT)],
                             root / "od", root / "server.log",
                             extra_env={"TMPDIR": str(root / "tmp")})  # fmt: skip
    try:
        yield BatteryServer(server, "single")
    finally:
        status = server.stop()
    assert status == 0, f"storescpd exited with {status}:\n{server.log[-4000:]}"


@pytest.mark.parametrize("name", SHORTCUT_CASES)
def test_in_association_on_the_p_data_shortcut(shortcut_server: BatteryServer, name: str) -> None:
    shortcut_server.new_log()
    started = time.monotonic()
    with associated(shortcut_server.port, patience=PATIENCE) as peer:
        IN_ASSOCIATION[name](peer)
        outcome = peer.final()
    elapsed = time.monotonic() - started
    assert outcome.kind is Kind.ABORTED, f"{name}: {outcome}"
    assert elapsed < TIMEOUT * 0.75, f"{name}: {outcome} only after {elapsed:.1f}s"
    shortcut_server.check()


def test_stores_on_the_p_data_shortcut(shortcut_server: BatteryServer) -> None:
    """Objects of one and of many PDUs, back to back on one association, stored whole."""
    pixels = bytes(range(256)) * 400  # 100 KiB: seven 16 KiB PDUs
    sent = {}
    with associated(shortcut_server.port, patience=PATIENCE) as peer:
        for n, more in enumerate([(), (explicit_element(0x7FE00010, "OB", pixels),)] * 2):
            instance = f"1.2.826.0.1.3680043.10.1427.99.{n}"
            sent[f"CT.{instance}"] = data_set = tiny_data_set(CT, instance, *more)
            assert peer.store(CT, instance, data_set) == 0x0000
    stored = {p.name: p.read_bytes() for p in files_under(shortcut_server.od)}
    assert sorted(stored) == sorted(sent)
    for name, data_set in sent.items():
        assert stored[name].endswith(data_set), name  # the data set as sent, after the meta
    shortcut_server.check()


def test_tiny_max_pdu_of_the_peer(bserver: BatteryServer) -> None:
    """A peer that announces 16 bytes: answered in tiny PDVs, or aborted; never a hang."""
    rq = associate_rq(user_info=user_information(max_length=16))
    with associated(bserver.port, rq, patience=PATIENCE) as peer:
        peer.send(command(c_echo_rq()))
        outcome = peer.answer()
        assert outcome.kind in (Kind.DATA, Kind.ABORTED), f"C-ECHO: {outcome}"
        if outcome.kind is Kind.DATA:
            assert len(outcome.body) <= 16
    bserver.check()


def test_echo_still_works_on_the_raw_peer(bserver: BatteryServer) -> None:
    """The raw peer itself is right: a well-formed C-ECHO gets a success response."""
    with associated(bserver.port, patience=PATIENCE) as peer:
        peer.send(command(c_echo_rq()))
        response = peer.answer()
        assert response.kind is Kind.DATA, response
        assert response.status == 0x0000
        peer.send(release_rq())
        assert peer.answer().kind is Kind.RELEASED
    bserver.check()


# --------------------------------------------------------------------------------------------
# A C-STORE cut short at every stage
# --------------------------------------------------------------------------------------------

STORE_UID = "1.2.826.0.1.3680043.9.7433.2."


def store_stages(instance: str, *more: bytes) -> list[bytes]:
    """The PDUs of one C-STORE of a tiny data set (plus ``more``) in two fragments."""
    data_set = tiny_data_set(CT, instance, explicit_element(0x00200010, "SH", b"STAGES"), *more)
    half = len(data_set) // 2
    return [
        p_data(pdv(CT_CONTEXT, COMMAND_LAST, c_store_rq(CT, instance))),
        p_data(pdv(CT_CONTEXT, DATA_MORE, data_set[:half])),
        p_data(pdv(CT_CONTEXT, DATA_LAST, data_set[half:])),
    ]


# (PDUs sent whole, bytes of the next PDU sent, then what the peer does)
CUTS = {
    "after-command": (1, 0),
    "inside-command-pdu": (0, 20),
    "after-first-fragment": (2, 0),
    "inside-data-pdu": (1, 30),
}
ENDINGS = ("a-abort", "disconnect", "release-rq", "stall")


@pytest.mark.parametrize("ending", ENDINGS)
@pytest.mark.parametrize("cut", CUTS)
def test_store_cut_short(bserver: BatteryServer, cut: str, ending: str) -> None:
    instance = f"{STORE_UID}{int(time.time() * 1e6)}"
    whole, partial = CUTS[cut]
    pdus = store_stages(instance)
    start = len(bserver.server.log)
    with associated(bserver.port, patience=PATIENCE) as peer:
        for data in pdus[:whole]:
            peer.send(data)
        if partial:
            peer.send(pdus[whole][:partial])
        if ending == "a-abort":
            peer.send(abort_pdu())
        elif ending == "disconnect":
            peer.close()
        elif ending == "release-rq":
            if partial:  # the rest of the PDU, so that the release is read as one
                peer.send(pdus[whole][partial:])
            peer.send(release_rq())
        if ending in ("release-rq", "stall"):
            if ending == "stall" and bserver.concurrent:
                bserver.check(during=True)
            outcome = peer.final()
            # A release in the middle of a message may be granted, refused or aborted.
            assert outcome.kind in ENDED | {Kind.RELEASED}, f"{cut}/{ending}: {outcome}"
    if ending == "stall" and partial and not AGAINST_REFERENCE:
        assert_timeout_logged_briefly(bserver, start)
    bserver.check()
    assert not list(bserver.od.glob(f"*{instance}*")), "a store cut short left a file"
    assert_no_spool_left(bserver)


def assert_timeout_logged_briefly(bserver: BatteryServer, start: int) -> None:
    """A peer that stopped in the middle of a PDU was ended by the timeouts, and the log says
    so in a line or two (our timeout, pynetdicom's read cut short): no traceback, and no bare
    "timed out" repeating them."""

    def said() -> list[str]:
        lines = bserver.server.log[start:].splitlines()
        return [line for line in lines if "timeout" in line.lower() or "entire PDU" in line]

    poll_until(lambda: bool(said()), PATIENCE, "the timeout to be logged")
    logged = bserver.server.log[start:].splitlines()
    assert 1 <= len(said()) <= 2, said()
    assert sum("entire PDU" in line for line in logged) <= 1, logged
    assert not [line for line in logged if line.rstrip().endswith(": timed out")], logged
    assert not [line for line in logged if line.startswith(("Traceback", "  File "))], logged


@pytest.mark.parametrize("nesting", [0, 128])
def test_complete_store_on_the_raw_peer_is_stored(bserver: BatteryServer, nesting: int) -> None:
    """The raw peer itself is right, and sequences 128 deep are still fine."""
    instance = f"{STORE_UID}{int(time.time() * 1e6)}"
    more = (nested(nesting, undefined=True),) if nesting else ()
    with associated(bserver.port, patience=PATIENCE) as peer:
        for data in store_stages(instance, *more):
            peer.send(data)
        response = peer.answer()
        assert response.kind is Kind.DATA, response
        assert response.status == 0x0000
    bserver.check()
    assert [p.name for p in bserver.od.glob(f"*{instance}")] == [f"CT.{instance}"]


def assert_no_spool_left(bserver: BatteryServer) -> None:
    """No spool file outlives its association (in a pool, the bad peer's worker may still be
    cleaning up while another serves the check)."""
    if AGAINST_REFERENCE:
        return
    tmp = bserver.od.parent / "tmp"
    try:
        poll_until(lambda: not spool_files(tmp), PATIENCE, "the spool to be swept")
    except TimeoutError:
        raise AssertionError(f"spool files left: {spool_files(tmp)}") from None


def spool_files(tmp: Path) -> list[Path]:
    return files_under(tmp)


# --------------------------------------------------------------------------------------------
# Data sets that cannot be understood
# --------------------------------------------------------------------------------------------

CANNOT_UNDERSTAND = 0xC000


BAD_DATA_SETS = {
    "element-length-past-end": explicit_element(0x00200010, "SH", b"", 0xFFFF),
    "element-length-ffffffff": explicit_element(0x00200010, "UT", b"", 0xFFFFFFFE),
    "truncated-element-header": b"\x20\x00\x10\x00SH",
    "sequence-nested-129": nested(129, undefined=True),
    "sequence-nested-5000-undefined": nested(5000, undefined=True),
    "sequence-nested-2000-defined": nested(2000, undefined=False),
    "item-outside-sequence": b"\xfe\xff\x00\xe0\x00\x00\x00\x00",
    "sequence-without-end": explicit_element(0x0040A730, "SQ", b"", 0xFFFFFFFF),
}


@pytest.mark.parametrize("name", BAD_DATA_SETS)
def test_bad_data_set_is_refused(bserver: BatteryServer, name: str) -> None:
    instance = f"{STORE_UID}{int(time.time() * 1e6)}"
    data_set = tiny_data_set(CT, instance, BAD_DATA_SETS[name])
    with associated(bserver.port, patience=PATIENCE) as peer:
        peer.send(p_data(pdv(CT_CONTEXT, COMMAND_LAST, c_store_rq(CT, instance))))
        fragment = 16000
        for start in range(0, len(data_set), fragment):
            last = start + fragment >= len(data_set)
            peer.send(
                p_data(pdv(CT_CONTEXT, DATA_LAST if last else DATA_MORE,
                           data_set[start : start + fragment]))
            )  # fmt: skip
        outcome = peer.answer()
        if AGAINST_REFERENCE:
            assert outcome.kind in ENDED | {Kind.DATA}, outcome
        else:
            assert outcome.kind is Kind.DATA, f"{name}: {outcome}, expected a C-STORE-RSP"
            assert outcome.status == CANNOT_UNDERSTAND, f"{name}: {outcome.body!r}"
    bserver.check()
    assert not list(bserver.od.glob(f"*{instance}*")), "a data set not understood left a file"
    assert_no_spool_left(bserver)
