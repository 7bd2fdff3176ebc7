"""The REST API: one router per domain, thin over the services; the serving data plane in
front of them; running it all under uvicorn."""

from mloop.api.app import create_app
from mloop.api.server import (
    OPTIONS_ENV,
    NoDelayHttpToolsProtocol,
    for_uvicorn,
    one_thread_per_worker,
    worker_app,
)

__all__ = [
    "OPTIONS_ENV",
    "NoDelayHttpToolsProtocol",
    "create_app",
    "for_uvicorn",
    "one_thread_per_worker",
    "worker_app",
]
