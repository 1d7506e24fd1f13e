"""The ESL wire format, sans-I/O: parsing what FreeSWITCH sends, formatting what we send.

Rules (verified byte for byte against ``tests/fixtures/esl``, FreeSWITCH 1.11.1):

1. A message is a header block, lines ``Name: value`` ended by ``\\n``, closed by a
   blank line; then, only if the block has ``Content-Length``, exactly that many
   body bytes. Nothing separates messages: the next one starts right after.
2. The outbound socket's reply to ``connect`` is one header block with about 150
   URL-encoded channel headers (``Event-Name: CHANNEL_DATA`` first), then
   ``Content-Type: command/reply``, ``Reply-Text: %2BOK%0A``, ``Socket-Mode``,
   ``Control``, and no ``Content-Length``: rule 1 already covers it.
3. ``text/event-plain`` bodies are themselves a header block with URL-encoded
   values, ended by a blank line; an event with its own ``Content-Length`` (e.g.
   BACKGROUND_JOB) has that many body bytes right after it instead.
   ``text/event-json`` bodies are one JSON object, values not encoded, the event
   body under ``_body``.
4. Header names are kept as on the wire; lookups ignore case, as FreeSWITCH does.
   Values of :class:`EslMessage` are raw (still URL-encoded where FreeSWITCH
   encoded them); :class:`EslEvent` values are decoded.
5. The parser is bounded: a header block over ``max_header_bytes`` or a
   ``Content-Length`` over ``max_body_bytes`` raises :class:`EslProtocolError`, as
   does anything that is not a header line (checked as soon as a line is complete,
   or at once for control bytes). The caller drops the connection; the parser is
   unusable after an error.
6. Formatting: a command is its line, header lines and a blank line (``"\\n\\n"``
   at the end). Values go out verbatim (``execute-app-arg`` is not encoded);
   a newline inside any part is refused, so nothing can inject a second command.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The media format and URL coding live in their own modules; re-exported here so imports keep working.
from voicebot.esl.channelmedia import ChannelMedia as ChannelMedia
from voicebot.esl.channelmedia import channel_media as channel_media
from voicebot.esl.channelmedia import media_format as media_format
from voicebot.esl.urlcode import url_decode as url_decode
from voicebot.esl.urlcode import url_encode as url_encode

MIB = 1 << 20
DEFAULT_MAX_HEADER_BYTES = MIB
DEFAULT_MAX_BODY_BYTES = 8 * MIB  # `show channels` on a busy switch can pass 1 MiB

_HEADER_NAME = re.compile(rb"[A-Za-z0-9_.\-]+\Z")
_CONTROL = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")  # anything but \t, \n (and \r, stripped)
_EXCERPT = 80


class EslProtocolError(ValueError):
    """The peer sent something that is not ESL. ``seen`` holds the offending bytes (an excerpt)."""

    def __init__(self, message: str, seen: bytes = b"") -> None:
        super().__init__(f"{message}: {seen[:_EXCERPT]!r}" if seen else message)
        self.seen = seen[:_EXCERPT]


def _get(pairs: Iterable[tuple[str, str]], name: str) -> str | None:
    folded = name.lower()
    for key, value in pairs:
        if key.lower() == folded:
            return value
    return None


# ---------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class EslMessage:
    """One ESL message: headers in wire order and case, raw values, and the body bytes."""

    headers: tuple[tuple[str, str], ...]
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first header called ``name`` (any case), raw, or ``default``."""
        value = _get(self.headers, name)
        return default if value is None else value

    @property
    def content_type(self) -> str:
        """``Content-Type``, e.g. ``command/reply``, ``api/response``, ``text/event-plain``; "" if absent."""
        return self.get("Content-Type") or ""

    @property
    def reply_text(self) -> str:
        """``Reply-Text``, URL-decoded (the connect reply sends ``%2BOK%0A``), "" if absent."""
        return url_decode(self.get("Reply-Text") or "")

    @property
    def ok(self) -> bool:
        """True for a ``+OK`` command reply or API response."""
        text = self.body.decode("utf-8", "replace") if self.content_type == "api/response" else self.reply_text
        return text.startswith("+OK")

    @property
    def is_channel_data(self) -> bool:
        """True for the outbound socket's reply to ``connect`` (channel data, no Content-Length)."""
        return self.content_type == "command/reply" and self.get("Event-Name") == "CHANNEL_DATA"

    @property
    def is_event(self) -> bool:
        """True for ``text/event-plain`` and ``text/event-json`` messages."""
        return self.content_type in ("text/event-plain", "text/event-json")


@dataclass(frozen=True, slots=True)
class EslEvent:
    """An event: name, decoded headers in wire order, and its own body (e.g. a BACKGROUND_JOB result)."""

    name: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        """Header ``name`` (exact case first, then any case), or ``default``."""
        if name in self.headers:
            return self.headers[name]
        value = _get(self.headers.items(), name)
        return default if value is None else value

    @property
    def unique_id(self) -> str:
        """The channel's ``Unique-ID``; "" for events without a channel (BACKGROUND_JOB)."""
        return self.get("Unique-ID") or ""

    @property
    def body_text(self) -> str:
        """The body as text (e.g. ``+OK <uuid>\\n`` of a BACKGROUND_JOB)."""
        return self.body.decode("utf-8", "replace")


# ---------------------------------------------------------------- parsing


def _header_line(line: bytes) -> tuple[str, str]:
    """``Name: value`` → (name, value); anything else is not ESL."""
    if line.endswith(b"\r"):
        line = line[:-1]
    name, colon, value = line.partition(b":")
    if not colon or not _HEADER_NAME.match(name):
        raise EslProtocolError("expected a header line 'Name: value'", line)
    if value.startswith(b" "):
        value = value[1:]
    return name.decode("ascii"), value.decode("utf-8", "replace")


def parse_header_block(block: bytes) -> tuple[tuple[str, str], ...]:
    """Header lines (no blank line inside) → (name, raw value) pairs in order."""
    bad = _CONTROL.search(block)
    if bad:
        raise EslProtocolError("control bytes in a header block", block[bad.start():])
    return tuple(_header_line(line) for line in block.split(b"\n") if line not in (b"", b"\r"))


def _content_length(headers: Sequence[tuple[str, str]], limit: int) -> int:
    raw = _get(headers, "Content-Length")
    if raw is None:
        return 0
    if not raw.isdigit():
        raise EslProtocolError("Content-Length is not a number", raw.encode())
    length = int(raw)
    if length > limit:
        raise EslProtocolError(f"Content-Length {length} over the limit of {limit} bytes", raw.encode())
    return length


class EslParser:
    """Incremental ESL message parser: ``feed`` bytes as they arrive, get whole messages back.

    Messages may be split anywhere and several may come in one read. Errors are
    final: the parser raises the same :class:`EslProtocolError` on every later
    feed. The error's ``messages`` holds the messages completed before it.
    """

    def __init__(self, max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self._buf = bytearray()
        self._scan = 0  # bytes of _buf already searched for the blank line and checked
        self._headers: tuple[tuple[str, str], ...] | None = None  # block read, body pending
        self._need = 0
        self._error: EslProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for a message not complete yet."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[EslMessage]:
        """Add received bytes; return the messages they complete, in order."""
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[EslMessage] = []
        try:
            while (message := self._next()) is not None:
                out.append(message)
        except EslProtocolError as err:
            err.messages = tuple(out)  # type: ignore[attr-defined]
            self._error = err
            raise
        return out

    def feed_eof(self) -> None:
        """The peer closed: raise if it left half a message."""
        if self._error is None and (self._buf.strip(b"\n") or self._headers is not None):
            raise EslProtocolError("connection closed inside a message", bytes(self._buf[:_EXCERPT]))

    def _next(self) -> EslMessage | None:
        if self._headers is None and not self._read_header_block():
            return None
        assert self._headers is not None
        if len(self._buf) < self._need:
            return None
        message = EslMessage(self._headers, bytes(self._buf[: self._need]))
        del self._buf[: self._need]
        self._headers, self._need, self._scan = None, 0, 0
        return message

    def _read_header_block(self) -> bool:
        while self._buf[:1] == b"\n" or self._buf[:2] == b"\r\n":  # tolerate stray blank lines
            del self._buf[: 1 if self._buf[:1] == b"\n" else 2]
        end = self._buf.find(b"\n\n", max(0, self._scan - 1))
        if end < 0:
            self._check_partial()
            return False
        if end > self.max_header_bytes:
            raise EslProtocolError(f"header block over {self.max_header_bytes} bytes", bytes(self._buf[:_EXCERPT]))
        headers = parse_header_block(bytes(self._buf[:end]))
        self._need = _content_length(headers, self.max_body_bytes)
        self._headers = headers
        del self._buf[: end + 2]
        self._scan = 0
        return True

    def _check_partial(self) -> None:
        """Reject garbage early: complete lines must be headers, no control bytes anywhere."""
        if len(self._buf) > self.max_header_bytes:
            raise EslProtocolError(f"header block over {self.max_header_bytes} bytes", bytes(self._buf[:_EXCERPT]))
        bad = _CONTROL.search(self._buf, self._scan)
        if bad:
            raise EslProtocolError("control bytes in a header block", bytes(self._buf[bad.start():]))
        last_nl = self._buf.rfind(b"\n")
        if last_nl >= self._scan:
            for line in bytes(self._buf[self._scan:last_nl]).split(b"\n"):
                if line and line != b"\r":
                    _header_line(line)
            self._scan = last_nl + 1


def parse_messages(data: bytes, **limits: int) -> list[EslMessage]:
    """All messages in ``data`` (a whole captured stream); raises if it ends inside one."""
    parser = EslParser(**limits)
    messages = parser.feed(data)
    parser.feed_eof()
    return messages


# ---------------------------------------------------------------- events


def _first_wins(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Pairs → dict in wire order; a repeated name keeps its first value."""
    out: dict[str, str] = {}
    for name, value in pairs:
        out.setdefault(name, value)
    return out


def _plain_event(body: bytes) -> EslEvent:
    end = body.find(b"\n\n")
    block, rest = (body, b"") if end < 0 else (body[:end], body[end + 2:])
    headers = _first_wins((name, url_decode(value)) for name, value in parse_header_block(block))
    length = headers.get("Content-Length")
    event_body = b""
    if length is not None:
        if not length.isdigit() or int(length) > len(rest):
            raise EslProtocolError("event body shorter than its Content-Length", rest)
        event_body = rest[: int(length)]
    return EslEvent(headers.get("Event-Name", ""), headers, event_body)


def _json_value(value: Any) -> str:
    """A JSON event value as plain events carry it: arrays become ``ARRAY::a|:b``."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "ARRAY::" + "|:".join(_json_value(item) for item in value)
    return json.dumps(value, separators=(",", ":"))


def _json_event(body: bytes) -> EslEvent:
    try:
        pairs = json.loads(body, object_pairs_hook=lambda p: p)  # keep repeated names, as plain does
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EslProtocolError(f"text/event-json body is not JSON ({err})", body) from None
    if not isinstance(pairs, list):
        raise EslProtocolError("text/event-json body is not a JSON object", body)
    headers = _first_wins((str(k), _json_value(v)) for k, v in pairs if k != "_body")
    raw_body = next((v for k, v in pairs if k == "_body"), None)
    event_body = b"" if raw_body is None else _json_value(raw_body).encode("utf-8")
    return EslEvent(headers.get("Event-Name", ""), headers, event_body)


def parse_event(message: EslMessage) -> EslEvent:
    """The event carried by a ``text/event-plain``/``text/event-json`` message, or the connect reply."""
    if message.content_type == "text/event-plain":
        return _plain_event(message.body)
    if message.content_type == "text/event-json":
        return _json_event(message.body)
    if message.is_channel_data:
        return EslEvent("CHANNEL_DATA", _first_wins((name, url_decode(value)) for name, value in message.headers))
    raise EslProtocolError(f"not an event (Content-Type {message.content_type!r})",
                           message.content_type.encode())


# ---------------------------------------------------------------- formatting: what we send


def _clean(part: str, what: str) -> str:
    if "\n" in part or "\r" in part:
        raise ValueError(f"newline in ESL {what} {part!r} would start another command")
    return part


def format_command(command: str, headers: Mapping[str, str] | None = None, body: bytes = b"") -> bytes:
    """``command`` line, header lines, blank line (ends in ``\\n\\n``); a body gets its Content-Length."""
    lines = [_clean(command, "command")]
    for name, value in (headers or {}).items():
        lines.append(f"{_clean(name, 'header name')}: {_clean(str(value), 'header value')}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\n".join(lines) + "\n\n").encode("utf-8") + body


def format_sendmsg(uuid: str | None, call_command: str, headers: Mapping[str, str] | None = None) -> bytes:
    """``sendmsg [uuid]`` with ``call-command`` first, then ``headers`` in the order given."""
    command = f"sendmsg {uuid}" if uuid else "sendmsg"
    return format_command(command, {"call-command": call_command, **(headers or {})})


def format_execute(uuid: str | None, app: str, arg: str | None = None, *, event_uuid: str | None = None,
                   event_lock: bool = False) -> bytes:
    """``sendmsg`` execute of ``app`` (header order as captured: name, arg, event-lock, Event-UUID)."""
    headers = {"execute-app-name": app}
    if arg is not None:
        headers["execute-app-arg"] = arg
    if event_lock:
        headers["event-lock"] = "true"
    if event_uuid:
        headers["Event-UUID"] = event_uuid
    return format_sendmsg(uuid, "execute", headers)


def format_unicast(uuid: str | None, *, local_ip: str, local_port: int, remote_ip: str, remote_port: int,
                   transport: str = "udp", native: bool = False) -> bytes:
    """``sendmsg`` unicast; ``local-*`` is FreeSWITCH's side, ``remote-*`` ours (docs/freeswitch.md)."""
    headers = {"local-ip": local_ip, "local-port": str(local_port), "remote-ip": remote_ip,
               "remote-port": str(remote_port), "transport": transport}
    if native:
        headers["flags"] = "native"
    return format_sendmsg(uuid, "unicast", headers)


def format_hangup(uuid: str | None, cause: str = "NORMAL_CLEARING") -> bytes:
    """``sendmsg`` hangup with ``hangup-cause``."""
    return format_sendmsg(uuid, "hangup", {"hangup-cause": cause})


# ---------------------------------------------------------------- formatting: what FreeSWITCH sends


def format_reply(text: str, extra: Sequence[tuple[str, str]] = ()) -> bytes:
    """A ``command/reply`` with ``Reply-Text`` and any extra headers (bgapi adds ``Job-UUID``)."""
    lines = ["Content-Type: command/reply", f"Reply-Text: {text}", *(f"{k}: {v}" for k, v in extra)]
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def format_api_response(body: str | bytes) -> bytes:
    """An ``api/response`` carrying ``body`` (bytes sent verbatim)."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    return f"Content-Type: api/response\nContent-Length: {len(data)}\n\n".encode() + data


def serialize_plain(headers: Iterable[tuple[str, str]], body: bytes = b"") -> bytes:
    """An event as ``switch_event_serialize`` writes it: encoded header lines, then the body or a blank line."""
    text = "".join(f"{name}: {url_encode(value)}\n" for name, value in headers)
    tail = f"Content-Length: {len(body)}\n\n".encode() + body if body else b"\n"
    return text.encode("utf-8") + tail


def serialize_json(headers: Iterable[tuple[str, str]], body: bytes = b"") -> bytes:
    """An event as ``switch_event_serialize_json`` writes it (repeated names kept, body under ``_body``)."""
    pairs = list(headers)
    if body:
        pairs += [("Content-Length", str(len(body))), ("_body", body.decode("utf-8", "replace"))]
    items = (json.dumps(k, ensure_ascii=False) + ":" + json.dumps(v, ensure_ascii=False) for k, v in pairs)
    return ("{" + ",".join(items) + "}").encode("utf-8")


def format_event(headers: Iterable[tuple[str, str]], body: bytes = b"", fmt: str = "plain") -> bytes:
    """A whole ``text/event-plain`` or ``text/event-json`` message."""
    if fmt not in ("plain", "json"):
        raise ValueError(f"event format {fmt!r} is not supported (plain, json)")
    data = serialize_plain(headers, body) if fmt == "plain" else serialize_json(headers, body)
    return f"Content-Length: {len(data)}\nContent-Type: text/event-{fmt}\n\n".encode() + data


def format_channel_data(headers: Iterable[tuple[str, str]], *, mode: str = "async", control: str = "full") -> bytes:
    """The outbound socket's reply to ``connect``: channel headers, encoded, no Content-Length."""
    tail = [("Content-Type", "command/reply"), ("Reply-Text", "+OK\n"), ("Socket-Mode", mode), ("Control", control)]
    return serialize_plain([*headers, *tail])


GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"


def format_disconnect_notice(session_uuid: str | None = None, message: str = GOODBYE) -> bytes:
    """The notice sent right before FreeSWITCH closes a connection (exit, auth failure, end of linger)."""
    data = message.encode("utf-8")
    session = f"Controlled-Session-UUID: {session_uuid}\nContent-Disposition: disconnect\n" if session_uuid else ""
    return f"Content-Type: text/disconnect-notice\n{session}Content-Length: {len(data)}\n\n".encode() + data


def format_linger_notice(session_uuid: str, channel_name: str, linger_s: int) -> bytes:
    """The notice an outbound socket gets when its channel hangs up under ``linger`` (-1 = until we close)."""
    return (f"Content-Type: text/disconnect-notice\nControlled-Session-UUID: {session_uuid}\n"
            f"Content-Disposition: linger\nChannel-Name: {channel_name}\nLinger-Time: {linger_s}\n"
            "Content-Length: 0\n\n").encode()
