"""Property-based fuzzing of the association request and P-DATA paths (hypothesis).

The strategies build PDUs from their PS3.8 parts, each part either sound or arbitrary bytes,
and then sometimes cut, extend or flip bytes of the whole, so that most examples get past the
first checks and reach deeper code. The property: whatever arrives, the server answers
(AC, RJ, A-ABORT, a response, a release) or closes within its timeouts, logs no traceback and
keeps serving. Examples are bounded and derandomized, so CI runs the same ones each time.
"""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.battery.conftest import AGAINST_REFERENCE, PATIENCE, BatteryServer, broken
from tests.battery.rawpeer import (
    APPLICATION_CONTEXT,
    ASSOCIATE_RQ,
    EXPLICIT_LE,
    IMPLEMENTATION_UID,
    IMPLICIT_LE,
    P_DATA_TF,
    VERIFICATION,
    Kind,
    RawPeer,
    ae_title,
    associated,
    c_echo_rq,
    c_store_rq,
    item,
    pdu,
    pdv,
    release_rq,
    tiny_data_set,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # A reference server's failures are only counted: shrinking them would take many minutes.
    phases=[Phase.explicit, Phase.generate] if AGAINST_REFERENCE else list(Phase),
)

# --------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------

SYNTAXES = [VERIFICATION, CT, IMPLICIT_LE, EXPLICIT_LE, APPLICATION_CONTEXT, "1.2", ""]


def uid_bytes() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from(SYNTAXES).map(str.encode),
        st.binary(max_size=70),
        st.text("0123456789.", max_size=80).map(str.encode),
    )


def sub_item(
    item_type: st.SearchStrategy[int], value: st.SearchStrategy[bytes]
) -> st.SearchStrategy[bytes]:
    """An item whose length is usually right and sometimes not."""
    return st.builds(
        lambda t, v, lie: item(t, v, None if lie is None else lie),
        item_type,
        value,
        st.one_of(st.none(), st.none(), st.none(), st.integers(0, 0xFFFF)),
    )


def presentation_contexts() -> st.SearchStrategy[bytes]:
    context = st.builds(
        lambda cid, abstract, syntaxes: item(
            0x20, bytes([cid, 0, 0, 0]) + abstract + b"".join(syntaxes)
        ),
        st.one_of(st.sampled_from([1, 3, 5, 255]), st.integers(0, 255)),
        sub_item(st.just(0x30), uid_bytes()),
        st.lists(sub_item(st.sampled_from([0x40, 0x40, 0x30, 0x55]), uid_bytes()), max_size=4),
    )
    return st.lists(context, max_size=6).map(b"".join)


def user_information() -> st.SearchStrategy[bytes]:
    max_length = st.integers(0, 0xFFFFFFFF).map(lambda n: item(0x51, struct.pack(">I", n)))
    sub_items = st.one_of(
        max_length,
        sub_item(st.just(0x52), uid_bytes()),
        sub_item(st.just(0x55), st.binary(max_size=20)),
        sub_item(
            st.sampled_from([0x53, 0x54, 0x56, 0x57, 0x58, 0x59, 0x99]), st.binary(max_size=40)
        ),
    )
    return st.one_of(
        st.just(
            item(
                0x50, item(0x51, struct.pack(">I", 16384)) + item(0x52, IMPLEMENTATION_UID.encode())
            )
        ),
        st.lists(sub_items, max_size=5).map(lambda parts: item(0x50, b"".join(parts))),
        st.binary(max_size=30),
    )


def association_requests() -> st.SearchStrategy[bytes]:
    body = st.builds(
        lambda version, called, calling, reserved, app, contexts, user: (
            struct.pack(">HH", version, 0) + called + calling + reserved + app + contexts + user
        ),
        st.one_of(st.just(1), st.integers(0, 0xFFFF)),
        st.one_of(st.just(ae_title("STORESCPD")), st.binary(min_size=16, max_size=16)),
        st.one_of(st.just(ae_title("FUZZ")), st.binary(min_size=16, max_size=16)),
        st.one_of(st.just(bytes(32)), st.binary(min_size=32, max_size=32)),
        st.one_of(
            st.just(item(0x10, APPLICATION_CONTEXT.encode())), sub_item(st.just(0x10), uid_bytes())
        ),
        presentation_contexts(),
        user_information(),
    )
    return st.builds(mangle, body.map(lambda b: pdu(ASSOCIATE_RQ, b)), mutations())


def mutations() -> st.SearchStrategy[list[tuple[str, int, int]]]:
    """Whole-PDU damage: cut at, flip a byte at, or lie about the length."""
    return st.lists(
        st.tuples(
            st.sampled_from(["cut", "flip", "length"]), st.integers(0, 400), st.integers(0, 255)
        ),
        max_size=2,
    )


def mangle(data: bytes, damage: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, value in damage:
        if kind == "cut":
            del out[min(where, len(out)) :]
        elif kind == "flip" and out:
            out[where % len(out)] ^= value or 1
        elif kind == "length" and len(out) >= 6:
            out[2:6] = struct.pack(">I", max(0, len(out) - 6 + value - 128))
    return bytes(out)


def commands() -> st.SearchStrategy[bytes]:
    sound = st.sampled_from([c_echo_rq(), c_store_rq(CT, "1.2.3.4"), c_store_rq(VERIFICATION, "1")])
    return st.builds(mangle_bytes, sound, mutations())


def mangle_bytes(data: bytes, damage: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, value in damage:
        if kind == "cut":
            del out[min(where, len(out)) :]
        elif out:
            out[where % len(out)] ^= value or 1
    return bytes(out)


def p_data_streams() -> st.SearchStrategy[list[bytes]]:
    """A few P-DATA-TF PDUs: command and data-set fragments, sound or damaged."""
    fragment = st.builds(
        lambda cid, control, data, lie: pdv(cid, control, data, lie),
        st.one_of(st.sampled_from([1, 3]), st.integers(0, 255)),
        st.one_of(st.sampled_from([0, 1, 2, 3]), st.integers(0, 255)),
        st.one_of(commands(), st.just(tiny_data_set(CT, "1.2.3.4")), st.binary(max_size=200)),
        st.one_of(st.none(), st.none(), st.none(), st.integers(0, 0xFFFFFFFF)),
    )
    one_pdu = st.builds(
        lambda pdvs, damage: mangle(pdu(P_DATA_TF, b"".join(pdvs)), damage),
        st.lists(fragment, max_size=3),
        mutations(),
    )
    return st.lists(one_pdu, min_size=1, max_size=4)


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

ENDINGS = frozenset({Kind.ACCEPTED, Kind.REJECTED, Kind.ABORTED, Kind.CLOSED, Kind.RELEASED})
# In a pool, an example may meet all workers still busy with the ones before: a transient RJ.


def assert_unbroken(server: BatteryServer, what: str) -> None:
    assert server.server.alive(), f"the server died after {what}:\n{server.server.log[-3000:]}"
    logged = server.new_log()
    if not AGAINST_REFERENCE:
        lines = broken(logged)
        assert not lines, f"after {what}: {lines}\n{logged[-3000:]}"


@FUZZ
@given(rq=association_requests())
def test_fuzzed_association_request(battery_server: BatteryServer, rq: bytes) -> None:
    with RawPeer(battery_server.port, PATIENCE) as peer:
        peer.send(rq)
        outcome = peer.final()
        assert outcome.kind in ENDINGS, f"{rq!r}: {outcome}"
    assert_unbroken(battery_server, repr(rq))


@FUZZ
@given(stream=p_data_streams())
def test_fuzzed_p_data(battery_server: BatteryServer, stream: list[bytes]) -> None:
    # Workers that served earlier examples are free again within the timeouts.
    with associated(battery_server.port, patience=PATIENCE, busy_wait=PATIENCE) as peer:
        for data in stream:
            if not peer.send(data):
                break
        peer.send(release_rq())
        outcome = peer.answer()
        while outcome.kind is Kind.DATA:  # responses to what was understood
            outcome = peer.answer()
        assert outcome.kind in ENDINGS, f"{stream!r}: {outcome}"
    assert_unbroken(battery_server, repr(stream))


def test_served_after_the_fuzzing(battery_server: BatteryServer) -> None:
    battery_server.check()
