"""The OpenAPI document at /docs.json, made true to what the service answers.

BentoML 1.4 generates the document from the API signatures, but flattens every `anyOf` to its
first branch (so `null` vanished from optional fields, `user_id: null` in an answer looked like
a violation, and integer ids looked invalid), declares a 400's `detail` as a string (it is a
list of field errors), knows nothing of the guard's 401, 413 and 415 nor of the bearer scheme,
and sets `info.version` to "None" outside a Bento. `document()` keeps BentoML's document but
puts back pydantic's own schemas of every request and answer (OpenAPI 3.0's `nullable` for
optional fields), the error answers, the security scheme, the package version and `k`'s real
maximum for the served model (its number of items), the item-table fields `where` may name;
the guard (serving/guard.py) serves it in
place of BentoML's.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import walsrec
from serving.schemas import ErrorResponse

__all__ = ["document", "document_app"]

REF = "#/components/schemas/{model}"
SECURITY_SCHEME = "bearer"
ERROR_STATUSES = {
    400: "Invalid request: `field` or `detail` names the field at fault",
    404: "Unknown item or user (`field`: item_id or user_id)",
    413: "Request body larger than the cap",
    415: "Content-Type is not application/json",
    500: "Unexpected server error (a bug: please report it)",
    503: "Model not ready, or the server is overloaded",
    504: "The request took longer than the server's timeout",
}
UNAUTHORIZED = "Missing or wrong bearer token"
OPEN_PATHS = ("/healthz", "/livez", "/readyz")


def _error_response(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": REF.format(model="ErrorResponse")}}},
    }


def _nullable(schema: Any) -> Any:
    """OpenAPI 3.0 spelling of optional fields, recursively.

    pydantic writes `anyOf: [X, {type: null}]`; BentoML flattens that to X with `default: null`.
    Both become X with `nullable: true`.
    """
    if isinstance(schema, list):
        return [_nullable(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: _nullable(value) for key, value in schema.items()}
    variants = schema.get("anyOf")
    if isinstance(variants, list) and {"type": "null"} in variants:
        rest = [variant for variant in variants if variant != {"type": "null"}]
        del schema["anyOf"]
        if len(rest) == 1:
            schema = {**rest[0], **schema}
        else:
            schema["anyOf"] = rest
        schema["nullable"] = True
    elif schema.get("default", ...) is None and ("type" in schema or "$ref" in schema):
        schema["nullable"] = True
    return schema


def _error_components() -> dict[str, Any]:
    schema = ErrorResponse.model_json_schema(ref_template=REF)
    definitions = schema.pop("$defs", {})
    return _nullable({**definitions, "ErrorResponse": schema})


def _pydantic_schema(model: type[BaseModel], mode: str, schemas: dict[str, Any]) -> dict:
    """`model`'s JSON schema in `mode`, its definitions moved into `schemas` (components)."""
    schema = model.model_json_schema(ref_template=REF, mode=mode)
    schemas.update(_nullable(schema.pop("$defs", {})))
    return _nullable(schema)


def _cap_k(schema: dict[str, Any], n_items: int) -> None:
    k = schema.get("properties", {}).get("k")
    if k is not None:
        k["maximum"] = min(k.get("maximum", n_items), n_items)


def _restrict_where(schema: dict[str, Any], fields: list[str]) -> None:
    """`where` may name only the served item table's fields (none without a table)."""
    where = schema.get("properties", {}).get("where")
    if where is None:
        return
    value = where.pop("additionalProperties", {})
    where["properties"] = {name: copy.deepcopy(value) for name in fields}
    where["additionalProperties"] = False
    where.pop("propertyNames", None)
    if not fields:
        where["maxProperties"] = 0


def document(
    spec: dict[str, Any],
    apis: Mapping[str, tuple[type[BaseModel], type[BaseModel]]],
    secured: bool,
    model: dict[str, Any],
    description: str = "",
) -> dict[str, Any]:
    """BentoML's OpenAPI document (`Service.openapi_spec.asdict()`) made true to the answers.

    Args:
        spec: BentoML's document (not modified).
        apis: route -> (input model, output model) of every API.
        secured: whether a bearer token is required (adds the scheme and 401s).
        model: what is served (recorded as `info.x-walsrec-model`); its `n_items` caps `k`, its
            `item_fields` are the only keys `where` accepts.
        description: `info.description` (BentoML puts its own README template there).
    """
    spec = _nullable(copy.deepcopy(spec))
    spec["info"]["version"] = walsrec.__version__
    spec["info"]["description"] = description
    spec["info"]["x-walsrec-model"] = model
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(_error_components())
    if secured:
        components["securitySchemes"] = {SECURITY_SCHEME: {"type": "http", "scheme": "bearer"}}
    for path, item in spec["paths"].items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            if path in apis:
                input_model, output_model = apis[path]
                request = _pydantic_schema(input_model, "validation", schemas)
                if "n_items" in model:
                    _cap_k(request, model["n_items"])
                _restrict_where(request, model.get("item_fields", []))
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": request}},
                }
                answer = _pydantic_schema(output_model, "serialization", schemas)
                responses.clear()
                responses["200"] = {
                    "description": "Successful Response",
                    "content": {"application/json": {"schema": answer}},
                }
                for status, text in ERROR_STATUSES.items():
                    responses[str(status)] = _error_response(text)
            elif path == "/readyz":
                responses["503"] = {"description": "Not ready (model loading or invalid)"}
            if secured and path not in OPEN_PATHS:
                responses["401"] = _error_response(UNAUTHORIZED)
                operation["security"] = [{SECURITY_SCHEME: []}]
    return spec


def document_app(
    service: Any, packaged_model: Callable[[], Any], *, secured: bool, description: str = ""
):
    """An ASGI app serving `document()` for `service`, built on first use and kept."""
    cached: list[bytes] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        if not cached:
            stored = packaged_model()
            labels = stored.info.labels
            model = {
                "bento_model": str(stored.tag),
                "zenml_model": labels.get("zenml_model", ""),
                "zenml_version": labels.get("zenml_version", ""),
                "item_fields": list(stored.info.metadata.get("item_table_fields", [])),
            }
            try:
                sizes = json.loads(Path(stored.path, "metadata.json").read_text("utf-8"))
                model["n_items"] = int(sizes["n_items"])
            except (OSError, ValueError, KeyError, TypeError):
                pass  # an unreadable model is not served; its document keeps k's field cap
            apis = {api.route: (api.input_spec, api.output_spec) for api in service.apis.values()}
            spec = document(service.openapi_spec.asdict(), apis, secured, model, description)
            cached.append(json.dumps(spec).encode())
        body = cached[0]
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
