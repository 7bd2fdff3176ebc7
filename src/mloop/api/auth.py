"""The one authentication/authorization dependency every route passes.

In local single-user mode it admits everyone as the OS user that runs the server; the
multi-user mode (tokens, roles) plugs in here without touching a route.
"""

from __future__ import annotations

from fastapi import Request

from mloop.security import local_actor


async def authenticate(request: Request) -> str:
    actor = local_actor()
    request.state.actor = actor
    return actor
