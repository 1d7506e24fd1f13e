"""Media in the FreeSWITCH test double: unicast sessions, loopback pairs, and what every party hears.

What a leg *says* (its voice): its loopback peer's unicast input while that streams, else its agent audio
(agent legs) or its caller audio. What a leg *hears* (its ear, ``Channel.packets_heard()``):

- unicast: every datagram the engine sends to the leg's unicast port (source "engine");
- bridged (``uuid_bridge``): from the unpark (20 ms) silence frames on the double's media clock, then from
  ``Timing.bridge_audio_s`` (89 ms, check8 takeover_bridge) the partner's voice, one frame per ptime
  ("silence", then "agent" or "caller"); it stops when the bridge ends;
- eavesdropped: an agent eavesdropping on a leg with unicast hears, from ``Timing.eavesdrop_ear_s`` after
  eavesdrop starts, that leg's voice mixed with what the engine sent it ("caller+engine", check8 listen);
- eavesdrop talk mode (the agent's DTMF 2, or 3): every datagram the engine sends afterwards reaches the
  caller's ear mixed with the agent's voice ("engine+agent", sum clipped); when the engine sends nothing,
  the caller hears nothing (check8 dtmf2_botoff). DTMF 1 or 3: the engine's stream from the caller carries
  the agent too; 0: listen only again.
- a loopback pair with unicast on both legs: what one leg's remote sends is what the other leg reads, and
  what one leg hears is passed over too, through mod_loopback's queue of 3 frames (a 4th flushes it).
"""

from __future__ import annotations

import functools
import math
import socket
import time

from fsdouble.audio import Packet, mix
from fsdouble.channel import Channel
from fsdouble.config import CRASH_UNICAST, LOOPBACK_HOSTS, STUCK_L16
from fsdouble.core import DoubleCore
from fsdouble.media import Ticker, Unicast
from fsdouble.wire import Command
from voicebot.audio.codecs import encode
from voicebot.esl.protocol import media_format

WIRE_FRAMES = 3  # mod_loopback.c FRAME_QUEUE_LEN: frames queued for the other leg; a push when full clears it
TALK_TO_CALLER = ("2", "3")  # eavesdrop DTMF: the caller hears the agent
TALK_TO_BOT = ("1", "3")  # eavesdrop DTMF: the caller's other half (the engine's stream) hears the agent


class EarMixin(DoubleCore):
    """unicast, the voices legs read, and the ears: bridges, eavesdrop listening and talk mode."""

    # ------------------------------------------------------------ unicast

    def _unicast(self, ch: Channel, cmd: Command) -> None:
        """``sendmsg`` unicast, after its +OK: crash before answer, no-op when it cannot run, else start."""
        if not ch.answered or not ch.has_media:
            ch.unicast_log.append("crash: not answered")
            self._fatal_error(CRASH_UNICAST, ch.uuid)
            self._later(self.timing.crash_s, self._die)
            return
        reason = self._unicast_refusal(ch, cmd)
        if reason:
            ch.unicast_log.append(f"ignored: {reason}")
            return
        local = (cmd.get("local-ip", "127.0.0.1"), int(cmd.get("local-port")))
        remote = (cmd.get("remote-ip", "127.0.0.1"), int(cmd.get("remote-port")))
        media = media_format(ch.codec, ch.rate, ch.ptime_ms, native="native" in cmd.get("flags").lower())
        self._stop_unicast(ch, "replaced")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(local)
        except OSError as err:
            sock.close()
            ch.unicast_log.append(f"failed: cannot bind {local[0]}:{local[1]} ({err.strerror})")
            return
        ch.unicast = Unicast(ch, sock, remote, media, time.monotonic() + self.timing.unicast_first_s,
                             self._caller_tick, self._from_remote)
        ch.unicast_log.append(f"started: {media.frame_bytes} B / {media.ptime_ms} ms to {remote[0]}:{remote[1]}")
        assert self._media is not None
        self._media.add(ch.unicast)

    def _unicast_refusal(self, ch: Channel, cmd: Command) -> str:
        """Why a unicast on an answered channel does nothing ("" if it runs)."""
        if cmd.get("transport", "udp").lower() != "udp":
            return f"transport {cmd.get('transport')} (only udp works)"
        if ch.bridged_to:
            return "bridged"
        if ch.unicast is not None and ch.unicast.active:
            return self._second_unicast(ch, cmd)
        if ch.media_cut:
            return "media cut for good (cut_media)"
        if ch.stuck or not ch.parked or ch.running is not None or ch.app not in ("park", "socket"):
            return "not in a fresh park (after a media app, re-arm with uuid_transfer <uuid> park inline)"
        ports = (cmd.get("local-port"), cmd.get("remote-port"))
        if not all(p.isdigit() for p in ports):
            return f"bad ports {ports}"
        hosts = (cmd.get("local-ip", "127.0.0.1"), cmd.get("remote-ip", "127.0.0.1"))
        if any(h not in LOOPBACK_HOSTS for h in hosts):
            return f"the double only uses 127.0.0.1, not {hosts}"
        return ""

    @staticmethod
    def _second_unicast(ch: Channel, cmd: Command) -> str:
        """A unicast while one streams: +OK, and the first stream goes on (probe check9). Same local port:
        FreeSWITCH logs ``[CRIT] switch_ivr.c:498 Failure creating unicast connection``; another port: it logs
        "Created unicast connection" yet sends the new port nothing."""
        assert ch.unicast is not None
        same = cmd.get("local-port") == str(ch.unicast.sock.getsockname()[1])
        log = "[CRIT] switch_ivr.c:498 Failure creating unicast connection" if same else "created, never fed"
        return f"already streaming, the first stream goes on ({log})"

    def _stop_unicast(self, ch: Channel, reason: str) -> None:
        """Tear unicast down; on an eavesdropped L16 channel this wedges the call (docs/freeswitch.md)."""
        session = ch.unicast
        if session is None or not session.active:
            return
        if ch.codec == "L16" and any(self._live(u) is not None for u in ch.eavesdroppers):
            ch.stuck = True
            self._fatal_error(STUCK_L16, ch.uuid)
        session.stop(reason)
        ch.wire.clear()
        ch.unicast_log.append(f"stopped: {reason}")
        self._changed.notify_all()

    def _die(self) -> None:
        """FreeSWITCH aborts (assert in switch_ivr_park / SIGSEGV in switch_ivr_activate_unicast)."""
        self._crashed = True
        self._shutdown()

    # ------------------------------------------------------------ voices and ears

    def _voice_pcm(self, ch: Channel, at: float, rate: int, samples: int) -> bytes:
        """What ``ch`` says at ``at`` (s16le at ``rate``): its loopback peer's unicast input while that streams,
        else its agent audio, else its caller audio."""
        peer = self._live(ch.peer)
        if peer is not None and peer.unicast is not None and peer.unicast.active:
            frame = peer.wire.popleft() if peer.wire else b""
            return frame[: 2 * samples] + bytes(max(0, 2 * samples - len(frame)))
        audio = ch.agent_audio if ch.agent_audio is not None else ch.caller
        return audio.frame_for(at - (ch.answered_at or at), rate, samples)

    def _hear(self, ch: Channel, packet: Packet) -> None:
        """``ch``'s ear gets ``packet``; over a loopback pair whose other leg streams, that leg reads it."""
        ch.record_heard(packet)
        peer = self._live(ch.peer)
        pcm = packet.pcm() if peer is not None and peer.unicast is not None and peer.unicast.active else b""
        if pcm:
            if len(ch.wire) >= WIRE_FRAMES:  # mod_loopback: a full queue is cleared, then the frame goes in
                ch.wire.clear()
            ch.wire.append(pcm)

    def _caller_tick(self, ch: Channel, at: float, samples: int) -> bytes:
        """(Media loop, ``ch``'s unicast clock) the frame sent to the engine at ``at``; eavesdroppers hear it
        mixed with what the engine sent since the last tick; DTMF 1/3 mixes their voice in."""
        pcm = self._voice_pcm(ch, at, ch.rate, samples)
        written, ch.last_written = ch.last_written, b""
        agents = self._eavesdroppers(ch)
        for agent in agents:
            if at >= agent.eavesdrop_since + self.timing.eavesdrop_ear_s:
                ear = Packet(at, mix(pcm, written) if written else pcm, "L16", ch.rate,
                             "caller+engine" if written else "caller")
                self._hear(agent, ear)
        talkers = [a for a in agents if a.eavesdrop_mode in TALK_TO_BOT and a.talk_since is not None
                   and a.talk_since <= at]
        voices = [self._voice_pcm(a, at, ch.rate, samples) for a in talkers]
        return mix(pcm, *voices) if voices else pcm

    def _from_remote(self, ch: Channel, packet: Packet) -> None:
        """(Media loop) a datagram reached ``ch``'s unicast port: the caller's ear gets it, mixed with the
        voice of an eavesdropper in talk mode (DTMF 2 or 3)."""
        pcm = packet.pcm()
        ch.last_written = pcm or ch.last_written
        talkers = [a for a in self._eavesdroppers(ch) if a.eavesdrop_mode in TALK_TO_CALLER
                   and a.talk_since is not None and a.talk_since <= packet.at]
        if talkers and pcm:
            samples = len(pcm) // 2
            mixed = mix(pcm, *(self._talk_voice(a, ch.rate, samples) for a in talkers))
            packet = Packet(packet.at, encode(mixed, packet.codec), packet.codec, packet.rate, "engine+agent")
        self._hear(ch, packet)

    def _talk_voice(self, agent: Channel, rate: int, samples: int) -> bytes:
        """The agent's next ``samples`` of voice for talk mode (a cursor, so jittered arrivals stay seamless)."""
        start = agent.answered_at or 0.0
        pcm = self._voice_pcm(agent, start + agent.talk_pos / rate, rate, samples)
        agent.talk_pos += samples
        return pcm

    # ------------------------------------------------------------ eavesdrop

    def _eavesdroppers(self, ch: Channel) -> list[Channel]:
        live = (self._live(uuid) for uuid in sorted(ch.eavesdroppers))
        return [a for a in live if a is not None and a.eavesdrop_target == ch.uuid]

    def _attach_eavesdrop(self, agent: Channel, target: Channel) -> None:
        """``agent`` starts listening to ``target`` (its ear gets frames ``eavesdrop_ear_s`` from now)."""
        agent.eavesdrop_target, agent.eavesdrop_since = target.uuid, time.monotonic()
        agent.eavesdrop_mode, agent.talk_since = "", None
        target.eavesdroppers.add(agent.uuid)

    def _leave_eavesdrop(self, agent: Channel) -> None:
        """``agent`` stops eavesdropping (its last mode stays readable)."""
        target = self._channels.get(agent.eavesdrop_target)
        if target is not None:
            target.eavesdroppers.discard(agent.uuid)
        agent.eavesdrop_target, agent.talk_since = "", None

    def _eavesdrop_dtmf(self, agent: Channel, digit: str) -> None:
        """Eavesdrop's keys: 2 talk to the caller, 1 to the other half (the bot), 3 both, 0 listen only."""
        if digit not in ("0", *TALK_TO_CALLER, *TALK_TO_BOT):
            return
        agent.eavesdrop_mode = digit
        if digit == "0":
            agent.talk_since = None
        elif agent.talk_since is None:
            now = time.monotonic()
            target = self._channels.get(agent.eavesdrop_target)
            rate = target.rate if target is not None else agent.rate
            agent.talk_since, agent.talk_pos = now, round((now - (agent.answered_at or now)) * rate)

    # ------------------------------------------------------------ bridges

    def _start_bridge_media(self, a: Channel, b: Channel, audio_at: float) -> None:
        """Both ears: silence frames from now, each other's voice from ``audio_at``, on one media clock."""
        self._stop_bridge_media(a)
        self._stop_bridge_media(b)
        period = a.ptime_ms / 1000
        first = audio_at - period * max(0, math.floor((audio_at - time.monotonic()) / period))
        ticker = Ticker(first, period, functools.partial(self._bridge_tick, a, b, audio_at))
        a.ticker = b.ticker = ticker
        assert self._media is not None
        self._media.add(ticker)

    def _bridge_tick(self, a: Channel, b: Channel, audio_at: float, ticker: Ticker, at: float) -> None:
        if a.hung_up or b.hung_up or a.stuck or b.stuck or a.ticker is not ticker or b.ticker is not ticker:
            ticker.stop()
            return
        for ear, mouth in ((a, b), (b, a)):
            samples = ear.rate * ear.ptime_ms // 1000
            if at < audio_at:
                self._hear(ear, Packet(at, bytes(2 * samples), "L16", ear.rate, "silence"))
            else:
                source = "agent" if mouth.agent_audio is not None else "caller"
                self._hear(ear, Packet(at, self._voice_pcm(mouth, at, ear.rate, samples), "L16", ear.rate, source))

    def _stop_bridge_media(self, ch: Channel) -> None:
        """The bridge's frames stop, for both legs (they share the ticker)."""
        if ch.ticker is not None:
            ch.ticker.stop()
            ch.ticker = None
