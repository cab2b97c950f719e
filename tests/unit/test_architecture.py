"""docs/architecture.md draws the code as it is: its rooms are the worker's folders, its
Redis keys are producers/keys.py's, and no code cites a document outside the repository."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from producers import keys

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "architecture.md").read_text()
CODE = [
    path
    for folder in ("producers", "worker", "bench", "tests")
    for path in (ROOT / folder).rglob("*")
    if path.suffix in {".py", ".lua", ".html"} and "__pycache__" not in path.parts
]


def _table(heading: str) -> list[list[str]]:
    """The rows of the first table under ``heading``, cells stripped of backticks."""
    section = PAGE.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip().strip("`") for cell in row.strip("|").split("|")] for row in rows[1:]]


def test_every_room_of_the_worker_is_on_the_page_and_nothing_else() -> None:
    folders = {
        f"worker/{path.name}/"
        for path in (ROOT / "worker").iterdir()
        if path.is_dir() and (path / "__init__.py").exists()
    }
    drawn = {row[0] for row in _table("The rooms")}
    assert folders <= drawn
    assert drawn - folders == {"producers/", "worker/settings.py"}


def test_the_key_table_is_every_key_of_the_code() -> None:
    in_code = {
        value
        for name, value in vars(keys).items()
        if name.isupper() and isinstance(value, str) and not name.startswith("_")
    }
    drawn = {row[0] for row in _table("Redis keys")}
    assert drawn == in_code


def test_no_key_is_spelled_outside_the_keys_module() -> None:
    """A literal ``gbq:…`` key elsewhere in the product is a second place to change."""
    spelled = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in CODE
        if path.parts[len(ROOT.parts)] in {"producers", "worker"}
        and "sandbox" not in path.parts
        and path.name != "keys.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if re.search(r"[\"']gbq:[a-z]", line)
    ]
    assert spelled == []


def test_code_cites_no_document_outside_the_repository() -> None:
    outside = re.compile(r"DESIGN §|DESIGN asks|reference §|reliability-anchors|\.\./shared/")
    citing = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in CODE
        if path.name != "test_architecture.py"  # the patterns themselves
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if outside.search(line)
    ]
    assert citing == []


def test_comments_say_why_not_when() -> None:
    """Step numbers are the project's history, not a reason a reader can use."""
    narrating = re.compile(r"\b(from|since|before|after|until|in) Step \d+|\(Step \d+\)")
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in CODE
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if narrating.search(line)
    ]
    assert found == []


def test_the_import_contracts_cover_every_room() -> None:
    """Each room of the page is named by the layered contract that lint-imports runs."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layered = " ".join(next(c for c in config["contracts"] if c["id"] == "rooms")["layers"])
    for room in ("rules", "gameball", "ledger", "coordination", "flows", "process", "ops"):
        assert f"worker.{room}" in layered


def test_the_benchmarks_use_the_harness_not_the_tests() -> None:
    importing = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "bench").rglob("*.py")
        if re.search(r"^\s*(from|import) tests\b", path.read_text(), flags=re.MULTILINE)
    ]
    assert importing == []


def test_every_sql_statement_is_in_the_ledger_package() -> None:
    """Outside ``worker/ledger``, SQLAlchemy is only engines, URLs and exceptions."""
    statement = re.compile(
        r"^\s*from sqlalchemy(\.orm)? import .*\b(select|insert|update|delete|func|text|Session)\b"
    )
    leaking = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in (ROOT / "worker").rglob("*.py")
        if "ledger" not in path.relative_to(ROOT).parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if statement.search(line)
    ]
    assert leaking == []
