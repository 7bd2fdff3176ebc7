"""The one authentication/authorization check every route passes.

In local single-user mode it admits everyone as the OS user that runs the server; the
multi-user mode (tokens, roles) plugs in here without touching a route. FastAPI routes pass it
as the ``authenticate`` dependency; the serving data plane (``api/serving.py``), which answers
before FastAPI, calls :func:`actor_for` itself.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import Request

from mloop.security import local_actor


def actor_for(_headers: Iterable[tuple[bytes, bytes]]) -> str:
    """Who sends a request with these headers (raises Unauthorized/Forbidden when refused)."""
    return local_actor()


async def authenticate(request: Request) -> str:
    actor = actor_for(request.scope["headers"])
    request.state.actor = actor
    return actor
