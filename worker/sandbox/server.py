"""Serve the sandbox with uvicorn on loopback (``gbq sandbox``)."""

from __future__ import annotations

import logging
import signal
from types import FrameType

import uvicorn

from worker.sandbox.app import DroppedResponse, SandboxConfig, create_app

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _HideDroppedResponses(logging.Filter):
    """Dropping a response is a fault we inject on purpose, not an application error."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, DroppedResponse)


def serve(config: SandboxConfig, *, host: str = "127.0.0.1", port: int = 8099) -> None:
    """Run until interrupted (SIGINT/SIGTERM stop it cleanly)."""
    logging.getLogger("uvicorn.error").addFilter(_HideDroppedResponses())
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
            log_config=None,  # whoever starts it configures logging (text or JSON lines)
        )
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the
    # handler that was in place before it; a no-op there makes a requested stop exit 0.
    previous = {sig: signal.signal(sig, _already_stopped) for sig in STOP_SIGNALS}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _already_stopped(signum: int, frame: FrameType | None) -> None:
    """Receives the signal uvicorn re-raises after it has shut down."""
