"""A-ASSOCIATE-RQ decoding and -AC encoding that remember the presentation contexts of earlier
associations.

DCMTK's storescu proposes the same 128 presentation contexts (about 9 KB of items) in every
association, and pynetdicom turns them into PDU items, then into ``PresentationContext``
objects, anew each time: about 1.3 ms of CPU, a fifth of what an association of one C-STORE
costs a worker. :func:`decode_associate_rq` decodes a request as pynetdicom does; when its
presentation context items are byte for byte those of an earlier request whose contexts were
unremarkable (conformant UIDs, known or private transfer syntaxes: nothing pynetdicom would
log about), it decodes only the rest (AE titles, application context, user information) and
gives the request's primitive fresh copies of the contexts made then. Anything else, a request
pynetdicom cannot decode included, goes through pynetdicom's own decoding, as before.

The answer has the same shape: 128 presentation context items whose bytes depend only on their
ID, result and transfer syntax, each encoded (and measured, for the PDU's length) through
pynetdicom's generic field machinery, about 0.5 ms. :func:`memoize_context_answers` makes
pynetdicom's own item class remember each item's bytes by those three values.
"""

from __future__ import annotations

from pydicom.uid import UID
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_items import (
    AbstractSyntaxSubItem,
    PresentationContextItemAC,
    PresentationContextItemRQ,
    TransferSyntaxSubItem,
)
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext

from storescpd.worker.wire import item_at

CONTEXT_ITEM = 0x20
FIXED_FIELDS = 6 + 68  # PDU header, then protocol version … reserved (PS3.8 Table 9-11)
REMEMBERED_LIMIT = 32
"""Distinct context lists remembered per process; a peer inventing new ones only stops the
remembering."""

Template = tuple[tuple[int, UID, tuple[UID, ...]], ...]
_remembered: dict[bytes, Template] = {}
_learning = True


def learn_nothing() -> None:
    """This process serves one association (a ``--fork`` child): remembering its request's
    contexts would only cost it time."""
    global _learning
    _learning = False


class _RequestWithKnownContexts(A_ASSOCIATE_RQ):
    """An A-ASSOCIATE-RQ decoded without its presentation context items, which it adds to its
    primitive from a template."""

    template: Template = ()

    def to_primitive(self) -> A_ASSOCIATE:
        primitive = super().to_primitive()
        contexts = primitive.presentation_context_definition_list
        for context_id, abstract_syntax, transfer_syntaxes in self.template:
            context = PresentationContext()
            context.context_id = context_id
            context.abstract_syntax = abstract_syntax
            # What add_transfer_syntax() made of them the first time (checked, de-duplicated).
            context._transfer_syntax = list(transfer_syntaxes)
            contexts.append(context)
        return primitive


def decode_associate_rq(data: bytes) -> A_ASSOCIATE_RQ:
    """The A-ASSOCIATE-RQ PDU ``data`` (header included), decoded; raises what pynetdicom's
    decoding raises."""
    split = _split(data)
    if split is not None:
        contexts, rest = split
        template = _remembered.get(contexts)
        if template is not None:
            known = _RequestWithKnownContexts()
            known.decode(rest)
            known.template = template
            return known
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(data)
    if _learning and split is not None and len(_remembered) < REMEMBERED_LIMIT:
        template = _template_of(pdu)
        if template is not None:
            _remembered[split[0]] = template
    return pdu


def _split(data: bytes) -> tuple[bytes, bytes] | None:
    """(the presentation context items, the PDU without them), or None when its items do not
    add up to its length (pynetdicom's decoding then says what is wrong)."""
    if len(data) < FIXED_FIELDS or data[0] != 0x01:
        return None
    if int.from_bytes(data[2:6], "big") != len(data) - 6:
        return None
    contexts: list[bytes] = []
    others: list[bytes] = []
    pos = FIXED_FIELDS
    while pos < len(data):
        item = item_at(data, pos, len(data))
        if isinstance(item, str):
            return None
        item_type, _, end = item
        (contexts if item_type == CONTEXT_ITEM else others).append(data[pos:end])
        pos = end
    if not contexts:
        return None
    rest = b"".join(others)
    header = data[:2] + (FIXED_FIELDS - 6 + len(rest)).to_bytes(4, "big")
    return b"".join(contexts), header + data[6:FIXED_FIELDS] + rest


def _template_of(pdu: A_ASSOCIATE_RQ) -> Template | None:
    """The request's contexts as a template, if nothing about them was remarkable."""
    template = []
    for item in pdu.variable_items:
        if not isinstance(item, PresentationContextItemRQ):
            continue
        context = item.to_primitive()
        abstract = context.abstract_syntax
        syntaxes = tuple(context.transfer_syntax)
        if context.context_id is None or abstract is None or not abstract.is_valid:
            return None
        kinds = [type(sub) for sub in item.abstract_transfer_syntax_sub_items]
        if kinds.count(AbstractSyntaxSubItem) != 1 or len(syntaxes) != len(kinds) - 1:
            return None  # a second abstract syntax, a repeated, empty or odd sub-item
        if not all(ts.is_valid and (ts.is_private or ts.is_transfer_syntax) for ts in syntaxes):
            return None
        template.append((context.context_id, abstract, syntaxes))
    return tuple(template)


ANSWER_LIMIT = 4096
"""Encoded presentation context (AC) items remembered per process (a few dozen bytes each)."""


def memoize_context_answers() -> None:
    """Have pynetdicom's ``PresentationContextItemAC`` remember its encoding, process-wide, by
    (context ID, result, transfer syntax): the fields it encodes. Idempotent."""
    cls = PresentationContextItemAC
    if getattr(cls.encode, "memoized", False):
        return
    encode_item = cls.encode
    known: dict[tuple[int, int, UID], bytes] = {}

    def key_of(item: PresentationContextItemAC) -> tuple[int, int, UID] | None:
        subs = item.transfer_syntax_sub_item
        context_id, result = item.presentation_context_id, item.result_reason
        if (
            len(subs) != 1
            or type(subs[0]) is not TransferSyntaxSubItem
            or type(context_id) is not int
            or type(result) is not int
        ):
            return None
        name = subs[0].transfer_syntax_name
        return (context_id, result, name) if isinstance(name, UID) else None

    def encode(self: PresentationContextItemAC) -> bytes:
        key = key_of(self)
        if key is None:
            return encode_item(self)
        encoded = known.get(key)
        if encoded is None:
            encoded = encode_item(self)
            if len(known) < ANSWER_LIMIT:
                known[key] = encoded
        return encoded

    def length(self: PresentationContextItemAC) -> int:
        key = key_of(self)
        encoded = known.get(key) if key is not None else None
        return len(encoded) if encoded is not None else 4 + self.item_length

    encode.memoized = True  # type: ignore[attr-defined]
    cls.encode = encode  # type: ignore[method-assign,assignment]
    cls.__len__ = length  # type: ignore[method-assign,assignment]
