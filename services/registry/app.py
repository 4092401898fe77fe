"""The subset of Confluent Schema Registry's REST API that Kafka clients and their Avro serdes use.

Only Avro, without schema references. Subjects are matched as ``path`` parameters because clients
percent-encode ``/`` in subject names and the server decodes it before routing; so each POST route on
``/subjects/...`` must be declared before the shorter one it would otherwise be swallowed by."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, cast

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from services.core.metrics import instrument
from services.registry.store import (
    Compatibility,
    InvalidCompatibilityLevel,
    InvalidSchema,
    InvalidVersion,
    RegistryError,
    SchemaStore,
    SubjectConfigNotFound,
    SubjectVersion,
)

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
_MAX_VERSION = 2**31 - 1


class RegistryResponse(JSONResponse):
    media_type = MEDIA_TYPE


class SchemaBody(BaseModel):
    """Body of registration, lookup and compatibility tests; other keys (metadata, ruleSet) are ignored."""

    schema_text: str = Field("", alias="schema")
    schema_type: str | None = Field(None, alias="schemaType")
    references: list[dict[str, Any]] | None = None

    def avro(self) -> str:
        """The Avro schema text, refusing what this registry cannot store faithfully."""
        if (self.schema_type or "AVRO").upper() != "AVRO":
            raise InvalidSchema(f"Unsupported schema type {self.schema_type}; this registry serves AVRO only")
        if self.references:
            raise InvalidSchema("Schema references are not supported here; inline the named types instead")
        if not self.schema_text.strip():
            raise InvalidSchema("Empty schema")
        return self.schema_text


class ConfigBody(BaseModel):
    compatibility: str | None = None


def parse_version(text: str) -> int | None:
    """``latest`` and ``-1`` mean the latest version (``None``), as in Confluent."""
    if text in ("latest", "-1"):
        return None
    number = int(text) if text.isdigit() else 0
    if not 1 <= number <= _MAX_VERSION:
        raise InvalidVersion(
            f"The specified version '{text}' is not a valid version id. "
            f'Allowed values are between [1, {_MAX_VERSION}] and the string "latest"'
        )
    return number


def parse_level(text: str | None) -> Compatibility:
    try:
        return Compatibility((text or "").upper())
    except ValueError:
        raise InvalidCompatibilityLevel(
            "Invalid compatibility level. Valid values are none, backward, forward, full, "
            "backward_transitive, forward_transitive, and full_transitive"
        ) from None


def _registered(item: SubjectVersion) -> dict[str, Any]:
    """Confluent omits ``schemaType`` for AVRO, the only type served here."""
    return {"subject": item.subject, "version": item.version, "id": item.schema_id, "schema": item.schema}


def _store(request: Request) -> SchemaStore:
    return cast(SchemaStore, request.app.state.store)


Store = Annotated[SchemaStore, Depends(_store)]
router = APIRouter()


@router.get("/")
def root() -> dict[str, Any]:
    return {}


@router.get("/schemas/types")
def schema_types() -> list[str]:
    return ["AVRO"]


@router.get("/schemas/ids/{schema_id}")
def schema_by_id(schema_id: int, store: Store) -> dict[str, Any]:
    """Query parameters such as ``subject`` and ``format`` are accepted and ignored."""
    return {"schema": store.schema(schema_id)}


@router.get("/schemas/ids/{schema_id}/versions")
def schema_versions(schema_id: int, store: Store, deleted: bool = False) -> list[dict[str, Any]]:
    return [{"subject": s, "version": v} for s, v in store.usages(schema_id, deleted=deleted)]


@router.get("/schemas/ids/{schema_id}/subjects")
def schema_subjects(schema_id: int, store: Store, deleted: bool = False) -> list[str]:
    return sorted({subject for subject, _ in store.usages(schema_id, deleted=deleted)})


@router.get("/subjects")
def subjects(
    store: Store,
    deleted: bool = False,
    subject_prefix: Annotated[str, Query(alias="subjectPrefix")] = "",
) -> list[str]:
    return [subject for subject in store.subjects(deleted=deleted) if subject.startswith(subject_prefix)]


@router.get("/subjects/{subject:path}/versions/{version}/schema")
def raw_schema(subject: str, version: str, store: Store, deleted: bool = False) -> Response:
    item = store.version(subject, parse_version(version), deleted=deleted)
    return Response(content=item.schema, media_type=MEDIA_TYPE)


@router.get("/subjects/{subject:path}/versions/{version}")
def subject_version(subject: str, version: str, store: Store, deleted: bool = False) -> dict[str, Any]:
    return _registered(store.version(subject, parse_version(version), deleted=deleted))


@router.get("/subjects/{subject:path}/versions")
def subject_versions(subject: str, store: Store, deleted: bool = False) -> list[int]:
    return [item.version for item in store.history(subject, deleted=deleted)]


@router.post("/subjects/{subject:path}/versions")
def register(subject: str, body: SchemaBody, store: Store) -> dict[str, Any]:
    """Idempotent; ``normalize`` is accepted and ignored, identity already ignores layout and key order."""
    return {"id": store.register(subject, body.avro()).schema_id}


@router.post("/subjects/{subject:path}")
def lookup(subject: str, body: SchemaBody, store: Store, deleted: bool = False) -> dict[str, Any]:
    return _registered(store.lookup(subject, body.avro(), deleted=deleted))


@router.delete("/subjects/{subject:path}")
def delete_subject(subject: str, store: Store, permanent: bool = False) -> list[int]:
    return store.delete_subject(subject, permanent=permanent)


def _compatibility(messages: list[str], verbose: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"is_compatible": not messages}
    if verbose:
        result["messages"] = messages
    return result


@router.post("/compatibility/subjects/{subject:path}/versions/{version}")
def check_version(subject: str, version: str, body: SchemaBody, store: Store, verbose: bool = False) -> dict[str, Any]:
    """``latest`` follows the subject's level (all versions if transitive); a number tests that one."""
    return _compatibility(store.check(subject, body.avro(), parse_version(version)), verbose)


@router.post("/compatibility/subjects/{subject:path}/versions")
def check_versions(subject: str, body: SchemaBody, store: Store, verbose: bool = False) -> dict[str, Any]:
    return _compatibility(store.check(subject, body.avro(), None), verbose)


@router.get("/config")
def global_config(store: Store) -> dict[str, Any]:
    return {"compatibilityLevel": store.global_compatibility().value}


@router.put("/config")
def set_global_config(body: ConfigBody, store: Store) -> dict[str, Any]:
    level = parse_level(body.compatibility)
    store.set_compatibility(level)
    return {"compatibility": level.value}


@router.get("/config/{subject:path}")
def subject_config(
    subject: str,
    store: Store,
    default_to_global: Annotated[bool, Query(alias="defaultToGlobal")] = False,
) -> dict[str, Any]:
    level = store.subject_compatibility(subject)
    if level is None and default_to_global:
        level = store.global_compatibility()
    if level is None:
        message = f"Subject '{subject}' does not have subject-level compatibility configured"
        raise SubjectConfigNotFound(message)
    return {"compatibilityLevel": level.value}


@router.put("/config/{subject:path}")
def set_subject_config(subject: str, body: ConfigBody, store: Store) -> dict[str, Any]:
    level = parse_level(body.compatibility)
    store.set_compatibility(level, subject)
    return {"compatibility": level.value}


def _error(status: int, error_code: int, message: str) -> RegistryResponse:
    return RegistryResponse({"error_code": error_code, "message": message}, status_code=status)


async def _registry_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, RegistryError)
    return _error(error.status, error.error_code, error.message)


async def _http_error(_: Request, error: Exception) -> Response:
    """Unknown routes too get Confluent's error body; clients read ``error_code`` from every failure."""
    assert isinstance(error, HTTPException)
    return _error(error.status_code, error.status_code, f"HTTP {error.status_code} {error.detail}")


async def _validation_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    return _error(422, 422, f"Invalid request: {error.errors()}")


def create_app(database_path: Path) -> FastAPI:
    """The registry over the SQLite file at ``database_path`` (created if missing)."""
    store = SchemaStore(database_path)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    app = FastAPI(title="Anchang schema registry", default_response_class=RegistryResponse, lifespan=lifespan)
    app.state.store = store
    app.add_exception_handler(RegistryError, _registry_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.include_router(router)
    instrument(app, "registry")
    return app


def serve(host: str, port: int, database_path: Path) -> None:
    """Blocks until SIGINT or SIGTERM; uvicorn then drains requests and the lifespan closes the file."""
    uvicorn.run(create_app(database_path), host=host, port=port, log_level="info")
