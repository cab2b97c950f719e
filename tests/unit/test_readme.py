"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_python_examples() -> None:
    """There is something to run (a renamed fence would silently skip the next test)."""
    assert BLOCKS


@pytest.mark.parametrize("block", BLOCKS)
def test_readme_example_runs(block: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each Python block executes and its asserts hold."""
    exec(compile(block, str(README), "exec"), {})  # noqa: S102 - our own README
    capsys.readouterr()


def test_every_setting_is_in_the_configuration_table() -> None:
    """Each GBQ_ variable the code reads is documented (and spelled out in full)."""
    from worker.settings import Settings  # noqa: PLC0415 - only this test needs it

    text = README.read_text()
    missing = [
        f"GBQ_{name.upper()}"
        for name in Settings.model_fields
        if f"`GBQ_{name.upper()}`" not in text
    ]
    assert missing == []


@pytest.mark.parametrize(
    "page", [README, *sorted((README.parent / "docs").glob("*.md"))], ids=lambda p: p.name
)
def test_every_test_a_page_cites_exists(page: Path) -> None:
    """The README and docs/ name tests as proof: each must exist under tests/."""
    root = README.parent
    defined = {
        name
        for path in (root / "tests").rglob("test_*.py")
        for name in re.findall(r"^def (test_\w+)", path.read_text(), flags=re.MULTILINE)
    }
    files = {path.name for path in (root / "tests").rglob("test_*.py")}
    cited = set(re.findall(r"\b(test_\w+)\b", page.read_text()))
    missing = sorted(name for name in cited if name not in defined and f"{name}.py" not in files)
    assert missing == []


def test_the_readme_cites_its_proofs() -> None:
    """The pattern above still finds the promise table's tests."""
    assert len(set(re.findall(r"\b(test_\w+)\b", README.read_text()))) > 20
