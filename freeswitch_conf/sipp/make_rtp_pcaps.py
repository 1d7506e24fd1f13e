#!/usr/bin/env python3
"""Write the RTP pcap files that sipp plays in uac_voicebot.xml (Python standard library only).

    cd freeswitch_conf/sipp
    python3 make_rtp_pcaps.py                     # pcap/voicebot_caller.pcap + pcap/voicebot_dtmf_1.pcap
    python3 make_rtp_pcaps.py --wav me.wav        # the caller says me.wav (8 kHz mono 16-bit; the scenario
                                                  # plays 8 s: raise its pause for longer recordings)
    python3 make_rtp_pcaps.py --ptime 30          # 30 ms packets: reproduces the ptime trap on purpose

Why not sipp's own g711a.pcap: it carries 30 ms packets while its SDP offers no ptime, which is
exactly the trap that silently stops the engine's unicast audio (FreeSWITCH switches the call
from 20 to 30 ms mid-call).  These files carry 20 ms packets, matching the scenario's a=ptime:20.

The audio pcap: one RTP stream, G.711 (PCMU by default, payload type 0), 160 bytes = 20 ms per
packet, pcap timestamps 20 ms apart (sipp replays with that pacing).  Without --wav the caller
"speaks" two bursts of a voice-like harmonic tone between silences.
The DTMF pcap: one RFC 2833 telephone-event (payload type 101, as the scenario's SDP says):
updates every 20 ms, then three end packets.
Packets are Ethernet/IPv4/UDP from 127.0.0.1:6000 to 127.0.0.1:6000; sipp rewrites the
addresses and ports to the call's.
"""

from __future__ import annotations

import argparse
import math
import struct
import sys
import wave
from collections.abc import Iterable, Iterator
from pathlib import Path

RATE = 8000
PT_PCMU, PT_PCMA, PT_EVENT = 0, 8, 101
AUDIO_FILE = "voicebot_caller.pcap"
DTMF_FILE = "voicebot_dtmf_{digit}.pcap"
EVENT_CODES = {**{str(d): d for d in range(10)}, "*": 10, "#": 11, "A": 12, "B": 13, "C": 14, "D": 15}

_ULAW_SEG_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEG_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for seg, end in enumerate(ends):
        if value <= end:
            return seg
    return len(ends)


def linear_to_ulaw(sample: int) -> int:
    """G.711 mu-law of one signed 16-bit sample (the reference Sun/ITU algorithm)."""
    value = sample >> 2
    if value < 0:
        value, mask = -value, 0x7F
    else:
        mask = 0xFF
    value = min(value, 8159) + (0x84 >> 2)
    seg = _segment(value, _ULAW_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> (seg + 1)) & 0x0F)) ^ mask


def linear_to_alaw(sample: int) -> int:
    """G.711 A-law of one signed 16-bit sample (the reference Sun/ITU algorithm)."""
    value = sample >> 3
    if value >= 0:
        mask = 0xD5
    else:
        mask, value = 0x55, -value - 1
    seg = _segment(value, _ALAW_SEG_END)
    if seg >= 8:
        return 0x7F ^ mask
    quant = (value >> 1) & 0x0F if seg < 2 else (value >> seg) & 0x0F
    return ((seg << 4) | quant) ^ mask


def encode(samples: Iterable[int], codec: str) -> bytes:
    table = linear_to_ulaw if codec == "pcmu" else linear_to_alaw
    return bytes(table(s) for s in samples)


def synthetic_caller(seconds: float) -> list[int]:
    """Silence, a voice-like burst, silence, a second burst, silence: something a VAD calls speech."""
    n = int(seconds * RATE)
    out = [0] * n
    bursts = [(0.20, 0.45), (0.60, 0.85)]  # fractions of the length
    for start_f, end_f in bursts:
        start, end = int(start_f * n), int(end_f * n)
        for i in range(start, end):
            t = (i - start) / RATE
            f0 = 140.0 + 25.0 * math.sin(2 * math.pi * 1.5 * t)  # a gliding pitch
            voice = sum(math.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 12))
            syllables = 0.55 + 0.45 * math.sin(2 * math.pi * 4.0 * t)  # ~4 syllables per second
            edge = min(1.0, (i - start) / 400, (end - i) / 400)  # 50 ms fades: no clicks
            out[i] = int(5000 * voice * syllables * edge)
    return [max(-32768, min(32767, s)) for s in out]


def read_wav(path: Path) -> list[int]:
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != RATE:
            raise SystemExit(f"{path}: need mono 16-bit {RATE} Hz; convert with: sox {path} -r 8000 -c 1 -b 16 out.wav")
        data = w.readframes(w.getnframes())
    return list(struct.unpack(f"<{len(data) // 2}h", data))


def rtp_packet(pt: int, seq: int, timestamp: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    return struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


def audio_packets(samples: list[int], codec: str, ptime_ms: int) -> Iterator[tuple[float, bytes]]:
    """(seconds from start, RTP packet) for each ptime_ms of audio; the last partial frame is padded with silence."""
    per_packet = RATE * ptime_ms // 1000
    pt = PT_PCMU if codec == "pcmu" else PT_PCMA
    count = max(1, -(-len(samples) // per_packet))
    padded = samples + [0] * (count * per_packet - len(samples))
    for k in range(count):
        frame = encode(padded[k * per_packet:(k + 1) * per_packet], codec)
        yield k * ptime_ms / 1000, rtp_packet(pt, 1000 + k, 16000 + k * per_packet, 0x5EED0001, frame, marker=k == 0)


def dtmf_packets(digit: str, duration_ms: int = 200) -> Iterator[tuple[float, bytes]]:
    """RFC 2833/4733 telephone-event: one event, an update every 20 ms, three end packets."""
    event = EVENT_CODES[digit]
    volume = 10
    steps = duration_ms // 20
    timestamp = 48000
    k = 0
    for k in range(1, steps + 1):
        body = struct.pack("!BBH", event, volume, k * 160)
        yield (k - 1) * 0.020, rtp_packet(PT_EVENT, 2000 + k - 1, timestamp, 0x5EED0002, body, marker=k == 1)
    for i in range(3):  # the end packet is sent three times (RFC 4733 2.5.1.4), same duration
        body = struct.pack("!BBH", event, 0x80 | volume, steps * 160)
        yield (k + i) * 0.020, rtp_packet(PT_EVENT, 2000 + k + i, timestamp, 0x5EED0002, body)


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _udp_checksum(src: bytes, dst: bytes, udp: bytes) -> int:
    data = src + dst + struct.pack("!BBH", 0, 17, len(udp)) + udp
    if len(data) % 2:
        data += b"\0"
    checksum = _ip_checksum(data)
    return checksum or 0xFFFF


def frame(rtp: bytes, ident: int, port: int = 6000) -> bytes:
    """Ethernet + IPv4 + UDP around one RTP packet, 127.0.0.1:port -> 127.0.0.1:port."""
    src = dst = bytes([127, 0, 0, 1])
    udp_len = 8 + len(rtp)
    udp = struct.pack("!HHHH", port, port, udp_len, 0) + rtp
    udp = udp[:6] + struct.pack("!H", _udp_checksum(src, dst, udp)) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, ident & 0xFFFF, 0x4000, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    ethernet = b"\0" * 12 + struct.pack("!H", 0x0800)
    return ethernet + ip + udp


def write_pcap(path: Path, packets: Iterable[tuple[float, bytes]], start: float = 1_700_000_000.0) -> int:
    """Classic libpcap file (microsecond timestamps, link type 1 = Ethernet); returns the packet count."""
    count = 0
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for offset, rtp in packets:
            data = frame(rtp, count)
            usec = round((start + offset) * 1_000_000)
            f.write(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(data), len(data)))
            f.write(data)
            count += 1
    return count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=Path("pcap"), help="where to write (default: ./pcap)")
    parser.add_argument("--wav", type=Path, help="the caller's audio: mono 16-bit 8 kHz WAV (default: a synthetic voice)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of the synthetic caller audio (default 8)")
    parser.add_argument("--codec", choices=["pcmu", "pcma"], default="pcmu",
                        help="pcmu (payload 0, the scenario's SDP) or pcma (payload 8: change the SDP's m= line too)")
    parser.add_argument("--ptime", type=int, default=20, choices=[10, 20, 30, 40],
                        help="ms of audio per packet; anything but 20 contradicts the SDP's a=ptime:20 (the trap)")
    parser.add_argument("--digit", default="1", choices=sorted(EVENT_CODES), help="the DTMF digit (default 1)")
    args = parser.parse_args(argv)

    samples = read_wav(args.wav) if args.wav else synthetic_caller(args.seconds)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    audio_path = args.out_dir / AUDIO_FILE
    n_audio = write_pcap(audio_path, audio_packets(samples, args.codec, args.ptime))
    dtmf_path = args.out_dir / DTMF_FILE.format(digit=args.digit)
    n_dtmf = write_pcap(dtmf_path, dtmf_packets(args.digit))
    seconds = len(samples) / RATE
    print(f"{audio_path}: {n_audio} packets, {args.codec.upper()} {args.ptime} ms, {seconds:.1f} s of audio")
    print(f"{dtmf_path}: {n_dtmf} packets, RFC 2833 digit {args.digit} (payload type {PT_EVENT})")
    if args.ptime != 20:
        print(f"note: {args.ptime} ms packets against a=ptime:20 reproduce the ptime trap on purpose", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
