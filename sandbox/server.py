"""Serve the sandbox with uvicorn on loopback (``gbq sandbox``)."""

from __future__ import annotations

import logging

import uvicorn

from sandbox.app import DroppedResponse, SandboxConfig, create_app


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
        )
    )
    server.run()
