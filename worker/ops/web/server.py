"""Serve the console with uvicorn (``gbq web``); SIGINT and SIGTERM stop it cleanly."""

from __future__ import annotations

import signal
from types import FrameType

import uvicorn
from starlette.applications import Starlette

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def serve(app: Starlette, *, host: str, port: int) -> None:
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            server_header=False,
            log_config=None,  # the process's own logging (text or JSON lines) applies
        )
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the
    # handler in place before it; a no-op there makes a requested stop exit 0 (a
    # supervisor would otherwise count it as a crash).
    previous = {sig: signal.signal(sig, _already_stopped) for sig in STOP_SIGNALS}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _already_stopped(signum: int, frame: FrameType | None) -> None:
    """Receives the signal uvicorn re-raises after it has shut down."""
