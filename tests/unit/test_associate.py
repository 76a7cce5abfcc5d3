"""A-ASSOCIATE-RQ decoding and -AC encoding that remember contexts give what pynetdicom gives."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_items import PresentationContextItemAC
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import CTImageStorage, MRImageStorage

from storescpd.worker import associate
from storescpd.worker.associate import decode_associate_rq, memoize_context_answers

SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2"]


@pytest.fixture(autouse=True)
def nothing_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(associate, "_remembered", {})


def encoded_rq(
    abstract_syntaxes: list[str], calling: str = "SCU", max_length: int = 16384
) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = calling
    primitive.called_ae_title = "STORESCP"
    for n, uid in enumerate(abstract_syntaxes):
        context = build_context(uid, SYNTAXES)
        context.context_id = 2 * n + 1
        primitive.presentation_context_definition_list.append(context)
    length = MaximumLengthNotification()
    length.maximum_length_received = max_length
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.276.0.7230010.3.0.3.6.8"
    primitive.user_information = [length, implementation]
    return bytes(A_ASSOCIATE_RQ(primitive).encode())


def described(pdu: A_ASSOCIATE_RQ) -> Any:
    primitive = pdu.to_primitive()
    contexts = [
        (cx.context_id, str(cx.abstract_syntax), [str(ts) for ts in cx.transfer_syntax],
         cx.result, cx.scu_role, cx.scp_role)
        for cx in primitive.presentation_context_definition_list
    ]  # fmt: skip
    return (pdu.protocol_version, primitive.calling_ae_title, primitive.called_ae_title,
            str(primitive.application_context_name), contexts,
            [str(item) for item in primitive.user_information])  # fmt: skip


def reference(data: bytes) -> Any:
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(data)
    return described(pdu)


def test_a_request_decodes_as_pynetdicom_decodes_it_the_first_time_and_after() -> None:
    data = encoded_rq([CTImageStorage, MRImageStorage] * 20)
    first = decode_associate_rq(data)
    again = decode_associate_rq(data)
    assert type(first) is A_ASSOCIATE_RQ  # learnt from
    assert type(again) is not A_ASSOCIATE_RQ  # decoded from what was learnt
    assert described(first) == described(again) == reference(data)
    # The same contexts with other AE titles and user information: the rest is decoded anew.
    other = encoded_rq([CTImageStorage, MRImageStorage] * 20, calling="OTHER", max_length=0)
    remembered = decode_associate_rq(other)
    assert type(remembered) is type(again)
    assert described(remembered) == reference(other)
    assert described(remembered)[1] == "OTHER"


def test_each_primitive_gets_its_own_context_objects() -> None:
    data = encoded_rq([CTImageStorage])
    decode_associate_rq(data)
    one = decode_associate_rq(data).to_primitive().presentation_context_definition_list[0]
    one.add_transfer_syntax("1.2.840.10008.1.2.4.50")
    one.result = 0
    two = decode_associate_rq(data).to_primitive().presentation_context_definition_list[0]
    assert [str(ts) for ts in two.transfer_syntax] == SYNTAXES
    assert two.result is None


def test_contexts_pynetdicom_warns_about_are_never_remembered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = encoded_rq(["1.2.840.10008.5.1.4.1.1.02"])  # a leading zero: non-conformant
    with caplog.at_level(logging.WARNING, logger="pynetdicom"):
        pdus = [decode_associate_rq(data) for _ in range(2)]
        for pdu in pdus:
            pdu.to_primitive()
    assert all(type(pdu) is A_ASSOCIATE_RQ for pdu in pdus)
    assert not associate._remembered
    assert described(pdus[1]) == reference(data)


@pytest.mark.parametrize("cut", [1, 5, 40])
def test_a_request_whose_items_overrun_its_length_is_pynetdicoms_to_refuse(cut: int) -> None:
    data = encoded_rq([CTImageStorage, MRImageStorage])
    broken = data[:2] + (len(data) - 6 - cut).to_bytes(4, "big") + data[6:-cut]
    decode_associate_rq(data)  # the contexts are known; the broken request is not theirs
    try:
        expected: Any = reference(broken)
    except Exception as err:  # noqa: BLE001 - whatever pynetdicom raises
        expected = type(err)
    try:
        got: Any = described(decode_associate_rq(broken))
    except Exception as err:  # noqa: BLE001
        got = type(err)
    assert got == expected


def encoded_ac(results: list[tuple[int, int, str]]) -> bytes:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = "1.2.840.10008.3.1.1.1"
    primitive.calling_ae_title = "SCU"
    primitive.called_ae_title = "STORESCP"
    primitive.result = 0
    for context_id, result, syntax in results:
        context = PresentationContext()
        context.context_id = context_id
        context.result = result
        context.add_transfer_syntax(syntax)
        primitive.presentation_context_definition_results_list.append(context)
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    primitive.user_information = [length]
    return bytes(A_ASSOCIATE_AC(primitive).encode())


def test_remembered_answers_encode_as_pynetdicom_encodes_them() -> None:
    results = [(2 * n + 1, n % 4, SYNTAXES[n % 3]) for n in range(40)]
    before = encoded_ac(results)
    shuffled = encoded_ac(results[::-1])
    memoize_context_answers()
    memoize_context_answers()  # idempotent
    assert getattr(PresentationContextItemAC.encode, "memoized", False)
    assert encoded_ac(results) == encoded_ac(results) == before
    assert encoded_ac(results[::-1]) == shuffled
    # The same IDs with other results and syntaxes are other items.
    other = [(context_id, 3 - result, SYNTAXES[(n + 1) % 3])
             for n, (context_id, result, _) in enumerate(results)]  # fmt: skip
    assert encoded_ac(other) != before
    decoded = A_ASSOCIATE_AC()
    decoded.decode(encoded_ac(other))
    assert [(cx.context_id, cx.result, str(cx.transfer_syntax[0]))
            for cx in decoded.to_primitive().presentation_context_definition_results_list
            ] == other  # fmt: skip
