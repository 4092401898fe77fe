"""Office API keys: the key a request carries decides which office it speaks for."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime

from sqlalchemy import Engine, select, update

from projections.tables import api_keys


def hash_key(key: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is as safe as a slow one here.
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(engine: Engine, office_id: str, label: str, now: datetime) -> str:
    """Store a new key for ``office_id`` and return it; only its hash is kept."""
    key = f"ak_{office_id}_{secrets.token_urlsafe(32)}"
    with engine.begin() as connection:
        connection.execute(
            api_keys.insert().values(key_hash=hash_key(key), office_id=office_id, label=label, created_at=now)
        )
    return key


def revoke_keys(engine: Engine, office_id: str, now: datetime) -> int:
    with engine.begin() as connection:
        result = connection.execute(
            update(api_keys)
            .where(api_keys.c.office_id == office_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
    return result.rowcount


class KeyStore:
    """Looks keys up in SQL, caching the active set briefly so requests do not each hit the database."""

    def __init__(self, engine: Engine, ttl_seconds: float = 5.0) -> None:
        self._engine = engine
        self._ttl = ttl_seconds
        self._offices: dict[str, str] = {}
        self._loaded_at = float("-inf")

    def office_for(self, key: str) -> str | None:
        if time.monotonic() - self._loaded_at > self._ttl:
            self._reload()
        office = self._offices.get(hash_key(key))
        if office is None:  # a key created a moment ago: look once more before refusing it
            self._reload()
            office = self._offices.get(hash_key(key))
        return office

    def _reload(self) -> None:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(api_keys.c.key_hash, api_keys.c.office_id).where(api_keys.c.revoked_at.is_(None))
            ).all()
        self._offices = {key_hash: office for key_hash, office in rows}
        self._loaded_at = time.monotonic()
