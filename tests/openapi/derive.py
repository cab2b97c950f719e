"""Derive ``gameball-v4.json``, the part of Gameball's OpenAPI document gbq is judged by.

    python -m tests.openapi.derive PATH/TO/gameball-docs [--commit 409b529]

Reads ``api-reference/openapi.json`` of a checkout (or copy) of Gameball's documentation
repository ``gameballers/gameball-docs`` and writes, next to this file, the operations gbq
and its sandbox use: their parameters, request bodies and answers, with every ``$ref``
resolved and no prose (descriptions, examples, summaries, tags). The header names the
source file, its commit and its SHA-256, so a newer OpenAPI is this command and a diff.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Final

HERE: Final = Path(__file__).resolve().parent
TARGET: Final = HERE / "gameball-v4.json"
SOURCE_REPO: Final = "gameballers/gameball-docs"
SOURCE_FILE: Final = "api-reference/openapi.json"
BASE: Final = "/api/v4.0/integrations"

# (method, path under BASE): what gbq sends or reads, and what its sandbox answers.
OPERATIONS: Final = (
    ("post", "/orders"),
    ("post", "/orders/cashback"),
    ("get", "/orders/{orderId}/transactions"),
    ("post", "/transactions/refund"),
    ("post", "/transactions/cashback"),
    ("post", "/transactions/redeem"),
    ("post", "/transactions/hold"),
    ("get", "/transactions/hold/{holdReferenceId}"),
    ("delete", "/transactions/hold/{holdReferenceId}"),
    ("get", "/transactions"),
    ("get", "/customers/{customerId}/balance"),
)
PROSE: Final = frozenset({"description", "example", "examples", "summary", "tags", "title"})
KEPT_OPERATION_KEYS: Final = ("parameters", "requestBody", "responses")


def derive(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The kept operations, keyed by path then method, references resolved, prose gone."""
    paths: dict[str, dict[str, Any]] = {}
    for method, path in OPERATIONS:
        operation = document["paths"][BASE + path][method]
        kept = {key: operation[key] for key in KEPT_OPERATION_KEYS if key in operation}
        paths.setdefault(path, {})[method] = _trim(_resolve(kept, document, ()))
    return paths


def _resolve(node: Any, document: dict[str, Any], seen: tuple[str, ...]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, document, seen) for item in node]
    if not isinstance(node, dict):
        return node
    reference = node.get("$ref")
    if isinstance(reference, str):
        if reference in seen:
            raise ValueError(f"recursive reference {reference}: not expected in these operations")
        target: Any = document
        for part in reference.removeprefix("#/").split("/"):
            target = target[part]
        return _resolve(target, document, (*seen, reference))
    return {key: _resolve(value, document, seen) for key, value in node.items()}


def _trim(node: Any, *, field_names: bool = False) -> Any:
    """``node`` without prose; under ``properties`` the keys are field names (a line
    item's ``title``), kept whatever they are called."""
    if isinstance(node, list):
        return [_trim(item) for item in node]
    if not isinstance(node, dict):
        return node
    return {
        key: _trim(value, field_names=key == "properties" and not field_names)
        for key, value in node.items()
        if field_names or (key not in PROSE and not key.startswith("x-"))
    }


def render(source: Path, commit: str) -> str:
    raw = source.read_bytes()
    document = json.loads(raw)
    derived = {
        "source": {
            "repository": SOURCE_REPO,
            "commit": commit,
            "file": SOURCE_FILE,
            "sha256": hashlib.sha256(raw).hexdigest(),
            "openapi": document.get("openapi"),
            "version": document.get("info", {}).get("version"),
        },
        "derived_by": "python -m tests.openapi.derive",
        "base": BASE,
        "paths": derive(document),
    }
    return json.dumps(derived, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("docs", type=Path, help="a copy of gameballers/gameball-docs")
    parser.add_argument("--commit", default="409b529", help="the docs commit it holds")
    parser.add_argument("--check", action="store_true", help="fail if the file would change")
    args = parser.parse_args(argv)
    text = render(args.docs / SOURCE_FILE, args.commit)
    if args.check:
        if TARGET.read_text() != text:
            print(f"{TARGET.name} is stale: re-derive it", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET} from {args.docs / SOURCE_FILE} at {args.commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
