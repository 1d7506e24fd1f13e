"""What the early media (before answer) is: ringback, busy, congestion, SIT, speech (an announcement) or silence.

Sans-I/O: :meth:`EarlyMediaDetector.feed` takes one 20 ms frame of 8 kHz int16 audio and its
end time (s) and returns the classification so far (:class:`EarlyMedia`). Each frame is
labelled from the last 40 ms (a :class:`~voicebot.campaign.tones.GoertzelBank` at the
tone frequencies): a tone family when one family holds >= ``TONE_PURITY`` of the energy,
*active* when louder than the running noise floor + ``ACTIVE_ABOVE_FLOOR_DB``, else silent.
Runs of a label become segments (gaps shorter than ``GAP_MS`` are bridged) and segments
are matched to cadences:

- ringback: US 440+480 Hz for >= 1.5 s (2 s on / 4 s off); Europe 425 Hz or China 450 Hz
  for >= 0.8 s (1 s on / 4 s off). Declared while the tone is still on.
- busy: two on-segments of 480+620 Hz (0.5/0.5 s, US), 425 Hz (0.5/0.5, Europe) or 450 Hz
  (0.35/0.35, China), each 0.25-0.7 s. congestion (US reorder): 480+620 Hz 0.25/0.25.
- SIT: the three rising tones (913.8 or 985.2, then 1370.6 or 1428.5, then 1776.7 Hz),
  each 0.2-0.45 s; the code (Bellcore: IC intercept, VC vacant code, NC no circuit,
  RO reorder) from the first two tones' frequency (low/high) and length (274/380 ms).
- speech: >= ``SPEECH_MS`` of active, non-tone audio (an operator announcement: send its
  transcript to :func:`voicebot.campaign.preanswer.classify_announcement`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from voicebot.campaign.tones import GoertzelBank, rms_dbfs

FRAME = 160  # samples in 20 ms at 8 kHz
FRAME_MS = 20.0
TONE_PURITY = 0.7
SILENCE_DBFS = -50.0  # never "active" below this
ACTIVE_ABOVE_FLOOR_DB = 9.0
FLOOR_FRAMES = 75  # the noise floor is the quietest non-tone frame of the last 1.5 s
GAP_MS = 60.0  # a tone segment survives this much of something else (window edges, a click)
SPEECH_MS = 400.0

FAMILIES: dict[str, tuple[float, ...]] = {
    "us_ring": (440.0, 480.0), "us_busy": (480.0, 620.0), "eu": (425.0,), "cn": (450.0,),
    "sit_1l": (913.8,), "sit_1h": (985.2,), "sit_2l": (1370.6,), "sit_2h": (1428.5,), "sit_3": (1776.7,),
}
BANK_FREQS = tuple(sorted({f for freqs in FAMILIES.values() for f in freqs}))


class EarlyKind(Enum):
    """What the early media is, so far."""

    NONE = "none"  # nothing heard yet
    SILENCE = "silence"
    RINGBACK = "ringback"
    BUSY = "busy"
    CONGESTION = "congestion"
    SIT = "sit"
    SPEECH = "speech"


class SitCode(Enum):
    """Bellcore SIT codes: IC intercept (vacant number), VC vacant code, NC no circuit, RO reorder, OTHER."""

    IC = "IC"
    VC = "VC"
    NC = "NC"
    RO = "RO"
    OTHER = "OTHER"


# (first tone high?, second tone high?, first long?, second long?) -> code
SIT_CODES: dict[tuple[bool, bool, bool, bool], SitCode] = {
    (False, False, False, False): SitCode.IC,
    (True, False, True, False): SitCode.VC,
    (False, False, True, True): SitCode.NC,
    (True, True, True, True): SitCode.NC,
    (True, False, False, True): SitCode.RO,
    (False, True, False, True): SitCode.RO,
}
SIT_LONG_MS = 327.0  # between short (274 ms) and long (380 ms)


@dataclass(frozen=True)
class EarlyMedia:
    """The classification so far: ``kind`` since ``at`` (s); ``sit`` the SIT code once one was heard."""

    kind: EarlyKind
    at: float
    sit: SitCode | None = None


@dataclass
class _Segment:
    label: str
    start: float
    end: float
    gap_ms: float = 0.0

    @property
    def ms(self) -> float:
        return 1000.0 * (self.end - self.start)


class EarlyMediaDetector:
    """Feed 20 ms frames of early media; read :attr:`result`. See the module doc for the rules."""

    def __init__(self) -> None:
        self._bank = GoertzelBank(BANK_FREQS, 2 * FRAME)
        self._index = {f: i for i, f in enumerate(BANK_FREQS)}
        self._prev = np.zeros(FRAME)
        self._floor: deque[float] = deque(maxlen=FLOOR_FRAMES)
        self._open: _Segment | None = None
        self._done: list[_Segment] = []
        self._speech_ms = 0.0
        self._quiet_ms = 0.0
        self.result = EarlyMedia(EarlyKind.NONE, 0.0)

    def feed(self, samples: npt.NDArray[np.int16] | npt.NDArray[np.float64], end_s: float) -> EarlyMedia:
        """One frame ending at ``end_s`` (s); the classification after it."""
        frame = np.asarray(samples, dtype=np.float64)
        if len(frame) != FRAME:
            raise ValueError(f"early media is analysed in 20 ms frames of {FRAME} samples at 8 kHz, got {len(frame)}")
        window = np.concatenate((self._prev, frame))
        self._prev = frame
        label = self._label(window, frame)
        self._track(label, end_s)
        self._classify(label, end_s)
        return self.result

    # ------------------------------------------------------------- frame labels

    def _label(self, window: npt.NDArray[np.float64], frame: npt.NDArray[np.float64]) -> str:
        level = rms_dbfs(frame)
        if level < SILENCE_DBFS:
            self._floor.append(level)
            return "silence"
        share = self._bank.fractions(window)
        scores = {name: sum(share[self._index[f]] for f in freqs) for name, freqs in FAMILIES.items()}
        best = max(scores, key=lambda name: scores[name])
        if scores[best] >= TONE_PURITY and rms_dbfs(window) >= SILENCE_DBFS:
            return best
        floor = min(self._floor) if self._floor else SILENCE_DBFS
        self._floor.append(level)
        return "active" if level >= max(SILENCE_DBFS, floor + ACTIVE_ABOVE_FLOOR_DB) else "silence"

    # ------------------------------------------------------------- segments

    def _track(self, label: str, end_s: float) -> None:
        seg = self._open
        if seg is not None and seg.label == label:
            seg.end, seg.gap_ms = end_s, 0.0
            return
        if seg is not None and seg.label in FAMILIES:
            seg.gap_ms += FRAME_MS
            if seg.gap_ms < GAP_MS and label not in FAMILIES:
                return  # bridged: a short dip inside one tone
            self._done.append(seg)
            self._done = self._done[-8:]
        self._open = _Segment(label, end_s - FRAME_MS / 1000.0, end_s) if label in FAMILIES else None

    def _tones(self) -> list[_Segment]:
        """Finished tone segments, then the one still on."""
        return [*self._done, *([self._open] if self._open is not None else [])]

    # ------------------------------------------------------------- cadences

    def _classify(self, label: str, now: float) -> None:
        if self.result.kind in (EarlyKind.SIT, EarlyKind.BUSY, EarlyKind.CONGESTION):
            return  # final: nothing after these changes what the line is
        self._speech_ms = self._speech_ms + FRAME_MS if label == "active" else self._speech_ms
        self._quiet_ms = 0.0 if label == "active" else self._quiet_ms + FRAME_MS
        if self._quiet_ms >= 500.0:
            self._speech_ms = 0.0  # an episode of speech ends after half a second without it
        found = self._sit(now) or self._busy(now) or self._ringback(now)
        if found is not None:
            self.result = found
        elif self._speech_ms >= SPEECH_MS and self.result.kind != EarlyKind.SPEECH:
            self.result = EarlyMedia(EarlyKind.SPEECH, now)
        elif self.result.kind == EarlyKind.NONE and label == "silence":
            self.result = EarlyMedia(EarlyKind.SILENCE, now)

    def _sit(self, now: float) -> EarlyMedia | None:
        done = self._done
        if len(done) < 3:
            return None
        a, b, c = done[-3:]
        if not (a.label.startswith("sit_1") and b.label.startswith("sit_2") and c.label == "sit_3"):
            return None
        if not all(200.0 <= s.ms <= 450.0 for s in (a, b, c)) or b.start - a.end > 0.1 or c.start - b.end > 0.1:
            return None
        key = (a.label.endswith("h"), b.label.endswith("h"), a.ms > SIT_LONG_MS, b.ms > SIT_LONG_MS)
        return EarlyMedia(EarlyKind.SIT, now, SIT_CODES.get(key, SitCode.OTHER))

    def _busy(self, now: float) -> EarlyMedia | None:
        done = [s for s in self._done if s.label in ("us_busy", "eu", "cn")]
        if len(done) < 2:
            return None
        a, b = done[-2:]
        off_ms = 1000.0 * (b.start - a.end)
        if a.label != b.label or not 150.0 <= off_ms <= 700.0:
            return None
        if a.label == "us_busy" and a.ms < 350.0 and b.ms < 350.0 and a.ms >= 150.0 and b.ms >= 150.0:
            return EarlyMedia(EarlyKind.CONGESTION, now)
        if 250.0 <= a.ms <= 700.0 and 250.0 <= b.ms <= 700.0:
            return EarlyMedia(EarlyKind.BUSY, now)
        return None

    def _ringback(self, now: float) -> EarlyMedia | None:
        seg = self._open
        if seg is None or self.result.kind == EarlyKind.RINGBACK:
            return None
        need_ms = 1500.0 if seg.label == "us_ring" else 800.0 if seg.label in ("eu", "cn") else None
        if need_ms is None or seg.ms < need_ms:
            return None
        return EarlyMedia(EarlyKind.RINGBACK, now)
