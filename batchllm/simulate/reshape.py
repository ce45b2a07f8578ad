"""Format-blind changes to request and reply bodies: what the flow does around each format.

Owns the fingerprint of a request body (``"stream": false`` left out, so an online request and
its batch line are the same request), whether a request says not to stream, a reply emptied of
its text (the "empty" fault), and a reply sent as a server-sent event stream (a server that
streams unless told not to). Each format's own replies live in its module.
"""

from __future__ import annotations

import hashlib

import orjson

from batchllm.simulate import wire


def body_digest(body: bytes) -> bytes:
    """A request body's fingerprint (drives reply content and duplicates), ``"stream": false``
    left out: batch lines do not carry it, and the same request answers the same either way."""
    if b'"stream"' in body:
        data = wire.parse_json(body)
        if isinstance(data, dict) and data.get("stream") is False:
            del data["stream"]
            body = orjson.dumps(data)
    return hashlib.blake2b(body, digest_size=16).digest()


def no_stream(body: bytes) -> bool:
    """Whether a request body says ``"stream": false``."""
    data = wire.parse_json(body) if b'"stream"' in body else None
    return isinstance(data, dict) and data.get("stream") is False


def emptied(body: bytes) -> bytes:
    """A reply without its text, whatever the format; the usage stays."""
    data = orjson.loads(body)
    for choice in data.get("choices") or []:
        choice["message"]["content"] = None
    for candidate in data.get("candidates") or []:
        candidate["content"]["parts"] = []
    for key in ("output", "content"):
        if isinstance(data.get(key), list):
            data[key] = []
    return orjson.dumps(data)


def as_events(body: bytes) -> bytes:
    """A reply as a server-sent event stream: the whole reply in one event, then the end."""
    return b"data: " + body + b"\n\ndata: [DONE]\n\n"
