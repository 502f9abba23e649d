"""JATOS API token format: generation, checksum and the stored hash (docs/jatos-api.md §2.1).

Owns the token string format only. It must not store tokens (the server keeps SHA-256
hashes) and must never log or print one.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string

TOKEN_PREFIX = "jap_"  # noqa: S105 - a format prefix, not a secret
_RANDOM_LEN = 31
_CHECKSUM_LEN = 6
_ALPHABET = string.ascii_letters + string.digits
_TOKEN_RE = re.compile(r"jap_[A-Za-z0-9]{31}[0-9a-f]{6}")


def token_checksum(random_part: str) -> str:
    """First 6 lower-case hex chars of MD5 over the UTF-8 bytes (`HashUtils.getChecksum`)."""
    digest = hashlib.md5(random_part.encode("utf-8"), usedforsecurity=False).hexdigest()
    return digest[:_CHECKSUM_LEN]


def make_token() -> str:
    """A fresh random token in the real format: `jap_` + 31 x [A-Za-z0-9] + 6-char checksum."""
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_LEN))
    return TOKEN_PREFIX + random_part + token_checksum(random_part)


def token_checksum_ok(token: str) -> bool:
    """True if `token` has the exact JATOS format and its checksum matches.

    Stricter than the server (which only compares the checksum, docs/jatos-api.md §2.2):
    useful to reject a mistyped token before any request is made.
    """
    if not _TOKEN_RE.fullmatch(token):
        return False
    random_part = token[len(TOKEN_PREFIX) : len(TOKEN_PREFIX) + _RANDOM_LEN]
    return token[-_CHECKSUM_LEN:] == token_checksum(random_part)


def token_hash(token: str) -> str:
    """SHA-256 hex of the ISO-8859-1 bytes of the full token, as JATOS stores it
    (docs/jatos-api.md §2.1).

    Java's `getBytes(ISO_8859_1)` turns unmappable characters into `?`; so does
    `errors="replace"` here.
    """
    return hashlib.sha256(token.encode("latin-1", errors="replace")).hexdigest()
