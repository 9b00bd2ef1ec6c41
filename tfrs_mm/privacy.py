"""Keyed pseudonyms for user ids, so raw ids never reach a dataset directory.

A pseudonym is `p_` + the first 16 hex digits of HMAC-SHA256(key, user_id):
the same key maps the same user to the same pseudonym in every run (so
datasets built on different days join up), a different key gives unrelated
pseudonyms, and without the key a pseudonym cannot be traced back by hashing
candidate ids. The key comes from a file (`--pseudonym-key-file`, local or a
`gs://` URI) or from the `TFRS_MM_PSEUDONYM_KEY` environment variable; entry
points resolve it with `load_pseudonymizer` and pass the result in.

The key is never logged, printed or written: `repr` hides it. A pseudonymizer
built from a key file pickles only the path and re-reads the key on the worker,
so the key is not baked into a serialized Beam pipeline; one built from the
environment variable has to carry the key itself (workers do not share the
launcher's environment), so prefer a key file on distributed runners.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

from tfrs_mm import fileio

KEY_ENV_VAR = "TFRS_MM_PSEUDONYM_KEY"
PREFIX = "p_"
HEX_CHARS = 16  # 64 bits: a collision among 10M users has probability ~3e-6
MIN_KEY_BYTES = 16  # a short key can be brute-forced, which would undo the pseudonyms


class PseudonymKeyError(ValueError):
    """The pseudonym key is missing, unreadable or too short."""


class Pseudonymizer:
    """Maps a user id to `p_<16 hex>` with HMAC-SHA256 under a secret key.

    Args:
        key: The secret key, at least `MIN_KEY_BYTES` bytes. Give either `key` or `key_file`.
        key_file: Path or URI of a file holding the key (surrounding whitespace ignored).
        prefix: Marks pseudonyms so they are never mistaken for raw ids.
        hex_chars: How many hex digits of the digest to keep (1..64).

    Raises:
        PseudonymKeyError: if the key is missing, unreadable or too short.
    """

    def __init__(
        self,
        key: bytes | None = None,
        key_file: str | None = None,
        prefix: str = PREFIX,
        hex_chars: int = HEX_CHARS,
    ):
        if (key is None) == (key_file is None):
            raise PseudonymKeyError("give exactly one of a pseudonym key or a key file")
        if not 1 <= hex_chars <= 64:
            raise ValueError(f"hex_chars must be in [1, 64], got {hex_chars}")
        self.key_file = key_file
        self.prefix = prefix
        self.hex_chars = hex_chars
        self._key = _checked_key(key, "the given key") if key is not None else _read_key(key_file)

    def __call__(self, user_id: str) -> str:
        """The pseudonym of one user id, e.g. `p_3f9a0c1d2e4b5a69`."""
        if self._key is None:  # unpickled from a key file: read it once on this worker
            self._key = _read_key(self.key_file)
        digest = hmac.new(self._key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()
        return self.prefix + digest[: self.hex_chars]

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.key_file is not None:
            state["_key"] = None  # keep the key out of pickled pipelines; workers re-read the file
        return state

    def __repr__(self) -> str:
        source = f"key_file={self.key_file!r}" if self.key_file else "key=<hidden>"
        return f"Pseudonymizer({source}, prefix={self.prefix!r}, hex_chars={self.hex_chars})"


def load_pseudonymizer(
    key_file: str | None = None, environ: Mapping[str, str] | None = None
) -> Pseudonymizer:
    """Builds the pseudonymizer from a key file, else from `TFRS_MM_PSEUDONYM_KEY`.

    Args:
        key_file: Path or URI of the key file; takes precedence over the environment.
        environ: Where to look for `TFRS_MM_PSEUDONYM_KEY`; defaults to `os.environ`.

    Raises:
        PseudonymKeyError: naming both ways to give a key, if neither is set.
    """
    if key_file:
        return Pseudonymizer(key_file=key_file)
    value = (os.environ if environ is None else environ).get(KEY_ENV_VAR, "")
    if not value.strip():
        raise PseudonymKeyError(
            "pseudonymize_users is on but no pseudonym key was given: set the "
            f"{KEY_ENV_VAR} environment variable or pass --pseudonym-key-file "
            f"(a secret of at least {MIN_KEY_BYTES} bytes, e.g. `openssl rand -hex 32`)"
        )
    return Pseudonymizer(key=value.strip().encode("utf-8"))


def _read_key(path: str) -> bytes:
    if not fileio.exists(path):
        raise PseudonymKeyError(f"pseudonym key file {path} not found")
    with fileio.open_file(path, "rb") as f:
        return _checked_key(f.read().strip(), f"pseudonym key file {path}")


def _checked_key(key: bytes, where: str) -> bytes:
    if not isinstance(key, bytes):
        raise PseudonymKeyError(f"{where}: the key must be bytes")
    if len(key) < MIN_KEY_BYTES:
        # Say how long it is, never what it is.
        raise PseudonymKeyError(
            f"{where}: a pseudonym key needs at least {MIN_KEY_BYTES} bytes, got {len(key)}"
        )
    return key
