"""The ``gbq`` console script. ``pip install gameball-queue`` alone installs only what
checkout needs to publish; ``gbq`` then says which extra to install instead of failing
with a traceback."""

from __future__ import annotations

import sys

OUR_PACKAGES = ("worker", "producers")


def main() -> None:
    try:
        from worker.ops.cli import main as cli  # noqa: PLC0415 - the check is the point

        cli()  # each command imports its own modules when it runs: checked here too
    except ModuleNotFoundError as error:
        missing = (error.name or "").split(".")[0]
        if not missing or missing in OUR_PACKAGES:
            raise
        print(  # noqa: T201 - no logging before the CLI exists
            f"error: gbq needs the worker's packages ({missing} is not installed): "
            "pip install 'gameball-queue[worker]' (or [all] for the sandbox and the "
            "embedded Redis too)",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
