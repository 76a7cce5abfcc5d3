"""Negotiation with an ``-xf`` profile, as DCMTK's storescp does it (SPEC §4.6).

pynetdicom's acceptor negotiation already takes the acceptor's transfer-syntax order, but its
role-selection table differs from DCMTK's (it refuses contexts DCMTK accepts, and the other way
round) and it only answers extended negotiation it was asked for, whereas DCMTK returns every
configured item for an accepted class. So for a profile's context list, the one function
pynetdicom's ACSE calls for acceptor negotiation is routed here; every other context list still
goes to pynetdicom's own.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import pynetdicom.acse
from pynetdicom.pdu_items import SCP_SCU_RoleSelectionSubItem
from pynetdicom.pdu_primitives import (
    SCP_SCU_RoleSelectionNegotiation,
    SOPClassExtendedNegotiation,
)
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.service_class import ServiceClass
from pynetdicom.sop_class import uid_to_service_class

from storescpd.asconfig import Profile, Role
from storescpd.worker.contexts import SharedContexts, register_storage_classes

log = logging.getLogger(__name__)

ACCEPTED, NO_REASON, ABSTRACT_SYNTAX_NOT_SUPPORTED, TRANSFER_SYNTAXES_NOT_SUPPORTED = 0, 2, 3, 4

Roles = tuple[bool, bool]  # (SCU, SCP) as in a role-selection item
_ROLE_FLAGS: dict[Role, Roles] = {
    Role.SCU: (True, False),
    Role.SCP: (False, True),
    Role.BOTH: (True, True),
}


class ProfileContexts(SharedContexts):
    """The acceptor's contexts built from a profile, carrying the profile for negotiation."""

    def __init__(self, profile: Profile) -> None:
        super().__init__(
            build_context(cx.abstract_syntax, list(cx.transfer_syntaxes)) for cx in profile.contexts
        )
        self.profile = profile

    def __deepcopy__(self, memo: dict[int, Any]) -> ProfileContexts:
        return copy.copy(self)


def profile_contexts(profile: Profile) -> ProfileContexts:
    """The profile's contexts; unknown classes are made storage classes for pynetdicom, as
    storescp serves every C-STORE on an accepted context."""
    unknown = [cx.abstract_syntax for cx in profile.contexts
               if uid_to_service_class(cx.abstract_syntax) is ServiceClass]  # fmt: skip
    register_storage_classes(unknown)
    _route_negotiation()
    return ProfileContexts(profile)


def negotiated_role(proposed: Roles | None, configured: Role | None) -> Roles | None:
    """DCMTK's outcome of a role proposal against the profile's role: ``None`` for the default
    roles (no item in the reply), or the (SCU, SCP) flags to return; (False, False) is DCMTK's
    "none" (the context stays accepted)."""
    if configured is None or proposed is None or proposed == (False, False):
        return None
    wanted = _ROLE_FLAGS[configured]
    return (proposed[0] and wanted[0], proposed[1] and wanted[1])


def negotiate(
    requested: Sequence[PresentationContext],
    supported: ProfileContexts,
    proposed_roles: dict[str, Roles],
) -> tuple[list[PresentationContext], list[Any]]:
    """Answer the requestor's contexts from the profile; returns the results and the items
    (role selection, then extended negotiation) for the A-ASSOCIATE-AC."""
    profile = supported.profile
    syntaxes = {str(cx.abstract_syntax): cx.transfer_syntax for cx in supported}
    results: list[PresentationContext] = []
    roles: dict[str, SCP_SCU_RoleSelectionNegotiation] = {}
    accepted: set[str] = set()
    for rq in requested:
        uid = str(rq.abstract_syntax)
        cx = PresentationContext()
        cx.context_id = rq.context_id
        cx.abstract_syntax = rq.abstract_syntax
        cx.transfer_syntax = [rq.transfer_syntax[0]]
        results.append(cx)
        if uid not in syntaxes:
            cx.result = ABSTRACT_SYNTAX_NOT_SUPPORTED
            continue
        chosen = next((ts for ts in syntaxes[uid] if ts in rq.transfer_syntax), None)
        if chosen is None:
            cx.result = TRANSFER_SYNTAXES_NOT_SUPPORTED
            continue
        configured = profile.roles.get(uid)
        if configured is Role.SCP and uid not in proposed_roles:
            # DCMTK: the profile insists on acting as SCU for this class, unasked.
            cx.result = NO_REASON
            continue
        cx.transfer_syntax = [chosen]
        cx.result = ACCEPTED
        accepted.add(uid)
        role = negotiated_role(proposed_roles.get(uid), configured)
        cx._as_scu, cx._as_scp = (False, True) if role is None else (role[1], role[0])
        if role is not None:
            if role == (False, False):
                log.warning("no role acceptable to both sides for %s: replying SCU=0, SCP=0",
                            uid)  # fmt: skip
            roles[uid] = _role_item(uid, role)
    items: list[Any] = list(roles.values())
    for uid, data in profile.extended.items():
        if uid in accepted:
            item = SOPClassExtendedNegotiation()
            item.sop_class_uid = uid
            item.service_class_application_information = data
            items.append(item)
    return results, items


def _encode_role(item: SCP_SCU_RoleSelectionNegotiation) -> SCP_SCU_RoleSelectionSubItem:
    """Encode a role reply that may refuse both roles: DCMTK sends such replies, pynetdicom's
    own encoder refuses them (and its ACSE only takes that exact item type)."""
    encoded = SCP_SCU_RoleSelectionSubItem()
    encoded.from_primitive(item)
    return encoded


def _role_item(uid: str, role: Roles) -> SCP_SCU_RoleSelectionNegotiation:
    item = SCP_SCU_RoleSelectionNegotiation()
    item.sop_class_uid = uid
    item.scu_role, item.scp_role = role
    if role == (False, False):
        item.from_primitive = functools.partial(_encode_role, item)  # type: ignore[method-assign]
    return item


_pynetdicom_negotiation: Callable[..., Any] | None = None


def _route_negotiation() -> None:
    """Make pynetdicom's ACSE use :func:`negotiate` for profile context lists (once)."""
    global _pynetdicom_negotiation
    if _pynetdicom_negotiation is not None:
        return
    _pynetdicom_negotiation = pynetdicom.acse.negotiate_as_acceptor

    def dispatch(requested: Any, supported: Any, roles: Any = None) -> Any:
        if isinstance(supported, ProfileContexts):
            return negotiate(requested, supported, roles or {})
        assert _pynetdicom_negotiation is not None
        return _pynetdicom_negotiation(requested, supported, roles)

    # pynetdicom offers no hook here; the name is looked up in its module at each call.
    pynetdicom.acse.negotiate_as_acceptor = dispatch  # type: ignore[assignment]
