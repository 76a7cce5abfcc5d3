"""storescpd.worker.wire: the bounds on what a peer's bytes may make pynetdicom do."""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Iterator

import pytest
from pynetdicom.pdu import P_DATA_TF

from storescpd.worker.wire import (
    COMMAND_SET_LIMIT,
    GuardedSocket,
    MessageTracker,
    PduRefused,
    command_fields,
    rq_problem,
    split_pdvs,
)
from tests.battery.rawpeer import (
    COMMAND_LAST,
    COMMAND_MORE,
    DATA_LAST,
    DATA_MORE,
    VERIFICATION,
    associate_rq,
    c_echo_rq,
    c_store_rq,
    element,
    item,
    p_data,
    pdv,
    presentation_context,
    us,
)

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.fixture
def pair() -> Iterator[tuple[GuardedSocket, socket.socket]]:
    ours, theirs = socket.socketpair()
    guarded = GuardedSocket(fileno=ours.detach())
    guarded.limit(16384)
    guarded.settimeout(5)
    yield guarded, theirs
    guarded.close()
    theirs.close()


def read_all(sock: GuardedSocket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        data += sock.recv(min(4096, n - len(data)))
    return data


def test_a_sound_request_passes_unchanged(pair: tuple[GuardedSocket, socket.socket]) -> None:
    guarded, peer = pair
    rq = associate_rq()
    peer.sendall(rq)
    assert guarded.recv(6) + read_all(guarded, len(rq) - 6) == rq


@pytest.mark.parametrize("version", [3, 0x0101, 0xFFFF])
def test_any_version_with_bit_0_is_shown_as_1(
    pair: tuple[GuardedSocket, socket.socket], version: int
) -> None:
    guarded, peer = pair
    rq = associate_rq(protocol_version=version)
    peer.sendall(rq)
    seen = guarded.recv(6) + read_all(guarded, len(rq) - 6)
    assert seen[6:8] == b"\x00\x01" and seen[8:] == rq[8:]


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (struct.pack(">BBI", 0x04, 0, 16385), 6),  # P-DATA-TF longer than announced
        (struct.pack(">BBI", 0x01, 0, 0xFFFFFFFF), 6),  # a 4 GiB request
        (struct.pack(">BBI", 0x09, 0, 4), 1),  # unknown PDU type
        (b"GET / ", 1),
    ],
)
def test_a_refused_header_gets_an_abort_before_its_body_is_read(
    pair: tuple[GuardedSocket, socket.socket], header: bytes, reason: int
) -> None:
    guarded, peer = pair
    peer.sendall(header)
    with pytest.raises(PduRefused):
        guarded.recv(6)
    assert peer.recv(100) == bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, reason])


def test_headers_are_found_across_reads(pair: tuple[GuardedSocket, socket.socket]) -> None:
    guarded, peer = pair
    good = p_data(pdv(1, COMMAND_LAST, c_echo_rq()))
    peer.sendall(good + struct.pack(">BBI", 0x04, 0, 1 << 20))
    assert read_all(guarded, 3) + read_all(guarded, len(good) - 3) == good
    with pytest.raises(PduRefused):
        for _ in range(6):
            guarded.recv(1)


@pytest.mark.parametrize(
    ("contexts", "problem"),
    [
        ([presentation_context(1, VERIFICATION)], ""),
        ([presentation_context(2, VERIFICATION)], "presentation context ID 2 is not odd"),
        ([presentation_context(1, VERIFICATION, ())], "presentation context 1: no transfer syntax"),
        ([item(0x20, bytes(4) + item(0x40, b"1.2"))], "presentation context ID 0 is not odd"),
        ([item(0x20, bytes([1, 0, 0, 0]) + item(0x40, b"1.2"))],
         "presentation context 1: 0 abstract syntaxes"),
        ([item(0x20, bytes([1, 0, 0, 0]) + item(0x30, b"1.2", 99))],
         "presentation context 1: sub-item length runs past its end"),
        ([item(0x20, b"\x01")], "presentation context item too short"),
    ],
)  # fmt: skip
def test_rq_problem(contexts: list[bytes], problem: str) -> None:
    assert rq_problem(associate_rq(contexts=contexts)[6:]) == problem


def test_rq_problem_of_short_and_overrunning_requests() -> None:
    assert rq_problem(b"") == "0 bytes, too short"
    assert rq_problem(associate_rq(tail=b"\x10\x00\x00")[6:]) == "item header runs past the end"
    assert rq_problem(associate_rq(tail=item(0x77, b"", 9))[6:]) == "item length runs past the end"


def test_command_fields() -> None:
    assert command_fields(c_echo_rq(7)) == {0x0100: 0x0030, 0x0110: 7, 0x0800: 0x0101}
    assert command_fields(c_echo_rq()[12:-1]) == (
        "command element (0000,0800) runs past the end of the command set"
    )
    lying = element(0x00000000, struct.pack("<I", 99)) + c_echo_rq()[12:]
    assert command_fields(lying) == "command group length 99 but 56 bytes follow"
    assert command_fields(element(0x00080016, b"1.2")) == "element (0008,0016) in a command set"


def test_tracker_lets_echo_and_store_through() -> None:
    tracker = MessageTracker()
    assert tracker.follow([(1, bytes([COMMAND_LAST]) + c_echo_rq())]) == ""
    store = c_store_rq(CT, "1.2.3")
    assert tracker.follow([(3, bytes([COMMAND_MORE]) + store[:10])]) == ""
    assert tracker.follow([(3, bytes([COMMAND_LAST]) + store[10:])]) == ""
    assert tracker.follow([(3, bytes([DATA_MORE]) + bytes(2 << 20))]) == ""  # no C-STORE limit
    assert tracker.follow([(3, bytes([DATA_LAST]) + b"xx")]) == ""
    assert tracker.follow([(1, bytes([COMMAND_LAST]) + c_echo_rq(2))]) == ""


@pytest.mark.parametrize(
    ("pdvs", "problem"),
    [
        ([], "P-DATA-TF without presentation data values"),
        ([(1, b"")], "presentation data value without a message control header"),
        ([(1, bytes([DATA_LAST]) + b"x")], "data set fragment without a command"),
        ([(1, bytes([COMMAND_MORE]) + b"ab"), (3, bytes([COMMAND_LAST]))],
         "presentation context changed from 1 to 3 in a message"),
        ([(1, bytes([COMMAND_LAST]) + element(0x00000100, us(0x0020)))],
         "Expected C-ECHO or C-STORE request but received DIMSE command 0x0020"),
        ([(1, bytes([COMMAND_LAST]) + element(0x00000110, us(1)))],
         "command set without a Command Field (0000,0100)"),
        ([(1, bytes([COMMAND_MORE]) + bytes(COMMAND_SET_LIMIT + 1))],
         f"command set longer than {COMMAND_SET_LIMIT} bytes"),
    ],
)  # fmt: skip
def test_tracker_names_what_storescp_would_not_serve(
    pdvs: list[tuple[int, bytes]], problem: str
) -> None:
    assert MessageTracker().follow(pdvs) == problem


def test_tracker_bounds_the_data_set_of_an_echo() -> None:
    tracker = MessageTracker()
    echo = c_echo_rq()[:-2] + us(0x0000)  # "a data set follows"
    assert tracker.follow([(1, bytes([COMMAND_LAST]) + echo)]) == ""
    assert tracker.follow([(1, bytes([DATA_MORE]) + bytes(1 << 20))]) == ""
    assert "over 1048576 bytes" in tracker.follow([(1, bytes([DATA_MORE]) + b"xx")])


def test_read_ahead_follows_bytes_as_they_are_handed_out(
    pair: tuple[GuardedSocket, socket.socket],
) -> None:
    guarded, peer = pair
    guarded.read_ahead = 1 << 17
    good = p_data(pdv(1, COMMAND_LAST, c_echo_rq()))
    peer.sendall(good + struct.pack(">BBI", 0x04, 0, 1 << 20))
    assert guarded.recv(6) == good[:6]
    assert guarded.pending() == len(good) - 6 + 6  # the rest and the bad header, read ahead
    assert guarded.recv(4, socket.MSG_PEEK) == good[6:10]
    body = bytearray(len(good) - 6)
    assert guarded.recv_into(body) == len(body) and bytes(body) == good[6:]
    with pytest.raises(PduRefused):  # refused when reached, not when read ahead
        guarded.recv(6)


def test_read_ahead_shows_a_version_with_bit_0_as_1(
    pair: tuple[GuardedSocket, socket.socket],
) -> None:
    guarded, peer = pair
    guarded.read_ahead = 1 << 17
    rq = associate_rq(protocol_version=3)
    peer.sendall(rq)
    seen = guarded.recv(6) + read_all(guarded, len(rq) - 6)
    assert seen[6:8] == b"\x00\x01" and seen[8:] == rq[8:]
    assert guarded.pending() == 0


def _pynetdicom_pdvs(data: bytes) -> list[tuple[int, bytes]] | None:
    pdu = P_DATA_TF()
    try:
        pdu.decode(data)
        return list(pdu.to_primitive().presentation_data_value_list)
    except Exception:  # noqa: BLE001 - any failure is a refusal, as in its DUL
        return None


PDU_BODIES = {
    "one-pdv": p_data(pdv(1, COMMAND_LAST, c_echo_rq())),
    "three-pdvs": p_data(pdv(1, COMMAND_LAST, c_echo_rq()), pdv(3, DATA_MORE, b"x" * 9),
                         pdv(5, DATA_LAST, b"")),
    "no-pdvs": p_data(),
    "header-only-pdv": p_data(pdv(7, DATA_LAST, b"", length=1)),
    "length-0": p_data(pdv(1, COMMAND_LAST, b"", length=0)),
    "length-beyond-pdu": p_data(pdv(1, COMMAND_LAST, c_echo_rq(), length=1000)),
    "item-header-cut": p_data(pdv(1, COMMAND_LAST, b"ab"))[:-5],
    "context-id-missing": p_data(pdv(1, COMMAND_LAST, b"ab")) + bytes(4),
    "three-trailing-bytes": p_data(pdv(1, COMMAND_LAST, b"ab")) + bytes(3),
}  # fmt: skip


@pytest.mark.parametrize("body", PDU_BODIES.values(), ids=PDU_BODIES.keys())
def test_pdvs_split_as_pynetdicom_decodes_them(body: bytes) -> None:
    assert split_pdvs(body) == _pynetdicom_pdvs(body)


def test_pdvs_split_as_pynetdicom_decodes_random_bytes() -> None:
    rng = random.Random(7)
    verdicts = set()
    for _ in range(3000):
        parts = [pdv(rng.randrange(256), rng.randrange(4), rng.randbytes(rng.randrange(6)),
                     length=rng.choice([None, None, rng.randrange(9)]))
                 for _ in range(rng.randrange(4))]  # fmt: skip
        body = p_data(*parts)
        body = body[: rng.randrange(6, len(body) + 1)] if rng.random() < 0.3 else body
        pdvs = split_pdvs(body)
        assert pdvs == _pynetdicom_pdvs(body), body.hex()
        verdicts.add(pdvs is None)
    assert verdicts == {True, False}  # both sound and broken bodies were tried
