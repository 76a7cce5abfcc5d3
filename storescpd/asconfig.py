"""DCMTK association negotiation profiles (``-xf FILE PROFILE``, the ``asconfig`` format).

Reproduces how DCMTK 3.6.7 reads such a file (SPEC §14): the lexical rules of its generic
configuration-file reader, the five supersections, and the exact error texts, because a site's
scripts and logs see those texts. :func:`parse` is pure (stdlib only, no I/O); :func:`load` only
adds reading the file. Names follow DCMTK: lists are identified by upper-cased keys, and symbolic
UIDs use DCMTK's names (``CTImageStorage``, ``JPEGBaseline``), not pydicom's keywords.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from storescpd import syntaxes as ts
from storescpd.cfgfile import Section, Tree, read_tree
from storescpd.naming import SOP_CLASSES

MAX_CONTEXTS = 128
"""DCMTK 3.6.7 refuses a presentation-context list with more entries (lifted after 3.6.7)."""

MAX_EXTENDED_CHARS = 2047
"""Longest hex text after the backslash that DCMTK accepts (so at most 1023 bytes, although its
message speaks of 1024)."""

ILLEGAL_CALL = "Illegal call, perhaps wrong parameters"
"""DCMTK's text when an entry leaves a required part empty (e.g. ``\\Uncompressed``)."""

# DCMTK's symbolic names for the transfer syntaxes (dcmdata's UID name table).
TRANSFER_SYNTAX_NAMES: Mapping[str, str] = {
    "LittleEndianImplicit": ts.LITTLE_ENDIAN_IMPLICIT,
    "LittleEndianExplicit": ts.LITTLE_ENDIAN_EXPLICIT,
    "BigEndianExplicit": ts.BIG_ENDIAN_EXPLICIT,
    "DeflatedLittleEndianExplicit": ts.DEFLATED_LITTLE_ENDIAN_EXPLICIT,
    "JPEGBaseline": ts.JPEG_BASELINE,
    "JPEGExtended:Process2+4": ts.JPEG_EXTENDED,
    "JPEGLossless:Non-hierarchical-1stOrderPrediction": ts.JPEG_LOSSLESS_SV1,
    "JPEGLSLossless": ts.JPEG_LS_LOSSLESS,
    "JPEGLSLossy": ts.JPEG_LS_NEAR_LOSSLESS,
    "JPEG2000LosslessOnly": ts.JPEG_2000_LOSSLESS,
    "JPEG2000": ts.JPEG_2000,
    "MPEG2MainProfile@MainLevel": ts.MPEG2_MAIN_MAIN,
    "MPEG2MainProfile@HighLevel": ts.MPEG2_MAIN_HIGH,
    "MPEG4HighProfile/Level4.1": ts.MPEG4_HP41,
    "MPEG4BDcompatibleHighProfile/Level4.1": ts.MPEG4_HP41_BD,
    "MPEG4HighProfile/Level4.2For2DVideo": ts.MPEG4_HP42_2D,
    "MPEG4HighProfile/Level4.2For3DVideo": ts.MPEG4_HP42_3D,
    "MPEG4StereoHighProfile/Level4.2": ts.MPEG4_HP42_STEREO,
    "HEVCMainProfile/Level5.1": ts.HEVC_MAIN,
    "HEVCMain10Profile/Level5.1": ts.HEVC_MAIN10,
    "RLELossless": ts.RLE_LOSSLESS,
}
SYMBOLIC_UIDS: Mapping[str, str] = {
    "VerificationSOPClass": ts.VERIFICATION,
    **TRANSFER_SYNTAX_NAMES,
    **{sop.name: sop.uid for sop in SOP_CLASSES},
}
_LOCAL_EXPLICIT, _OPPOSITE_EXPLICIT = (
    (ts.LITTLE_ENDIAN_EXPLICIT, ts.BIG_ENDIAN_EXPLICIT)
    if sys.byteorder == "little"
    else (ts.BIG_ENDIAN_EXPLICIT, ts.LITTLE_ENDIAN_EXPLICIT)
)


class AsconfigError(Exception):
    """A file DCMTK would not load; the message is DCMTK's text."""

    @property
    def message(self) -> str:
        return str(self.args[0])


class ProfileError(AsconfigError):
    """The file is fine but the profile named on the command line is unknown or unusable."""


class Role(enum.Enum):
    """The acceptor role a ``[[SCPSCURoleSelection]]`` entry configures."""

    SCU = "SCU"
    SCP = "SCP"
    BOTH = "BOTH"


@dataclass(frozen=True, slots=True)
class Context:
    """One entry of a profile's context list; ``transfer_syntaxes`` is the preference order."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Profile:
    """A profile resolved for use: its contexts, role selection and extended negotiation."""

    name: str
    contexts: tuple[Context, ...]
    roles: Mapping[str, Role] = field(default_factory=dict)
    extended: Mapping[str, bytes] = field(default_factory=dict)

    def valid_for_scp(self) -> bool:
        """DCMTK's SCP check: no SOP class twice (an acceptor has one TS list per class)."""
        classes = [cx.abstract_syntax for cx in self.contexts]
        return len(classes) == len(set(classes))


@dataclass
class Config:
    """Everything a file defines, keyed as DCMTK keys it (upper-case names)."""

    transfer_syntaxes: dict[str, list[str]] = field(default_factory=dict)
    contexts: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    roles: dict[str, dict[str, Role]] = field(default_factory=dict)
    extended: dict[str, dict[str, bytes]] = field(default_factory=dict)
    profiles: dict[str, tuple[str, str | None, str | None]] = field(default_factory=dict)

    def profile(self, name: str) -> Profile:
        """The profile ``name`` (already normalised) with its TS lists resolved."""
        contexts, roles, extended = self.profiles[name]
        return Profile(
            name,
            tuple(
                Context(uid, tuple(self.transfer_syntaxes[key]))
                for uid, key in self.contexts[contexts]
            ),
            self.roles[roles] if roles is not None else {},
            self.extended[extended] if extended is not None else {},
        )


def normalise_reference(text: str) -> str:
    """How DCMTK turns a reference (``-xf`` profile argument, list names) into a key."""
    return _upper_ascii("".join(c for c in text if not _isspace(c)))


def load(path: str) -> Config:
    """Read and parse ``path``; errors carry DCMTK's text."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        raise AsconfigError(f"unable to open configuration file: {path}") from None
    return parse(data.decode("latin-1"))


def parse(text: str) -> Config:
    """Parse the text of a configuration file (one character per byte, e.g. latin-1)."""
    tree = read_tree(text)
    cfg = Config()
    _parse_transfer_syntaxes(cfg, tree)
    _parse_contexts(cfg, tree)
    _parse_roles(cfg, tree)
    _parse_extended(cfg, tree)
    _parse_profiles(cfg, tree)
    return cfg


def scp_profile(cfg: Config, argument: str) -> Profile:
    """The profile named on storescp's command line, checked as storescp checks it.

    Raises :class:`AsconfigError` with the text storescp logs after ``F: ``.
    """
    name = normalise_reference(argument)
    if name not in cfg.profiles:
        raise ProfileError(f"unknown configuration profile name: {name}")
    profile = cfg.profile(name)
    if not profile.valid_for_scp():
        raise ProfileError(
            f"profile '{name}' is not valid for SCP use, duplicate abstract syntaxes found"
        )
    return profile


def fatal_message(err: AsconfigError) -> str:
    """storescp's fatal log text for an error from :func:`load` or :func:`scp_profile`."""
    if isinstance(err, ProfileError):
        return err.message
    return f"cannot read config file: {err.message}"


# --- the five supersections --------------------------------------------------------------


def _supersection(tree: Tree, name: str, *, required: bool) -> list[Section] | None:
    for key, sections in tree:
        if key == name:
            return sections
    if required:
        raise AsconfigError(f"cannot find section [[{name}]] in config file")
    return None


def _numbered(entries: list[tuple[str, str]], prefix: str) -> Iterator[tuple[str, str]]:
    """``PREFIX1``, ``PREFIX2`` … up to the first missing number (first entry of a key wins)."""
    values: dict[str, str] = {}
    for key, value in entries:
        values.setdefault(key, value)
    n = 1
    while f"{prefix}{n}" in values:
        yield f"{prefix}{n}", values[f"{prefix}{n}"]
        n += 1


def _parse_transfer_syntaxes(cfg: Config, tree: Tree) -> None:
    for name, entries in _supersection(tree, "TRANSFERSYNTAXES", required=True) or []:
        for _, value in _numbered(entries, "TRANSFERSYNTAX"):
            uid = resolve_uid(value)
            if uid is None:
                raise AsconfigError(f"not a valid transfer syntax UID: {value}")
            cfg.transfer_syntaxes.setdefault(name, []).append(uid)


def _parse_contexts(cfg: Config, tree: Tree) -> None:
    for name, entries in _supersection(tree, "PRESENTATIONCONTEXTS", required=True) or []:
        for entry, value in _numbered(entries, "PRESENTATIONCONTEXT"):
            sop_class, ts_key = _split(value, entry)
            ts_key = normalise_reference(ts_key)
            if ts_key not in cfg.transfer_syntaxes:
                raise AsconfigError(f"transfer syntax key undefined: {ts_key}")
            if not name or not sop_class:
                raise AsconfigError(ILLEGAL_CALL)
            uid = resolve_uid(sop_class)
            if uid is None:
                raise AsconfigError(f"not a valid abstract syntax UID: {sop_class}")
            contexts = cfg.contexts.setdefault(name, [])
            if len(contexts) >= MAX_CONTEXTS:
                raise AsconfigError(
                    f"presentation context list too long (> {MAX_CONTEXTS} entries): {name}"
                )
            contexts.append((uid, ts_key))


def _parse_roles(cfg: Config, tree: Tree) -> None:
    for name, entries in _supersection(tree, "SCPSCUROLESELECTION", required=False) or []:
        for entry, value in _numbered(entries, "ROLE"):
            sop_class, keyword = _split(value, entry)
            try:
                role = Role(_upper_ascii(keyword))
            except ValueError:
                raise AsconfigError(
                    f"syntax error: unknown role key in entry {entry} in config file"
                ) from None
            uid = resolve_uid(sop_class)
            if uid is None:
                raise AsconfigError(f"not a valid abstract syntax UID: {sop_class}")
            roles = cfg.roles.setdefault(name, {})
            if uid in roles:
                raise AsconfigError(
                    f"role selection defined twice for abstract syntax UID: {sop_class}"
                )
            roles[uid] = role


def _parse_extended(cfg: Config, tree: Tree) -> None:
    for name, entries in _supersection(tree, "EXTENDEDNEGOTIATION", required=False) or []:
        for entry, value in _numbered(entries, "EXTENDEDNEGOTIATION"):
            sop_class, hex_text = _split(value, entry)
            if len(hex_text) > MAX_EXTENDED_CHARS:
                raise AsconfigError(
                    "extended negotiation data too long, cannot handle > 1024 bytes in entry "
                    f"{entry} in config file"
                )
            data = _hex_bytes(hex_text)
            if data is None:
                raise AsconfigError(
                    f"parse error in extended negotiation data in entry {entry} in config file"
                )
            if not data:
                raise AsconfigError(ILLEGAL_CALL)
            uid = resolve_uid(sop_class)
            if uid is None:
                raise AsconfigError(f"not a valid abstract syntax UID: {sop_class}")
            items = cfg.extended.setdefault(name, {})
            if uid in items:
                raise AsconfigError(
                    f"extended negotiation defined twice for abstract syntax UID: {sop_class}"
                )
            items[uid] = data


def _parse_profiles(cfg: Config, tree: Tree) -> None:
    for name, entries in _supersection(tree, "PROFILES", required=True) or []:
        values: dict[str, str] = {}
        for key, value in entries:
            values.setdefault(key, value)
        if "PRESENTATIONCONTEXTS" not in values:
            raise AsconfigError(f"no PRESENTATIONCONTEXTS  entry in section {name} in config file")
        contexts = normalise_reference(values["PRESENTATIONCONTEXTS"])
        roles = _reference(values.get("SCPSCUROLESELECTION"))
        extended = _reference(values.get("EXTENDEDNEGOTIATION"))
        if contexts not in cfg.contexts:
            raise AsconfigError(f"presentation context key undefined: {contexts}")
        listed = {uid for uid, _ in cfg.contexts[contexts]}
        # DCMTK's message names the role list for extended negotiation too.
        for ref, lists, kind in ((roles, cfg.roles, "role selection"),
                                 (extended, cfg.extended, "extended negotiation")):  # fmt: skip
            if ref is None:
                continue
            if ref not in lists:
                raise AsconfigError(f"{kind} key undefined: {ref}")
            for uid in lists[ref]:
                if uid not in listed:
                    raise AsconfigError(
                        f"abstract syntax defined in role selection list '{ref}' but not in "
                        f"presentation context list '{contexts}': {uid}"
                    )
        if name in cfg.profiles:
            # sic: DCMTK names the context list, not the profile
            raise AsconfigError(f"two profiles defined for key: {contexts}")
        cfg.profiles[name] = (contexts, roles, extended)


def resolve_uid(text: str) -> str | None:
    """A UID from a numeric UID, a DCMTK symbolic name (``=`` optional) or the endian aliases;
    ``None`` when the result is not digits and dots."""
    uid = text
    if text and not "0" <= text[0] <= "9":
        name = text[1:] if text[0] == "=" else text
        if name == "LocalEndianExplicit":
            uid = _LOCAL_EXPLICIT
        elif name == "OppositeEndianExplicit":
            uid = _OPPOSITE_EXPLICIT
        else:
            uid = SYMBOLIC_UIDS.get(name, text)
    if uid and all(c == "." or "0" <= c <= "9" for c in uid):
        return uid
    return None


def _reference(value: str | None) -> str | None:
    return None if value is None else normalise_reference(value)


def _split(value: str, entry: str) -> tuple[str, str]:
    sop_class, sep, rest = value.partition("\\")
    if not sep:
        raise AsconfigError(f"syntax error: missing '\\' in entry {entry} in config file")
    return sop_class, rest


def _hex_bytes(text: str) -> bytes | None:
    if len(text) % 2 or any(c not in "0123456789abcdefABCDEF" for c in text):
        return None
    return bytes.fromhex(text)


def _upper_ascii(text: str) -> str:
    return "".join(c.upper() if "a" <= c <= "z" else c for c in text)


def _isspace(c: str) -> bool:
    return c in " \t\n\v\f\r"
