"""DICOM TLS security profiles and cipher-suite names (SPEC §10): pure rules, stdlib only.

No I/O and no ``ssl`` contexts: :mod:`storescpd.tls` applies these rules with OpenSSL.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Collection
from dataclasses import dataclass

from storescpd.options import TlsOptions

_BCP195 = (  # the server's preference order, as DCMTK storescp offers them
    "DHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "DHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
)
_3DES = "DES-CBC3-SHA"  # dropped silently where OpenSSL no longer builds it (Debian 12)


@dataclass(frozen=True, slots=True)
class Profile:
    """A DICOM security profile: protocol versions and TLS ≤ 1.2 suites (OpenSSL names)."""

    title: str  # as DCMTK names it in its messages
    minimum: ssl.TLSVersion
    maximum: ssl.TLSVersion
    suites: tuple[str, ...]
    encrypted: bool = True  # NULL suites are refused with +cs
    extra_suites: bool = True  # +cs is allowed


PROFILES: dict[str, Profile] = {
    "bcp195-nd": Profile("Non-downgrading BCP 195 TLS Profile", ssl.TLSVersion.TLSv1_2,
                         ssl.TLSVersion.TLSv1_3, _BCP195),
    "bcp195": Profile("BCP 195 TLS Profile", ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_3,
                      (*_BCP195, "AES128-SHA", _3DES)),
    "bcp195-ex": Profile("Extended BCP 195 TLS Profile", ssl.TLSVersion.TLSv1_2,
                         ssl.TLSVersion.TLSv1_2,
                         ("ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-AES128-GCM-SHA256",
                          *_BCP195), extra_suites=False),
    "aes": Profile("AES TLS Secure Transport Connection Profile", ssl.TLSVersion.TLSv1,
                   ssl.TLSVersion.TLSv1_2, ("AES128-SHA", _3DES)),
    "null": Profile("Authenticated unencrypted communication", ssl.TLSVersion.TLSv1,
                    ssl.TLSVersion.TLSv1_2, ("NULL-SHA",), encrypted=False),
}  # fmt: skip

SUITES: tuple[tuple[str, str], ...] = (
    # (TLS name as +cc prints it and +cs takes it, OpenSSL name), in IANA code order
    ("TLS_RSA_WITH_NULL_SHA", "NULL-SHA"),
    ("TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"),
    ("TLS_RSA_WITH_CAMELLIA_128_CBC_SHA", "CAMELLIA128-SHA"),
    ("TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"),
    ("TLS_RSA_WITH_CAMELLIA_256_CBC_SHA", "CAMELLIA256-SHA"),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"),
    ("TLS_RSA_WITH_AES_256_CBC_SHA256", "AES256-SHA256"),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
    ("TLS_DHE_DSS_WITH_AES_128_CBC_SHA", "DHE-DSS-AES128-SHA"),
    ("TLS_DHE_DSS_WITH_CAMELLIA_128_CBC_SHA", "DHE-DSS-CAMELLIA128-SHA"),
    ("TLS_DHE_RSA_WITH_AES_128_CBC_SHA", "DHE-RSA-AES128-SHA"),
    ("TLS_DHE_RSA_WITH_CAMELLIA_128_CBC_SHA", "DHE-RSA-CAMELLIA128-SHA"),
    ("TLS_DHE_DSS_WITH_AES_128_CBC_SHA256", "DHE-DSS-AES128-SHA256"),
    ("TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", "DHE-RSA-AES128-SHA256"),
    ("TLS_DHE_DSS_WITH_AES_128_GCM_SHA256", "DHE-DSS-AES128-GCM-SHA256"),
    ("TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", "DHE-RSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", "ECDHE-ECDSA-AES256-SHA384"),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", "ECDHE-RSA-AES256-SHA384"),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"),
    ("TLS_DHE_DSS_WITH_AES_256_CBC_SHA", "DHE-DSS-AES256-SHA"),
    ("TLS_DHE_RSA_WITH_AES_256_CBC_SHA", "DHE-RSA-AES256-SHA"),
    ("TLS_DHE_DSS_WITH_CAMELLIA_256_CBC_SHA", "DHE-DSS-CAMELLIA256-SHA"),
    ("TLS_DHE_RSA_WITH_CAMELLIA_256_CBC_SHA", "DHE-RSA-CAMELLIA256-SHA"),
    ("TLS_DHE_DSS_WITH_AES_256_CBC_SHA256", "DHE-DSS-AES256-SHA256"),
    ("TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", "DHE-RSA-AES256-SHA256"),
    ("TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "DHE-RSA-CHACHA20-POLY1305"),
    ("TLS_DHE_DSS_WITH_AES_256_GCM_SHA384", "DHE-DSS-AES256-GCM-SHA384"),
    ("TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", "DHE-RSA-AES256-GCM-SHA384"),
)
_OPENSSL_NAME = dict(SUITES)
MIN_DH_BITS = 2048
FFDHE2048 = """\
-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""
"""The RFC 7919 ``ffdhe2048`` group: the DHE parameters used unless ``+dp`` names others
(Python's ``ssl`` has no automatic DH, and DCMTK's storescp offers DHE suites first)."""


class TlsError(Exception):
    """TLS material that cannot be used; the text is the one ``F:`` line storescpd logs."""


def cipher_string(tls: TlsOptions, available: Collection[str]) -> str:
    """The OpenSSL cipher list for the profile plus ``+cs`` suites (TLS ≤ 1.2 only);
    ``available`` are the TLS names the running OpenSSL can negotiate.

    Raises
    ------
    TlsError
        For a suite name OpenSSL does not know, or an unencrypted one under an encrypting
        profile.
    """
    profile = PROFILES[tls.profile]
    suites = list(profile.suites)
    for name in tls.ciphers:
        openssl = _OPENSSL_NAME.get(name)
        if openssl is None or name not in available:
            raise TlsError(f"ciphersuite '{name}' is unknown (see --list-ciphers)")
        if "NULL" in openssl and profile.encrypted:
            raise TlsError(
                f"Unencrypted ciphersuite '{name}' not permitted with security profile "
                f"'{profile.title}'"
            )
        if openssl not in suites:
            suites.append(openssl)
    return ":".join(suites) + ":@SECLEVEL=0"


def dh_prime_bits(text: str) -> int | None:
    """The size of the prime in PEM ``DH PARAMETERS`` (``None`` if they cannot be read): the
    DER is ``SEQUENCE { INTEGER p, INTEGER g, ... }``."""
    try:
        body = text.split("-----BEGIN DH PARAMETERS-----", 1)[1].split("-----END", 1)[0]
        der = base64.b64decode("".join(body.split()), validate=True)
    except (IndexError, ValueError):
        return None
    offset = _der_header(der, 0, 0x30)
    if offset is None:
        return None
    start = _der_header(der, offset, 0x02)
    if start is None:
        return None
    length = _der_length(der, offset + 1)
    if length is None:
        return None
    prime = der[start : start + length[0]].lstrip(b"\0")
    return int.from_bytes(prime, "big").bit_length() if prime else None


def _der_header(der: bytes, offset: int, tag: int) -> int | None:
    """Where the contents of the element with ``tag`` at ``offset`` start."""
    if offset >= len(der) or der[offset] != tag:
        return None
    length = _der_length(der, offset + 1)
    return None if length is None else offset + 1 + length[1]


def _der_length(der: bytes, offset: int) -> tuple[int, int] | None:
    """(content length, bytes the length field takes) at ``offset``."""
    if offset >= len(der):
        return None
    first = der[offset]
    if first < 0x80:
        return first, 1
    count = first & 0x7F
    if count == 0 or offset + 1 + count > len(der):
        return None
    return int.from_bytes(der[offset + 1 : offset + 1 + count], "big"), 1 + count
