"""A 422 that teaches: when a request has no usable JSON body, say what to send and how.

The course's own lines send bodiless POSTs (`curl -X POST .../api/commands/create-user`, with
no `-d` and no content type), and `curl -d '{...}'` without `-H 'Content-Type:
application/json'` sends a form, not JSON. Both get a 422 whose `detail` names the problem,
with `example` (a body the endpoint accepts) and `try` (the curl line that sends it).

The example is the body model's `json_schema_extra["examples"][0]` when it has one, else a
skeleton of its required fields.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import Request

#: Validation errors that are about the body as a whole, not one field of it.
WHOLE_BODY = frozenset({"missing", "model_attributes_type", "dict_type", "model_type"})
JSON_CT = "application/json"


def _whole_body(errors: Sequence[dict[str, Any]]) -> str | None:
    for err in errors:
        loc = tuple(err.get("loc") or ())
        if err.get("type") == "json_invalid":
            return "json_invalid"
        if loc == ("body",) and err.get("type") in WHOLE_BODY:
            return str(err["type"])
    return None


def _body_model(request: Request) -> Any:
    field = getattr(request.scope.get("route"), "body_field", None)
    annotation = getattr(getattr(field, "field_info", None), "annotation", None)
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if hasattr(candidate, "model_json_schema"):
            return candidate
    return None


def _placeholder(schema: dict[str, Any]) -> Any:
    kind = schema.get("type") or next((s.get("type") for s in schema.get("anyOf", [])
                                       if s.get("type") != "null"), "string")
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}.get(
        kind, "...")


def example_body(request: Request) -> dict[str, Any] | None:
    """A body this endpoint accepts: its model's first example, else its required fields."""
    model = _body_model(request)
    if model is None:
        return None
    extra = (getattr(model, "model_config", {}) or {}).get("json_schema_extra") or {}
    examples = extra.get("examples") if isinstance(extra, dict) else None
    if examples:
        return dict(examples[0])
    schema = model.model_json_schema()
    props = schema.get("properties") or {}
    return {name: _placeholder(props.get(name, {})) for name in schema.get("required") or []}


def curl_line(request: Request, body: dict[str, Any]) -> str:
    """`curl -s -X POST <the URL it was sent to> -H 'Content-Type: application/json' -d '...'`."""
    url = str(request.base_url).rstrip("/") + request.url.path
    data = json.dumps(body, ensure_ascii=False).replace("'", "'\\''")
    return f"curl -s -X {request.method} {url} -H 'Content-Type: {JSON_CT}' -d '{data}'"


def body_hint(request: Request, errors: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """`{"detail", "example", "try"}` when the body as a whole is unusable, else None."""
    problem = _whole_body(errors)
    if problem is None:
        return None
    example = example_body(request)
    if example is None:
        return None
    where = f"{request.method} {request.url.path}"
    content_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    shown = json.dumps(example, ensure_ascii=False)
    if problem == "missing":
        what = f"{where} needs a JSON body, for example {shown}"
    elif problem == "json_invalid":
        what = f"the body of {where} is not valid JSON; send an object like {shown}"
    elif content_type != JSON_CT:
        what = (f"the body of {where} was not sent as JSON (Content-Type: "
                f"{content_type or 'none'}); send an object like {shown}")
    else:
        what = f"{where} needs a JSON object, for example {shown}"
    return {"detail": f"{what}, with -H 'Content-Type: {JSON_CT}' (see `try`)",
            "example": example, "try": curl_line(request, example)}
