"""Objects of custom kinds (Gateway API) against the CRD schemas vendored in `schemas/`.

kubernetes-validate ships the built-in kinds only, so a Gateway or an HTTPRoute is checked here,
with jsonschema, against the `openAPIV3Schema` of the matching version in the upstream CRD
(`schemas/README.md` says which release). Strict like `kubectl --validate=strict`: an unknown
field is an error (the schema gets `additionalProperties: false` wherever it lists properties
and does not preserve unknown fields).

What jsonschema cannot evaluate are the CRD's CEL rules (`x-kubernetes-validations`), which
only an API server runs. `cel_problems` repeats, with the CRD's own messages, the few of them
the lab's manifests could break.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
#: The Gateway API release the vendored CRDs come from.
GATEWAY_API_VERSION = "v1.6.1"


class UnknownKind(LookupError):
    """No vendored CRD serves this apiVersion and kind."""


def _strict(node: Any) -> Any:
    """A copy of an OpenAPI schema in which objects with listed properties allow no others."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if "properties" in out and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@functools.cache
def _crds() -> dict[tuple[str, str], dict[str, Any]]:
    """{(apiVersion, kind): strict openAPIV3Schema} for every served version of every CRD."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(SCHEMA_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        for version in spec["versions"]:
            if version.get("served"):
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                out[key] = _strict(version["schema"]["openAPIV3Schema"])
    return out


@functools.cache
def _validator(api_version: str, kind: str) -> Any:
    import jsonschema

    schema = _crds().get((api_version, kind))
    if schema is None:
        raise UnknownKind(f"no vendored CRD for {api_version} {kind}")
    return jsonschema.Draft7Validator(schema)


def knows(api_version: str, kind: str) -> bool:
    """Whether a vendored CRD serves this apiVersion and kind."""
    return (api_version, kind) in _crds()


def schema_errors(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(path, message) for every way `obj` breaks its CRD's schema, in path order."""
    validator = _validator(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    errors = sorted(validator.iter_errors(dict(obj)), key=lambda e: [str(p) for p in e.path])
    return [(_path(e.path), e.message) for e in errors]


def _path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(root)"


# --- the CEL rules the lab's manifests could break ---------------------------------------------

def _dicts(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    for i, v in enumerate(value if isinstance(value, list) else []):
        if isinstance(v, dict):
            yield i, v


def cel_problems(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(path, the CRD's message) for the CEL rules of Gateway and HTTPRoute the lab checks."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    out: list[tuple[str, str]] = []
    if obj.get("kind") == "Gateway":
        names = [ls.get("name") for _, ls in _dicts(spec.get("listeners"))]
        if len(names) != len(set(names)):
            out.append(("spec.listeners", "Listener name must be unique within the Gateway"))
        for i, ls in _dicts(spec.get("listeners")):
            if ls.get("protocol") == "HTTPS" and (ls.get("tls") or {}).get("mode", "Terminate") \
                    != "Terminate":
                out.append((f"spec.listeners[{i}]", "tls mode must be Terminate for protocol HTTPS"))
            if ls.get("protocol") in ("HTTP", "TCP", "UDP") and ls.get("tls"):
                out.append((f"spec.listeners[{i}]",
                            "tls must not be specified for protocols ['HTTP', 'TCP', 'UDP']"))
    if obj.get("kind") == "HTTPRoute":
        for i, rule in _dicts(spec.get("rules")):
            for j, match in _dicts(rule.get("matches")):
                path = match.get("path") if isinstance(match.get("path"), dict) else {}
                assert isinstance(path, dict)
                value = path.get("value", "/")
                if path.get("type", "PathPrefix") in ("Exact", "PathPrefix") and \
                        isinstance(value, str) and not value.startswith("/"):
                    out.append((f"spec.rules[{i}].matches[{j}].path", "value must be an absolute "
                                "path and start with '/' when type one of ['Exact', 'PathPrefix']"))
            for j, ref in _dicts(rule.get("backendRefs")):
                if ref.get("kind", "Service") == "Service" and ref.get("group", "") == "" \
                        and "port" not in ref:
                    out.append((f"spec.rules[{i}].backendRefs[{j}]",
                                "Must have port for Service reference"))
    return out
