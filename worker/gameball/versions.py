"""The Gameball API versions gbq speaks, and the one it speaks unless told otherwise."""

from __future__ import annotations

from typing import Final, Literal, TypeAlias

ApiVersion: TypeAlias = Literal["v3.0", "v4.0", "v4.1"]
API_VERSIONS: Final[tuple[ApiVersion, ...]] = ("v3.0", "v4.0", "v4.1")
DEFAULT_API_VERSION: Final[ApiVersion] = "v4.1"


def redeems_in_the_order(version: ApiVersion) -> bool:
    """v3.0 takes redeemed points inside the order call; v4 only through a points hold."""
    return version == "v3.0"
