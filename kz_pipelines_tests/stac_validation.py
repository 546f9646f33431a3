"""Offline validation of STAC Items, Collections and Catalogs against the official JSON schemas.

The schemas are vendored, unmodified, under ``stac_schemas/`` next to this module, in a folder
layout that mirrors their published URL: ``https://<host>/<path>`` is stored as
``stac_schemas/<host>/<path>`` (``stac_schemas/SOURCES.md`` says where each file came from).

:func:`validate_stac` checks an object against the STAC 1.0.0 core schema of its type and against
every extension schema listed in its ``stac_extensions``. Every ``$ref`` is resolved from the
vendored files only (plus the JSON Schema meta-schemas that ship inside ``jsonschema``): a
reference to anything else raises :class:`SchemaNotVendoredError` instead of reaching the network.

No format checker is used: ``format`` keywords (``date-time``, ``iri``, ...) are annotations only,
while ``type``, ``required``, ``pattern``, ``enum``, ranges ... are all asserted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final

from jsonschema import Draft7Validator, ValidationError
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT7

__all__ = [
    "CORE_SCHEMA_URLS",
    "SCHEMA_DIR",
    "SchemaNotVendoredError",
    "StacValidationError",
    "validate_stac",
    "vendored_schema_urls",
]

#: Root of the vendored schemas (``stac_schemas/<host>/<path>`` holds ``https://<host>/<path>``).
SCHEMA_DIR: Final[Path] = Path(__file__).resolve().with_name("stac_schemas")

_CORE_BASE: Final = "https://schemas.stacspec.org/v1.0.0"

#: STAC 1.0.0 core schema for each value of a STAC object's ``type`` field.
CORE_SCHEMA_URLS: Final[Mapping[str, str]] = {
    "Feature": f"{_CORE_BASE}/item-spec/json-schema/item.json",
    "Collection": f"{_CORE_BASE}/collection-spec/json-schema/collection.json",
    "Catalog": f"{_CORE_BASE}/catalog-spec/json-schema/catalog.json",
}

_KIND: Final[Mapping[str, str]] = {"Feature": "Item", "Collection": "Collection", "Catalog": "Catalog"}
_MAX_DETAIL: Final = 300  # characters of the jsonschema message kept (some repeat the whole instance)


class SchemaNotVendoredError(LookupError):
    """A schema (an extension, or the target of a ``$ref``) is not among the vendored files."""

    def __init__(self, url: str) -> None:
        super().__init__(f"schema not vendored: {url}")
        self.url = url


class StacValidationError(ValidationError):
    """A STAC object does not validate against one of its schemas.

    It describes the most relevant error of all schemas checked (``jsonschema.exceptions.best_match``,
    then followed into ``oneOf``/``anyOf`` sub-errors), with a message naming the object's id, the
    schema URL and the failing JSON path (also in ``json_path``/``path``); ``errors`` holds every
    top-level error found, in schema order.
    """

    stac_id: str
    schema_url: str
    errors: tuple[ValidationError, ...]


def _url_for(path: Path) -> str:
    return "https://" + path.relative_to(SCHEMA_DIR).as_posix()


def _retrieve(uri: str) -> Resource[Any]:
    """Registry fallback for URIs not preloaded: never fetch, always fail loudly."""
    raise SchemaNotVendoredError(uri)


@cache
def _registry() -> Registry[Any]:
    """All vendored schemas, keyed by their published URL."""
    resources: list[tuple[str, Resource[Any]]] = []
    for path in sorted(SCHEMA_DIR.rglob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((_url_for(path), DRAFT7.create_resource(contents)))
    if not resources:
        raise FileNotFoundError(f"no vendored schemas under {SCHEMA_DIR}")
    # mypy does not see the attrs alias "retrieve" of Registry._retrieve
    return Registry(retrieve=_retrieve).with_resources(resources)  # type: ignore[call-arg]


@cache
def vendored_schema_urls() -> frozenset[str]:
    """The published URLs of all vendored schemas."""
    return frozenset(_url_for(path) for path in SCHEMA_DIR.rglob("*.json"))


@cache
def _validator(url: str) -> Draft7Validator:
    """A draft-07 validator rooted at the vendored schema published at ``url``."""
    registry = _registry()
    if url not in vendored_schema_urls():
        raise SchemaNotVendoredError(url)
    # The schema is the validator's root, so its own "$id" (which for processing v1.1.0 is
    # ".../processing/v1.0.0/schema.json") is the base for its internal "#/..." references.
    return Draft7Validator(registry.contents(url), registry=registry)


def _not_vendored_cause(error: BaseException) -> SchemaNotVendoredError | None:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, SchemaNotVendoredError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _schema_errors(url: str, obj: Mapping[str, Any]) -> list[ValidationError]:
    try:
        return list(_validator(url).iter_errors(obj))
    except Unresolvable as error:
        missing = _not_vendored_cause(error)
        if missing is not None:
            raise SchemaNotVendoredError(missing.url) from error
        raise


def validate_stac(obj: dict[str, Any], *, ignore_extensions: Iterable[str] = ()) -> None:
    """Validate a STAC 1.0.0 Item, Collection or Catalog against the vendored official schemas.

    The object is checked against the core schema of its ``type`` (``Feature``, ``Collection`` or
    ``Catalog``) and against each schema URL in its ``stac_extensions``, except those listed in
    ``ignore_extensions``. No network access is made.

    Raises:
        StacValidationError: the object is invalid (a ``jsonschema.ValidationError``); the message
            names the object's id, the schema and the failing JSON path.
        SchemaNotVendoredError: an extension schema, or a ``$ref`` reached while validating, is not
            vendored under :data:`SCHEMA_DIR`.
        ValueError: ``obj`` is not a mapping or has no recognised STAC ``type``, or its
            ``stac_extensions`` is not a list of strings.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"a STAC object must be a JSON object, not {type(obj).__name__}")
    stac_id = str(obj.get("id", "<no id>"))
    stac_type = obj.get("type")
    if not isinstance(stac_type, str) or stac_type not in CORE_SCHEMA_URLS:
        raise ValueError(
            f"STAC object {stac_id!r}: 'type' must be one of {sorted(CORE_SCHEMA_URLS)}, not {stac_type!r}"
        )
    extensions = obj.get("stac_extensions", [])
    if not isinstance(extensions, list) or not all(isinstance(url, str) for url in extensions):
        raise ValueError(f"STAC object {stac_id!r}: 'stac_extensions' must be a list of URL strings")

    skipped = set(ignore_extensions)
    schema_urls = [CORE_SCHEMA_URLS[stac_type]]
    schema_urls += [url for url in dict.fromkeys(extensions) if url not in skipped]
    missing = [url for url in schema_urls if url not in vendored_schema_urls()]
    if missing:
        raise SchemaNotVendoredError(missing[0])

    found: list[tuple[str, ValidationError]] = []
    for url in schema_urls:
        found += [(url, error) for error in _schema_errors(url, obj)]
    if not found:
        return

    errors = tuple(error for _, error in found)
    top = best_match(errors) or errors[0]
    top = next(error for error in errors if _contains(error, top))  # best_match may pick a sub-error
    schema_url = next(url for url, error in found if error is top)
    raise _stac_error(
        _most_specific(top), stac_id=stac_id, kind=_KIND[stac_type], schema_url=schema_url, errors=errors
    )


def _contains(error: ValidationError, target: ValidationError) -> bool:
    """Whether ``target`` is ``error`` or one of its (nested) sub-errors."""
    return error is target or any(_contains(sub, target) for sub in error.context)


def _rejects_stac_type(error: ValidationError) -> bool:
    """Whether ``error`` only says the object is another kind of STAC object (Item vs Collection)."""
    return tuple(error.absolute_path) == ("type",) and error.validator in ("const", "enum")


def _most_specific(error: ValidationError) -> ValidationError:
    """Descend a ``oneOf``/``anyOf`` failure to the sub-error that explains it best.

    Extension schemas are ``oneOf`` an Item branch and a Collection branch: branches whose errors
    include "``type`` must be ..." are for the other kind of object and are skipped; of the rest, the
    deepest error (longest instance path) is taken.
    """
    while error.context:
        branches: dict[str | int, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        candidates = [
            sub for subs in branches.values() if not any(map(_rejects_stac_type, subs)) for sub in subs
        ] or list(error.context)
        error = max(candidates, key=lambda sub: len(sub.absolute_path))
    return error


def _stac_error(
    error: ValidationError,
    *,
    stac_id: str,
    kind: str,
    schema_url: str,
    errors: tuple[ValidationError, ...],
) -> StacValidationError:
    others = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    detail = error.message if len(error.message) <= _MAX_DETAIL else error.message[:_MAX_DETAIL] + "..."
    wrapped = StacValidationError(
        f"STAC {kind} {stac_id!r} is invalid against {schema_url} at {error.json_path}: {detail}{others}",
        validator=error.validator,
        path=error.absolute_path,
        cause=error.cause,
        context=list(error.context),
        validator_value=error.validator_value,
        instance=error.instance,
        schema=error.schema,
        schema_path=error.absolute_schema_path,
    )
    wrapped.stac_id = stac_id
    wrapped.schema_url = schema_url
    wrapped.errors = errors
    return wrapped
