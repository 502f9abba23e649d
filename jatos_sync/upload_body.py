"""What an asset upload sends: exactly the planned bytes, hashed as they go, and never the
API token.

Owns `HashingReader` (the file part's reader: it hands out exactly the size the plan was
made with, computes the Adler-32 and the digest of what it handed out, and fails when the
file shrinks), `TokenGuard` (refuses bytes that hold the token, across chunk seams too:
docs/safety.md, rule 9; also used for study archives and definitions) and the part's file
name. No HTTP here: client.py builds the request around these.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import IO

from jatos_sync.errors import FileSyncError, LocalFileChangedError
from jatos_sync.model import DIGEST_BYTES, RelPath


class TokenGuard:
    """Refuses bytes, fed chunk by chunk, that hold `secret` (the API token): each chunk is
    searched together with the end of the chunk before it, so the token is found across a
    seam too, before the chunk that completes it is passed on (docs/safety.md, rule 9)."""

    def __init__(self, secret: bytes, *, path: RelPath, message: str = "") -> None:
        self._secret = secret
        self._path = path
        self._message = message  # what to say instead of the message about a file
        self._tail = b""  # the last len(secret) - 1 bytes seen

    def __repr__(self) -> str:
        return f"TokenGuard({str(self._path)!r})"

    def check(self, data: bytes) -> None:
        if not self._secret:
            return
        keep = len(self._secret) - 1
        # Only the seam is copied: the tail plus the first bytes of this chunk.
        if self._secret in data or self._secret in self._tail + data[:keep]:
            raise FileSyncError(
                self._message
                or f"{self._path} holds the API token, so it was not uploaded (the study would "
                "serve it to anyone). Remove the file from the folder, or add it to "
                ".jatosignore; if it was ever uploaded, delete it from the study in JATOS and "
                "make a new token."
            )
        self._tail = (self._tail + data)[-keep:] if len(data) < keep else data[-keep:]


class HashingReader:
    """A file reader for the multipart encoder that sends exactly `size` bytes.

    It computes the Adler-32 and the digest of the bytes it actually hands out, so the caller
    knows what the server received even if the file changed after it was scanned. If the
    file shrinks while it is read, it raises instead of sending a body shorter than the
    announced length.

    It also refuses to hand out the API token (`TokenGuard`): a file that holds the token
    fails with `FileSyncError` before the token's last byte, and so before the file's last
    byte, is sent; the server never stores the file (docs/safety.md, rule 9).
    """

    def __init__(self, fileobj: IO[bytes], size: int, *, path: RelPath, secret: bytes) -> None:
        self._f = fileobj
        self._remaining = size
        self._guard = TokenGuard(secret, path=path)
        self.checksum = 1
        self._strong = hashlib.sha256()

    @property
    def len(self) -> int:  # read by requests-toolbelt to size the body
        return self._remaining

    def read(self, n: int = -1) -> bytes:
        if self._remaining <= 0:
            return b""
        n = self._remaining if n is None or n < 0 or n > self._remaining else n
        data = self._f.read(n)
        if not data:
            raise LocalFileChangedError("the file got shorter while it was being uploaded")
        self._guard.check(data)
        self._remaining -= len(data)
        self.checksum = zlib.adler32(data, self.checksum)
        self._strong.update(data)
        return data

    @property
    def digest(self) -> bytes:
        return self._strong.digest()[:DIGEST_BYTES]


def upload_filename(path: RelPath) -> str:
    # JATOS ignores the part's filename when the URL names the full target path, but Play
    # only sees a *file* part when a filename is present (docs/jatos-api.md §5.2, §5.1). Keep
    # it plain ASCII so no multipart parser stumbles on quoting.
    name = path.name
    if name.isascii() and name.isprintable() and not any(c in name for c in '"\\;'):
        return name
    return "asset"
