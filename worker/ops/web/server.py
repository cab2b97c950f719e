"""Serve the console with uvicorn (``gbq web``); SIGINT and SIGTERM stop it cleanly."""

from __future__ import annotations

import uvicorn
from starlette.applications import Starlette


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
        )
    )
    server.run()
