"""Presentation contexts the acceptor supports, built once per process from the options.

DCMTK's default: Verification plus the 186 storage SOP classes of SPEC Appendix A, each with
the transfer-syntax preference list of the ``+x`` option in force (Appendix B); the SCP's order
wins. ``--promiscuous`` adds, per association, any proposed SOP class that has no name.

With ``-xf`` the profile replaces all of this (SPEC §4.6): its classes only, each with its own
transfer-syntax list as the preference order, and its role selection and extended negotiation
applied as DCMTK applies them; :mod:`storescpd.worker.profiles` does that negotiation.
"""

from __future__ import annotations

import copy
import functools
import importlib
import re
from collections.abc import Callable, Iterable
from typing import Any

from pydicom.uid import UID
from pynetdicom import _config as _pynetdicom_config
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.sop_class import register_uid, uid_to_service_class

from storescpd.naming import DEFAULT_STORAGE_CLASSES
from storescpd.syntaxes import LITTLE_ENDIAN_IMPLICIT, VERIFICATION, preference_list


class SharedContexts(list[PresentationContext]):
    """A context list that pynetdicom's per-association ``deepcopy`` copies shallowly.

    Acceptor negotiation only reads these objects, and copying 187 contexts deeply costs
    several milliseconds per association (PYNETDICOM.md §4.4).
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> list[PresentationContext]:
        return copy.copy(list(self))


def supported_contexts(prefer: str, *, echo: bool = True) -> SharedContexts:
    """Verification (unless ``--no-echo``) and DCMTK's default storage classes."""
    syntaxes = list(preference_list(prefer))
    classes = ([VERIFICATION] if echo else []) + list(DEFAULT_STORAGE_CLASSES)
    register_storage_classes(DEFAULT_STORAGE_CLASSES)
    return SharedContexts(build_context(uid, syntaxes) for uid in classes)


def verification_only() -> SharedContexts:
    """dcmrecv without ``-xf``: Verification in Implicit VR Little Endian, nothing else
    (SPEC §12.1)."""
    return SharedContexts([build_context(VERIFICATION, [LITTLE_ENDIAN_IMPLICIT])])


def register_storage_classes(uids: Iterable[str]) -> None:
    """Make pynetdicom dispatch C-STORE for storage classes it does not know itself.

    Without this, a C-STORE of such a class makes pynetdicom abort the association.
    """
    for uid in uids:
        if uid_to_service_class(uid) is not StorageServiceClass:
            register_uid(uid, _keyword(uid), StorageServiceClass)


def is_unnamed(uid: str) -> bool:
    """True for a SOP class UID without a name in the dictionary (``--promiscuous`` accepts it)."""
    return UID(uid).name == uid


def promiscuous_additions(
    proposed: Iterable[str], supported: Iterable[PresentationContext], prefer: str
) -> list[PresentationContext]:
    """Contexts to add for proposed abstract syntaxes that are unnamed and not yet supported."""
    known = {str(cx.abstract_syntax) for cx in supported}
    wanted = sorted({uid for uid in proposed if uid not in known and is_unnamed(uid)})
    register_storage_classes(wanted)
    syntaxes = list(preference_list(prefer))
    return [build_context(uid, syntaxes) for uid in wanted]


def memoize_uid_validation() -> None:
    """Remember pydicom's ``UID.is_valid`` verdicts, process-wide.

    pynetdicom checks every UID of an A-ASSOCIATE-RQ with a regular expression when it builds
    the request primitive (a warning for non-conformant ones), several hundred per association
    with DCMTK's storescu, and the same few hundred UIDs come back in every association. The
    verdict depends on the string alone, so a bounded cache of it changes nothing but the cost.
    """
    current = UID.__dict__["is_valid"]
    if getattr(current.fget, "memoized", False):
        return
    check: Callable[[str], bool] = functools.lru_cache(maxsize=4096)(current.fget)

    def is_valid(self: UID) -> bool:
        return check(str(self))

    is_valid.memoized = True  # type: ignore[attr-defined]
    UID.is_valid = property(is_valid, doc=current.__doc__)  # type: ignore[method-assign,assignment]


UID_MEMO_LIMIT = 4096
"""UIDs :func:`memoize_uid_conversion` remembers per process: DCMTK's storescu brings about 140
distinct ones to each association; a peer inventing new ones only stops the remembering."""

_UID_USERS = ("ae", "dimse_primitives", "pdu_items", "pdu_primitives", "presentation", "utils")
"""pynetdicom's modules that call ``set_uid`` by their own global name."""


def memoize_uid_conversion() -> None:
    """Have pynetdicom's ``set_uid`` hand back the UID object it made before for the same
    value, process-wide, once that value proved non-empty, conformant and accepted.

    Each DCMTK association costs several hundred ``set_uid`` calls (decoding the A-ASSOCIATE-RQ,
    building its primitive, negotiating, encoding the A-ASSOCIATE-AC), each making a new pydicom
    ``UID`` from the same strings: 0.65 ms of the 2.85 ms that decoding, negotiating and
    answering such a request took (see also :mod:`storescpd.worker.associate`). A remembered
    value is one for which the call had nothing to say (no error, no warning), so remembering
    changes only the cost; UIDs are immutable strings, shared as pynetdicom itself shares them.
    A value carrying a private transfer syntax encoding is never remembered.
    """
    import pynetdicom.utils

    original = pynetdicom.utils.set_uid
    if getattr(original, "memoized", False):
        return
    known: dict[str | bytes, UID] = {}

    def set_uid(
        value: Any,
        name: str,
        allow_empty: bool = True,
        allow_none: bool = True,
        validate: bool = True,
    ) -> UID | None:
        kind = type(value)
        plain = kind is str or kind is bytes or (
            kind is UID and not hasattr(value, "_PRIVATE_TS_ENCODING")
        )
        if plain:
            uid = known.get(value)
            if uid is not None:
                return uid
        result: UID | None = original(value, name, allow_empty, allow_none, validate)
        if (
            plain
            and result
            and len(known) < UID_MEMO_LIMIT
            and not hasattr(result, "_PRIVATE_TS_ENCODING")
            and result.is_valid
            and _pynetdicom_config.VALIDATORS["UI"](result)[0]
        ):
            known[value] = result
        return result

    set_uid.memoized = True  # type: ignore[attr-defined]
    for module in _UID_USERS:
        target = importlib.import_module(f"pynetdicom.{module}")
        if getattr(target, "set_uid", None) is original:
            target.set_uid = set_uid  # type: ignore[attr-defined]


def _keyword(uid: str) -> str:
    return "StorescpdStorage_" + re.sub(r"[^0-9]", "_", uid)
