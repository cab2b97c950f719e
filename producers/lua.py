"""Lua scripts live in ``.lua`` files beside the module that runs them, read once at import."""

from __future__ import annotations

from importlib import resources


def script(package: str, name: str) -> str:
    """The source of ``name``.lua shipped in ``package``."""
    return resources.files(package).joinpath(f"{name}.lua").read_text(encoding="utf-8")
