"""The contract every stream backend implements, and the URIs that name a stream.

A source hands out messages in order, each with the partition it came from and its offset
there (a NATS stream sequence, a Kafka offset, a byte position in a local log). The consumer
writes a batch durably first and only then calls :meth:`StreamSource.ack`; where to resume is
never the broker's word but the offsets stored with the data (``resume`` in :meth:`open`).
"""

from __future__ import annotations

import abc
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mloop.core.errors import InvalidInput, MloopError

SCHEMES = ("log", "nats", "kafka")
DEFAULT_PORTS = {"nats": 4222, "kafka": 9092}


class StreamUnavailable(MloopError):
    """The broker cannot be reached, refuses a request, or lost a delivery."""


@dataclass
class Fetched:
    """Messages from one fetch: parallel lists of payloads, partitions and offsets."""

    payloads: list[bytes]
    offsets: list[int]
    partitions: list[int]
    token: Any = None  # whatever the source needs to acknowledge them

    def __len__(self) -> int:
        return len(self.payloads)


class StreamSource(abc.ABC):
    """Where events come from. One consumer per (dataset, source) at a time."""

    uri: str

    @abc.abstractmethod
    def open(self, resume: dict[int, int]) -> None:
        """Connect and position after ``resume`` (partition → last offset already handled)."""

    @abc.abstractmethod
    def fetch(self, max_messages: int, timeout: float) -> Fetched:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` seconds for the first."""

    @abc.abstractmethod
    def ack(self, fetched: Sequence[Fetched]) -> None:
        """Tell the broker these messages are durable in mloop (after the write commits)."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        """What to store beside the offsets (a stream name, a topic), for humans."""
        return {}

    def warnings(self) -> list[str]:
        return []


class StreamProducer(abc.ABC):
    """Appends events to a stream; :meth:`send` returns once the broker holds them."""

    uri: str

    @abc.abstractmethod
    def send(self, payloads: Sequence[bytes]) -> int: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> StreamProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class StreamURI:
    """A parsed ``log://NAME``, ``nats://HOST:PORT/SUBJECT`` or ``kafka://HOST:PORT/TOPIC``."""

    scheme: str
    servers: str  # host:port[,host:port] (empty for log://)
    target: str  # the log's name, the NATS subject or the Kafka topic
    options: dict[str, str] = field(default_factory=dict)

    @property
    def canonical(self) -> str:
        """The URI without options: the key the source's offsets are stored under."""
        if self.scheme == "log":
            return f"log://{self.target}"
        return f"{self.scheme}://{self.servers}/{self.target}"


_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_LOG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def parse_stream_uri(uri: str) -> StreamURI:
    """Parse a stream URI; options come as a query string (``?stream=S&durable=D``)."""
    if not isinstance(uri, str) or "://" not in uri:
        raise InvalidInput(
            f"stream source {uri!r} is not a URI: use log://NAME, "
            "nats://HOST:PORT/SUBJECT or kafka://HOST:PORT/TOPIC"
        )
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidInput(
            f"unknown stream scheme {scheme!r} in {uri!r}: use log://, nats:// or kafka://"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    if scheme == "log":
        name = (parts.netloc + parts.path).strip("/")
        if not _LOG.fullmatch(name):
            raise InvalidInput(
                f"log name {name!r} is not allowed: use 1-128 letters, digits, '.', '_' or '-'"
            )
        return StreamURI("log", "", name, options)
    target = parts.path.lstrip("/")
    if not target:
        what = "subject" if scheme == "nats" else "topic"
        raise InvalidInput(f"{uri!r} names no {what}: use {scheme}://HOST:PORT/{what.upper()}")
    if scheme == "kafka" and not _TOPIC.fullmatch(target):
        raise InvalidInput(f"Kafka topic {target!r} is not allowed (letters, digits, '._-')")
    if scheme == "nats" and not _valid_subject(target):
        raise InvalidInput(
            f"NATS subject {target!r} is not allowed: dot-separated tokens, '*' for one token, "
            "'>' last for the rest"
        )
    servers = []
    for server in (parts.netloc or "127.0.0.1").split(","):
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            host, port = server, str(DEFAULT_PORTS[scheme])
        servers.append(f"{host}:{port}")
    return StreamURI(scheme, ",".join(servers), target, options)


def _valid_subject(subject: str) -> bool:
    tokens = subject.split(".")
    for i, token in enumerate(tokens):
        if not token or any(c.isspace() for c in token):
            return False
        if (">" in token and (token != ">" or i != len(tokens) - 1)) or (
            "*" in token and token != "*"
        ):
            return False
    return True


def option_int(uri: StreamURI, key: str, default: int) -> int:
    value = uri.options.get(key)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"option {key}={value!r} of {uri.canonical} is not a number") from None


def safe_token(text: str) -> str:
    """``text`` as a NATS consumer or Kafka group name: letters, digits, '_' and '-'."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)
