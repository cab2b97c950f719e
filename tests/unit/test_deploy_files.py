"""docker-compose.yml, deploy/Dockerfile and deploy/supervisord.conf say only true things:
services run real `gbq` commands with settings the code knows (no Docker engine here)."""

from __future__ import annotations

import configparser
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from worker.ops.cli import COMMANDS, load_command
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SETTINGS = {f"GBQ_{name.upper()}" for name in Settings.model_fields}


def gbq_commands() -> dict[str, Any]:
    return {name: load_command(name) for name in COMMANDS}


def assert_real_command(argv: list[str]) -> None:
    command = gbq_commands()[argv[0]]  # KeyError: not a gbq subcommand
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    for word in argv[1:]:
        if word.startswith("--"):
            assert word in options, f"{argv[0]} has no option {word}"


def test_services_and_their_commands() -> None:
    """Redis, PostgreSQL, migrations, worker, scheduler and the sandbox (its own profile),
    each gbq service running a real subcommand with real options."""
    services: dict[str, Any] = COMPOSE["services"]
    assert set(services) == {"redis", "postgres", "migrate", "worker", "scheduler", "sandbox"}
    assert services["sandbox"]["profiles"] == ["sandbox"]
    for name in ("migrate", "worker", "scheduler", "sandbox"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert_real_command(services[name]["command"])


def test_redis_is_durable_and_postgres_is_used() -> None:
    """AOF on and no eviction (kombu's keys must never be evicted)."""
    redis_command = " ".join(COMPOSE["services"]["redis"]["command"])
    assert "--appendonly yes" in redis_command
    assert "--maxmemory-policy noeviction" in redis_command
    assert COMPOSE["services"]["redis"]["image"].startswith("redis:7")
    env = COMPOSE["services"]["worker"]["environment"]
    assert env["GBQ_DATABASE_URL"].startswith("postgresql://gbq:")
    assert "@postgres:5432/gbq" in env["GBQ_DATABASE_URL"]


def test_every_gbq_variable_is_a_setting() -> None:
    """No made-up GBQ_ names: each is read by worker/settings.py."""
    text = (ROOT / "docker-compose.yml").read_text()
    named = set(re.findall(r"\bGBQ_[A-Z0-9_]+", text))
    assert named
    assert named <= SETTINGS, named - SETTINGS


def test_health_checks_and_start_order() -> None:
    """Every long-running service has a health check; workers wait for migrations."""
    services = COMPOSE["services"]
    for name in ("redis", "postgres", "worker", "scheduler", "sandbox"):
        assert services[name]["healthcheck"]["test"], name
    assert services["worker"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert services["migrate"]["restart"] == "no"
    grace = int(services["worker"]["stop_grace_period"].rstrip("s"))
    assert grace > 5 + 10 + 20  # longer than one delivery can take
    scheduler_check = services["scheduler"]["healthcheck"]["test"]
    assert_real_command(scheduler_check[2:])


def test_dockerfile_installs_the_project_and_runs_gbq() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["gbq"]' in dockerfile
    assert "RUN pip install -c constraints.txt '.[worker,sandbox,postgres]'" in dockerfile
    assert "COPY pyproject.toml README.md constraints.txt ./" in dockerfile
    assert "USER gbq" in dockerfile


def test_supervisor_programs_run_real_commands_and_stop_gracefully() -> None:
    """Workers and the scheduler, restarted on death, TERM with time to finish."""
    parser = configparser.RawConfigParser()
    parser.read(ROOT / "deploy" / "supervisord.conf")
    programs = {
        s.split(":", 1)[1]: parser[s] for s in parser.sections() if s.startswith("program:")
    }
    assert set(programs) == {"gbq-worker", "gbq-scheduler"}
    for program in programs.values():
        argv = shlex.split(program["command"])
        assert argv[0] == "gbq"
        assert_real_command([word for word in argv[1:] if "%(" not in word])
        assert program["autorestart"] == "true"
        assert program["stopsignal"] == "TERM"
    assert int(programs["gbq-worker"]["stopwaitsecs"]) > 5 + 10 + 20
