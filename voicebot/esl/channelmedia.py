"""The unicast frame format of a channel (codec, rate, ptime), read from its ESL headers; sans-I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from voicebot.esl.urlcode import url_decode

_CODEC_STRING = re.compile(r"(?:[A-Z0-9_]+\.)?(?P<codec>[A-Za-z0-9\-]+)@(?P<rate>\d+)h(?:@(?P<ptime>\d+)i)?")
_G711 = ("PCMU", "PCMA")


@dataclass(frozen=True, slots=True)
class ChannelMedia:
    """The unicast frame format of a channel.

    ``codec`` is the read codec (PCMU, PCMA, L16, ...), ``rate`` in Hz, ``ptime_ms``
    the packet time. ``frame_bytes`` is one UDP datagram: s16le at ``rate`` without
    ``flags: native``; with it, G.711 bytes (one per sample) for PCMU/PCMA.
    """

    codec: str
    rate: int
    ptime_ms: int
    frame_bytes: int
    native: bool = False

    @property
    def samples_per_frame(self) -> int:
        """Samples in one datagram."""
        return self.rate * self.ptime_ms // 1000

    @property
    def wire_codec(self) -> str:
        """How datagrams are encoded, for :func:`voicebot.audio.codecs.decode`: L16 (s16le), PCMU or PCMA."""
        return self.codec if self.native and self.codec in _G711 else "L16"


def _codec_strings(headers: Mapping[str, str]) -> list[re.Match[str]]:
    keys = ("variable_rtp_last_audio_codec_string", "variable_ep_codec_string")
    found = (_CODEC_STRING.search(url_decode(headers.get(k, ""))) for k in keys)
    return [m for m in found if m]


def _first(headers: Mapping[str, str], keys: Sequence[str]) -> str:
    return next((url_decode(headers[k]) for k in keys if headers.get(k)), "")


def channel_media(headers: Mapping[str, str], *, native: bool = False) -> ChannelMedia:
    """Unicast frame format from channel headers (an event, the connect reply or ``uuid_dump``).

    Read codec: ``Channel-Read-Codec-Name``/``-Rate``, else ``variable_read_codec``/
    ``variable_read_rate``, else ``variable_rtp_use_codec_name``/``_rate``, else the codec
    string (``variable_rtp_last_audio_codec_string``, ``variable_ep_codec_string``:
    ``PCMA@8000h@20i``). Ptime: ``variable_rtp_use_codec_ptime``, else the codec
    string, else 20 ms (loopback legs carry no ptime; they run at 20 ms). A SIP
    channel's connect reply, before answer, has only ``variable_ep_codec_string``.
    """
    strings = _codec_strings(headers)
    codec = _first(headers, ("Channel-Read-Codec-Name", "variable_read_codec", "variable_rtp_use_codec_name"))
    rate = _first(headers, ("Channel-Read-Codec-Rate", "variable_read_rate", "variable_rtp_use_codec_rate"))
    ptime = _first(headers, ("variable_rtp_use_codec_ptime",))
    codec = codec or (strings[0]["codec"] if strings else "")
    rate = rate or (strings[0]["rate"] if strings else "")
    ptime = ptime or next((m["ptime"] for m in strings if m["ptime"]), "20")
    if not codec or not rate.isdigit() or not ptime.isdigit():
        raise ValueError(f"channel data has no usable read codec (codec={codec!r} rate={rate!r} ptime={ptime!r})")
    return media_format(codec, int(rate), int(ptime), native=native)


def media_format(codec: str, rate: int, ptime_ms: int = 20, *, native: bool = False) -> ChannelMedia:
    """The :class:`ChannelMedia` of a known codec, rate (Hz) and ptime (ms)."""
    codec = codec.upper()
    samples = rate * ptime_ms // 1000
    if native and codec not in (*_G711, "L16"):
        raise ValueError(f"unicast flags: native with codec {codec}: frame size unknown (use PCMU, PCMA or L16)")
    per_sample = 1 if native and codec in _G711 else 2
    return ChannelMedia(codec, rate, ptime_ms, samples * per_sample, native)
