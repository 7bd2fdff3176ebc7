"""The REST API: one router per domain, thin over the services."""

from mloop.api.app import create_app

__all__ = ["create_app"]
