"""docs/sandbox.md documents every fault the sandbox accepts, and only those."""

from __future__ import annotations

import re
from pathlib import Path

from worker.sandbox.faults import FaultUpdate

SANDBOX_DOC = Path(__file__).resolve().parents[2] / "docs" / "sandbox.md"


def test_every_fault_setting_is_documented_and_every_documented_one_exists() -> None:
    text = SANDBOX_DOC.read_text()
    settings = text[text.index("| setting | effect |") : text.index("### Rehearsing")]
    documented = set(re.findall(r"`(\w+)`", settings))
    accepted = set(FaultUpdate.model_fields) - {"reset"}
    assert accepted - documented == set()
    assert documented - accepted == set()


def test_every_rehearsal_sets_faults_the_sandbox_accepts() -> None:
    text = SANDBOX_DOC.read_text()
    rehearsals = text[text.index("### Rehearsing") : text.index("Other controls")]
    payloads = re.findall(r"`(\{[^`]*\})`", rehearsals)
    assert len(payloads) >= 8
    for payload in payloads:
        FaultUpdate.model_validate_json(payload)  # raises on a field the sandbox refuses
