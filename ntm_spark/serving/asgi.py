"""Small ASGI plumbing shared by ``ntm serve``'s request guard and its SageMaker routes."""

from __future__ import annotations

from typing import Awaitable, Callable


def with_content_length(headers: list, body: bytes) -> list:
    """Return ``headers`` with ``content-length`` set to the length of a rewritten ``body``."""
    return [(k, v) for k, v in headers if k != b"content-length"] + [(b"content-length", str(len(body)).encode())]


def replay_body(body: bytes, then: Callable[[], Awaitable[dict]]) -> Callable[[], Awaitable[dict]]:
    """Return an ASGI ``receive`` that yields the already-read ``body`` once, then defers to ``then``."""
    replayed = False

    async def receive() -> dict:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await then()

    return receive
