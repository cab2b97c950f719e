"""An httpx transport that keeps every exchange, to judge both sides by Gameball's OpenAPI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import parse_qsl

import httpx

from tests.openapi import contract


@dataclass(frozen=True)
class Exchange:
    method: str
    path: str
    query: dict[str, str]
    body: object
    status: int
    answer: object

    def errors(self) -> list[str]:
        """What breaks the document, each prefixed with the call and the side."""
        call = f"{self.method} {self.path}"
        asked = contract.request_errors(self.method, self.path, self.body, self.query)
        answered = contract.answer_errors(self.method, self.path, self.status, self.answer)
        return [f"{call} request: {e}" for e in asked] + [
            f"{call} answer {self.status}: {e}" for e in answered
        ]


class RecordingTransport(httpx.BaseTransport):
    """Sends through a real HTTP transport and records what went and what came back."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self.exchanges: list[Exchange] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        content = response.read()
        response.close()
        sent = request.read()
        self.exchanges.append(
            Exchange(
                method=request.method,
                path=request.url.path,
                query=dict(parse_qsl(request.url.query.decode())),
                body=json.loads(sent) if sent else None,
                status=response.status_code,
                answer=json.loads(content) if content else None,
            )
        )
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    def close(self) -> None:
        self._inner.close()
