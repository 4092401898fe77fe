"""A small Python client for the ingestion API."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

import httpx


class AnchangError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail


class AnchangClient:
    """``with AnchangClient("http://127.0.0.1:8000", key) as client: client.publish({...})``"""

    def __init__(self, base_url: str, api_key: str, timeout: float = 60.0) -> None:
        self._http = httpx.Client(base_url=base_url, headers={"X-API-Key": api_key}, timeout=timeout)

    def publish(self, event: dict[str, Any]) -> dict[str, Any]:
        """Publish one event; returns ``{event_id, event_type, topic, partition, offset}``."""
        return self._call("POST", "/v1/events", json=event)  # type: ignore[no-any-return]

    def publish_batch(self, events: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Publish many events; returns ``{accepted, rejected, items: [{index, accepted | errors}]}``."""
        return self._call("POST", "/v1/events/batch", json=list(events))  # type: ignore[no-any-return]

    def visits(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/visits", params={"limit": limit})  # type: ignore[no-any-return]

    def calls(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/calls", params={"limit": limit})  # type: ignore[no-any-return]

    def register(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/register")  # type: ignore[no-any-return]

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise AnchangError(response.status_code, detail)
        return response.json()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AnchangClient:
        return self

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
