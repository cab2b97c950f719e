"""Judge requests and answers by Gameball's own OpenAPI (``gameball-v4.json``), strictly.

Gameball's schemas leave objects open; gbq's are judged closed: a field the document does
not name is an error here, so a misread field name cannot pass (a field that Gameball
ignores silently is money lost silently). Maps the document itself declares open
(``extra``, ``additionalProperties: true``) stay open. v4.1 is judged by v4.0's document:
the same surface with the SecretKey mandatory (introduction-v4.1.mdx).

    request_errors("POST", "/api/v4.1/integrations/orders", body)  -> ["orderId: ...", ...]
    answer_errors("GET", "/api/v4.0/integrations/transactions", 200, body)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

from jsonschema import Draft202012Validator, FormatChecker

SCHEMA_FILE: Final = Path(__file__).with_name("gameball-v4.json")
_VERSIONED: Final = re.compile(r"^/api/v4\.[01]/integrations(?P<rest>/.*)$")

format_checker = FormatChecker()


@format_checker.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    # Gameball writes both 2024-10-16T08:13:29.290Z and, in answers, 2024-10-13T17:11:00.249.
    return not isinstance(value, str) or bool(datetime.fromisoformat(value))


@cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return loaded


def source() -> dict[str, str]:
    """Where the document comes from: repository, commit, file, sha256."""
    return dict(document()["source"])


def operation(method: str, path: str) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The documented operation for a concrete path: its template, the path parameters
    and the operation. KeyError names what is not documented."""
    matched = _VERSIONED.match(path.split("?", 1)[0])
    if matched is None:
        raise KeyError(f"{path}: not a v4.0/v4.1 integrations path")
    rest = matched["rest"]
    for template, methods in document()["paths"].items():
        pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
        found = re.match(pattern, rest)
        if found is not None and method.lower() in methods:
            return template, found.groupdict(), methods[method.lower()]
    raise KeyError(f"{method} {rest}: not an operation of Gameball's OpenAPI")


def request_errors(
    method: str, path: str, body: object = None, query: Mapping[str, str] | None = None
) -> list[str]:
    """Every way a request breaks the document (empty: it conforms)."""
    try:
        _, _, spec = operation(method, path)
    except KeyError as error:
        return [str(error.args[0])]
    errors = _parameter_errors(spec.get("parameters", []), query or {})
    request_body = spec.get("requestBody")
    if request_body is None:
        if body is not None:
            errors.append("a body is sent where the operation takes none")
        return errors
    if body is None:
        return (
            [*errors, "the operation requires a body"] if request_body.get("required") else errors
        )
    schema = request_body["content"]["application/json"]["schema"]
    return errors + _schema_errors(schema, body)


def answer_errors(method: str, path: str, status: int, body: object) -> list[str]:
    """Every way an answer breaks the document; a status it does not document (Gameball's
    error answers are not in it) is not judged."""
    try:
        _, _, spec = operation(method, path)
    except KeyError as error:
        return [str(error.args[0])]
    documented = spec.get("responses", {}).get(str(status))
    if documented is None:
        return [] if status >= 400 else [f"status {status} is not documented"]
    content = documented.get("content", {}).get("application/json")
    if content is None:
        return []
    return _schema_errors(content["schema"], body)


def _parameter_errors(parameters: list[dict[str, Any]], query: Mapping[str, str]) -> list[str]:
    known = {p["name"]: p for p in parameters if p.get("in") == "query"}
    errors = [
        f"query {name!r}: not a parameter of this operation" for name in query if name not in known
    ]
    for name, parameter in known.items():
        if name not in query:
            if parameter.get("required"):
                errors.append(f"query {name!r}: required")
            continue
        errors += [
            f"query {name!r}: {e}" for e in _query_value_errors(parameter["schema"], query[name])
        ]
    return errors


def _query_value_errors(schema: dict[str, Any], text: str) -> list[str]:
    value: object = text
    if schema.get("type") == "integer":
        try:
            value = int(text)
        except ValueError:
            return [f"{text!r} is not an integer"]
    return _schema_errors(schema, value)


def _schema_errors(schema: dict[str, Any], instance: object) -> list[str]:
    validator = Draft202012Validator(_closed(schema), format_checker=format_checker)
    return sorted(
        f"{'.'.join(str(p) for p in error.absolute_path) or '(body)'}: {error.message}"
        for error in validator.iter_errors(instance)
    )


def _closed(schema: Any) -> Any:
    """``schema`` with every object that names its properties closed to others."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        closed["additionalProperties"] = False
    if isinstance(schema.get("properties"), dict):
        closed["properties"] = {k: _closed(v) for k, v in schema["properties"].items()}
    return closed
