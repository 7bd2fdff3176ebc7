"""The contract every stream backend implements, and the URIs that name a stream.

A source hands out messages in order, each with the partition it came from and its offset
there (a NATS stream sequence, a Kafka offset, a byte position in a local log). The consumer
writes a batch durably first and only then calls :meth:`StreamSource.ack`; where to resume is
never the broker's word but the offsets stored with the data (``resume`` in :meth:`open`).
"""

from __future__ import annotations

import abc
import hashlib
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

    code = "STREAM_UNAVAILABLE"
    http_status = 503


def mask_url(url: str) -> str:
    """``url`` with its secret masked: the password of ``scheme://user:PASSWORD@host``, or the
    whole of ``scheme://TOKEN@host`` (a NATS token). What may be stored, logged or printed."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    userinfo, at, hosts = rest[:end].rpartition("@")
    if not at:
        return url
    return f"{scheme}://{_masked(userinfo)}@{hosts}{rest[end:]}"


def _masked(userinfo: str) -> str:
    user, colon, _ = userinfo.partition(":")
    return f"{user}:***" if colon else "***"


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
    def open(self, resume: dict[int, int], stored: dict[str, Any] | None = None) -> None:
        """Connect and position after ``resume`` (partition → last offset already handled);
        ``stored`` is the whole state stored with those offsets (what :meth:`describe` said),
        to tell a stream that was replaced since. Raises :class:`StreamUnavailable` when the
        broker cannot be reached or the offsets are beyond the stream's end."""

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
    """A parsed ``log://NAME``, ``nats://[USER:PASSWORD@]HOST:PORT/SUBJECT`` or
    ``kafka://[USER:PASSWORD@]HOST:PORT/TOPIC``."""

    scheme: str
    servers: str  # host:port[,host:port] (empty for log://), never credentials
    target: str  # the log's name, the NATS subject or the Kafka topic
    options: dict[str, str] = field(default_factory=dict)
    userinfo: str = field(default="", repr=False)  # "user:password" or "user" or a token

    @property
    def canonical(self) -> str:
        """The URI without options and with the password masked: what versions, lineage,
        audit records, summaries and messages show."""
        if self.scheme == "log":
            return f"log://{self.target}"
        at = _masked(self.userinfo) + "@" if self.userinfo else ""
        return f"{self.scheme}://{at}{self.servers}/{self.target}"

    @property
    def key(self) -> str:
        """What the offsets are stored under: the stream itself (scheme and subject or topic),
        never the server addresses or credentials, so ``localhost`` for ``127.0.0.1``, another
        broker of the cluster or a rotated password resumes from the same offsets."""
        if self.scheme == "log":
            return f"log://{self.target}"
        return f"{self.scheme}:{self.target}"

    @property
    def legacy_key(self) -> str:
        """The key offsets were stored under before :attr:`key` (the whole URI)."""
        if self.scheme == "log":
            return self.key
        at = self.userinfo + "@" if self.userinfo else ""
        return f"{self.scheme}://{at}{self.servers}/{self.target}"

    @property
    def secret(self) -> str:
        """The password, or the token of ``nats://TOKEN@HOST``."""
        return self.userinfo.partition(":")[2] if ":" in self.userinfo else self.userinfo

    def scrub(self, message: str) -> str:
        """``message`` with this URI's secret (a client library may echo it) masked."""
        return message.replace(self.secret, "***") if self.secret else message


_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_LOG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def parse_stream_uri(uri: str) -> StreamURI:
    """Parse a stream URI; options come as a query string (``?stream=S&durable=D``)."""
    if not isinstance(uri, str) or "://" not in uri:
        raise InvalidInput(
            f"stream source {mask_url(uri) if isinstance(uri, str) else uri!r} is not a URI: "
            "use log://NAME, "
            "nats://HOST:PORT/SUBJECT or kafka://HOST:PORT/TOPIC"
        )
    shown = mask_url(uri)
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise InvalidInput(f"stream source {shown!r} is not a URI: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidInput(
            f"unknown stream scheme {scheme!r} in {shown!r}: use log://, nats:// or kafka://"
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
        raise InvalidInput(f"{shown!r} names no {what}: use {scheme}://HOST:PORT/{what.upper()}")
    if scheme == "kafka" and not _TOPIC.fullmatch(target):
        raise InvalidInput(f"Kafka topic {target!r} is not allowed (letters, digits, '._-')")
    if scheme == "nats" and not _valid_subject(target):
        raise InvalidInput(
            f"NATS subject {target!r} is not allowed: dot-separated tokens, '*' for one token, "
            "'>' last for the rest"
        )
    userinfo, _, netloc = parts.netloc.rpartition("@")
    servers = []
    for server in (netloc or "127.0.0.1").split(","):
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            host, port = server, str(DEFAULT_PORTS[scheme])
        servers.append(f"{host}:{port}")
    return StreamURI(scheme, ",".join(servers), target, options, userinfo)


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


def consumer_name(dataset: str, workspace: str) -> str:
    """The broker-side name of the consumer of ``dataset`` in ``workspace`` (a NATS durable, a
    Kafka group): ``mloop-<dataset>-<hash>``. The hash of the exact dataset name and of the
    workspace keeps ``a.b`` and ``a_b``, or one dataset name in two workspaces, apart."""
    digest = hashlib.sha256(f"{workspace}\0{dataset}".encode()).hexdigest()[:10]
    return f"mloop-{safe_token(dataset)[:80]}-{digest}"
