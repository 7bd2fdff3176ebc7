"""Streaming sources: a local append-only log, NATS JetStream and Kafka, consumed into
dataset versions exactly once (offsets stored with the data, events deduplicated by id)."""

from mloop.data.streams.base import (
    Fetched,
    StreamProducer,
    StreamSource,
    StreamUnavailable,
    StreamURI,
    mask_url,
    parse_stream_uri,
)
from mloop.data.streams.consumer import (
    QUARANTINE_COLUMNS,
    StreamConsumer,
    StreamService,
    StreamStats,
    open_producer,
    open_source,
)
from mloop.data.streams.events import DedupWindow, parse_batch
from mloop.data.streams.log import LocalLog
from mloop.data.streams.sinks import StreamSink, open_sink

__all__ = [
    "QUARANTINE_COLUMNS",
    "DedupWindow",
    "Fetched",
    "LocalLog",
    "StreamConsumer",
    "StreamProducer",
    "StreamService",
    "StreamSink",
    "StreamSource",
    "StreamStats",
    "StreamURI",
    "StreamUnavailable",
    "mask_url",
    "open_producer",
    "open_sink",
    "open_source",
    "parse_batch",
    "parse_stream_uri",
]
