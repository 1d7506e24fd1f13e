"""What ``voice train`` measures on the held-out prompts, and the guard that refuses a worse model.

- similarity: pooled d-vector cosine to the agent's enrollment (``voicebot.tts.speaker``), at 16 kHz
  (the ``voice check`` scale) and through the telephone channel (both sides 8 kHz G.711 µ-law,
  300-3400 Hz, brought back to 16 kHz for the embedder);
- intelligibility: Whisper's word errors on the telephone channel (8 kHz) against the prompt text;
- naturalness: median F0 (Hz) and harmonics-to-noise ratio (HNR, dB, autocorrelation at the pitch
  period, Boersma 1993) of voiced frames, and mel-cepstral distortion (MCD, dB) to the agent's own take.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from voicebot.tts.vc import align
from voicebot.tts.vc.world import RATE, Features

Int16Array = npt.NDArray[np.int16]
Float64Array = npt.NDArray[np.float64]
HNR_WINDOW_S = 0.04  # analysis window of one HNR frame (two periods at 50 Hz)
HNR_HOP_FRAMES = 4  # every 4th WORLD frame (20 ms)
HNR_TOP_DB = 20.0  # only voiced frames this close to the loudest (vowel nuclei, not voicing onsets)
MAX_EXTRA_WORD_ERRORS = 0.05  # of the reference words, or 1 word if more: converted vs stock errors allowed
MIN_HELDOUT_WORDS = 20  # fewer held-out words cannot show a 5 % intelligibility loss (one word would be > 5 %)
MAX_HNR_DROP_DB = 3.0  # below the lower of (agent's lowest clip, stock) allowed
MCD_SCALE = 10.0 / np.log(10) * np.sqrt(2.0)  # mel-cepstral distortion in dB from coefficient distances


def hnr_db(samples: Int16Array, f0: Float64Array, frame_ms: float = 5.0) -> Float64Array:
    """HNR (dB) of the voiced frames (every :data:`HNR_HOP_FRAMES`-th) within :data:`HNR_TOP_DB` dB of the loudest,
    from the normalised autocorrelation r at the pitch period: 10 log10(r / (1 - r)). The best lag from half to twice
    WORLD's period counts, so an octave error of the F0 tracker does not read as noise."""
    x = np.asarray(samples, dtype=np.float64)
    half = int(HNR_WINDOW_S * RATE / 2)
    hop = int(RATE * frame_ms / 1000)
    window = np.hanning(2 * half + 2)[1:-1]  # no zero end points: the window's own autocorrelation stays positive
    wac = np.correlate(window, window, mode="full")[len(window) - 1:]
    levels, values = [], []
    for i in range(0, len(f0), HNR_HOP_FRAMES):
        centre = i * hop
        if f0[i] <= 0 or centre - half < 0 or centre + half > len(x):
            continue
        seg = x[centre - half: centre + half] * window
        seg = seg - seg.mean()
        ac = np.correlate(seg, seg, mode="full")[len(seg) - 1:]
        period = RATE / f0[i]
        low, high = max(RATE // 500, int(period * 0.5)), min(len(ac) - 1, RATE // 50, int(np.ceil(period * 2.0)))
        if ac[0] <= 0 or low >= high:
            continue
        r = (ac[low: high + 1] / ac[0]) / (wac[low: high + 1] / wac[0])  # Boersma's window correction
        best = float(np.clip(r.max(), 1e-6, 1 - 1e-6))
        levels.append(10.0 * np.log10(ac[0]))
        values.append(10.0 * np.log10(best / (1.0 - best)))
    if not values:
        return np.zeros(0)
    keep = np.asarray(levels) >= max(levels) - HNR_TOP_DB
    out: Float64Array = np.asarray(values, dtype=np.float64)[keep]
    return out


def mcd_db(a: Features, b: Features) -> float:
    """Mel-cepstral distortion (dB) between two takes of the same text after DTW (coefficient 0 left out)."""
    p, q = align.dtw_path(a.mcep[:, 1:], b.mcep[:, 1:])
    diff = a.mcep[p, 1:] - b.mcep[q, 1:]
    return float(MCD_SCALE * np.mean(np.sqrt((diff * diff).sum(axis=1))))


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edits, reference words): Levenshtein distance over words (texts already in spoken form)."""
    ref, hyp = reference.split(), hypothesis.split()
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, other in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (word != other))
    return row[len(hyp)], len(ref)


@dataclass(frozen=True)
class VoiceStats:
    """One group of clips (the agent's held-out takes, the stock voice, the converted voice)."""

    name: str
    similarity: float  # pooled cosine to the enrollment, 16 kHz
    phone_similarity: float  # both through the telephone channel
    word_errors: int  # Whisper at 8 kHz
    words: int
    f0_median: float  # Hz, voiced frames (0: none)
    hnr_median: float  # dB, voiced frames
    mcd: float  # dB to the agent's own takes (0 for the agent's own)

    @property
    def wer(self) -> float:
        """Word error rate (0..1)."""
        return self.word_errors / max(1, self.words)

    def line(self) -> str:
        """One report line."""
        return (f"{self.name:>9}: similarity {self.similarity:.2f} (phone {self.phone_similarity:.2f}), "
                f"WER {100 * self.wer:.1f} % ({self.word_errors}/{self.words} words, 8 kHz), "
                f"F0 {self.f0_median:.0f} Hz, HNR {self.hnr_median:.1f} dB"
                + (f", MCD {self.mcd:.2f} dB" if self.mcd else ""))


@dataclass(frozen=True)
class AgentRange:
    """The agent's own range: voiced F0 5th-95th percentile (Hz) and per-clip median HNR (dB)."""

    f0_low: float
    f0_high: float
    hnr_low: float
    hnr_high: float

    @classmethod
    def of(cls, clips: Sequence[tuple[Int16Array, Features]]) -> AgentRange:
        """From the agent's recordings and their WORLD F0."""
        f0 = np.concatenate([f.f0[f.f0 > 0] for _, f in clips])
        hnr = [float(np.median(h)) for h in (hnr_db(a, f.f0) for a, f in clips) if len(h)] or [0.0]
        return cls(float(np.percentile(f0, 5)), float(np.percentile(f0, 95)), min(hnr), max(hnr))

    def line(self) -> str:
        """One report line."""
        return (f"agent's range: F0 {self.f0_low:.0f}-{self.f0_high:.0f} Hz (5th-95th percentile), "
                f"HNR {self.hnr_low:.1f}-{self.hnr_high:.1f} dB (clip medians)")


def refusals(stock: VoiceStats, converted: VoiceStats, agent: AgentRange) -> list[str]:
    """Why the converted voice must not be enabled (empty: it may be).

    - similarity: not higher than the stock voice's (the conversion would buy nothing);
    - intelligibility: more Whisper word errors than the stock voice by more than 5 % of the words (at
      least one word: one word is 3-10 % of a held-out set of 10-30 words, within Whisper's run-to-run noise);
    - pitch: median F0 outside the agent's own 5th-95th percentile range;
    - voice quality: median HNR more than 3 dB below both the agent's lowest clip and the stock voice
      (the creaky voices a speaker-embedding search drifts into sit at ~5 dB; clean speech at 10-20 dB);
    - spectral distortion: MCD to the agent's takes not lower than the stock voice's;
    - too few held-out words (under 20) to tell a 5 % loss of intelligibility from one misheard word.
    """
    out = []
    if converted.similarity <= stock.similarity:
        out.append(f"similarity {converted.similarity:.2f} is not above the stock voice's {stock.similarity:.2f}")
    allowed = max(1, int(MAX_EXTRA_WORD_ERRORS * converted.words))
    if converted.word_errors - stock.word_errors > allowed:
        out.append(f"intelligibility: {converted.word_errors} word errors vs the stock voice's {stock.word_errors} "
                   f"(at most {allowed} more allowed)")
    if not agent.f0_low <= converted.f0_median <= agent.f0_high:
        out.append(f"pitch: median F0 {converted.f0_median:.0f} Hz is outside the agent's "
                   f"{agent.f0_low:.0f}-{agent.f0_high:.0f} Hz")
    floor = min(agent.hnr_low, stock.hnr_median) - MAX_HNR_DROP_DB
    if converted.hnr_median < floor:
        out.append(f"voice quality: HNR {converted.hnr_median:.1f} dB is below {floor:.1f} dB "
                   f"({MAX_HNR_DROP_DB:.0f} dB under the agent's lowest clip and the stock voice)")
    if converted.mcd >= stock.mcd:
        out.append(f"spectral distortion: MCD {converted.mcd:.2f} dB to the agent is not below "
                   f"the stock voice's {stock.mcd:.2f} dB")
    if converted.words < MIN_HELDOUT_WORDS:
        out.append(f"too few held-out words: {converted.words} (at least {MIN_HELDOUT_WORDS} are needed to measure "
                   "intelligibility); hold out more prompts with --heldout")
    return out
