"""Deployment secrets kept on local disk when no environment variable supplies them.

A fresh machine needs no configuration: the first process that asks creates the secret (random, owner-only
permissions) and every later process, including ones started at the same moment, reads the same value."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path


def read_or_create_secret(path: Path, length: int = 32) -> bytes:
    """The secret stored at ``path``; created with ``length`` random bytes (hex) if it does not exist yet."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        draft.write_text(secrets.token_hex(length))
        draft.chmod(0o600)
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs counts
            os.link(draft, path)  # atomic, and never replaces an existing secret
        draft.unlink()
    for _ in range(50):
        value = path.read_text().strip()
        if value:
            return value.encode()
        time.sleep(0.1)
    raise RuntimeError(f"the secret file {path} is empty; delete it to create a new one (see docs/configuration.md)")
