"""URL encoding of ESL header values, as FreeSWITCH does it (``switch_url_encode``)."""

from __future__ import annotations

from urllib.parse import unquote

# switch_url_encode's unsafe set; bytes outside 0x20..0x7E are encoded too.
_URL_UNSAFE = frozenset(b'\r\n "#%&+:;<=>?@[\\]^`{|}')


def url_encode(value: str) -> str:
    """Encode ``value`` as FreeSWITCH's ``switch_url_encode`` does for plain events."""
    out = []
    for byte in value.encode("utf-8"):
        if byte < 0x20 or byte > 0x7E or byte in _URL_UNSAFE:
            out.append(f"%{byte:02X}")
        else:
            out.append(chr(byte))
    return "".join(out)


def url_decode(value: str) -> str:
    """Decode a URL-encoded header value (``+`` stays ``+``; bad UTF-8 is replaced)."""
    return unquote(value, errors="replace") if "%" in value else value
