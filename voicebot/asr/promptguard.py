"""Whether the accurate pass may keep what Whisper wrote with the node's hints as its prompt (sans-I/O).

Measured by bench/hearing_eval.py (its ``accurate``/``auto`` rows; ``-unguarded`` = the prompt always kept) and
**not used by the engine**: on hearing_eval's run of 2026-12-07 it left the false intents at 10 dB SNR where they
were (12 of 168; the one clip behind them, "ten of clubs" heard as "ten of course" under babble, reads 36.6 dB
and counts as clean) and lowered intent accuracy at 10 dB (espeak-ng tune half 60.0 % -> 40.0 %); applied to
every turn it removes those false intents but costs clean accuracy (tune half 75.0 % -> 65.0 %). See
bench/README.md.

The accurate pass gives Whisper the node's hint phrases as its initial prompt: on a clean line that helps it hear
short answers ("yes please" instead of "yeah clean"). In noise it also makes Whisper *write* the hints into speech
that holds none: at 10 dB SNR a Librivox sentence came out as "yes mister john dashwood ..." and the flow took
``yes`` (bench/README.md, hearing_eval.py: 14 false intents in 168 off-script hearings with the prompt, 0 without).

So a turn is first measured (:func:`turn_snr_db`, from its own audio: the quiet frames are the noise, the loud
ones the speech; it reads higher than an SNR over the speech's mean power: noise mixed 10 dB below the speech
reads 15-28 dB, 20 dB reads 23-38 dB, clean telephone speech 31 dB or more on hearing_eval's clips). A clean
turn (:data:`NOISY_SNR_DB` or more) keeps the prompted words and costs one decode. A noisy turn is decoded a
second time without the prompt, and :func:`choose` keeps the prompted words only when the hint words they contain
were heard without the prompt too (the prompt then only fixed the spelling of what was said); else the words
without the prompt stand.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

NOISY_SNR_DB = 30.0  # below this estimated SNR a turn is decoded twice (hearing_eval, tune half: clean >= 33.4, 10 dB <= 28.5)
MAX_SNR_DB = 60.0  # the estimate's ceiling (digital silence has no noise floor)
FRAME_S = 0.02  # frame length of the energy estimate (s)
NOISE_PERCENTILE = 10.0  # the quietest tenth of the frames is taken as the noise
SPEECH_PERCENTILE = 90.0  # the loudest tenth as the speech
FLOOR = 1.0  # the least noise energy per sample (int16 units squared: about -90 dBFS)
MIN_FRAMES = 5  # a shorter turn is not measured (taken as clean)

# how a turn's words were chosen (recorded with the answer)
CLEAN, AGREED, DROPPED, NO_HINTS = "clean", "agreed", "dropped", "no_hints"

_WORD = re.compile(r"[a-z0-9']+")


def turn_snr_db(samples: npt.ArrayLike, rate: int) -> float:
    """The turn's estimated SNR in dB (0..:data:`MAX_SNR_DB`): the energy of its loudest frames over that of its
    quietest (:data:`FRAME_S` frames, :data:`SPEECH_PERCENTILE` / :data:`NOISE_PERCENTILE`). A turn shorter than
    :data:`MIN_FRAMES` frames gives :data:`MAX_SNR_DB`."""
    x = np.asarray(samples, dtype=np.float64)
    size = max(1, int(rate * FRAME_S))
    frames = len(x) // size
    if frames < MIN_FRAMES:
        return MAX_SNR_DB
    energy = np.mean(x[: frames * size].reshape(frames, size) ** 2, axis=1)
    noise = max(float(np.percentile(energy, NOISE_PERCENTILE)), FLOOR)
    speech = max(float(np.percentile(energy, SPEECH_PERCENTILE)), FLOOR)
    return float(min(MAX_SNR_DB, max(0.0, 10.0 * np.log10(speech / noise))))


def is_noisy(snr_db: float, threshold_db: float = NOISY_SNR_DB) -> bool:
    """Whether a turn of ``snr_db`` must be decoded without the prompt too."""
    return snr_db < threshold_db


def words(text: str) -> list[str]:
    """``text``'s words, lower case, punctuation dropped."""
    return _WORD.findall(text.lower())


def prompted_words(text: str, hints: Sequence[str]) -> set[str]:
    """The words of ``text`` that occur in the hint phrases (what the prompt may have put there)."""
    vocabulary = {w for hint in hints for w in words(hint)}
    return {w for w in words(text) if w in vocabulary}


@dataclass(frozen=True)
class Choice:
    """The turn's words: ``text``; ``prompted`` True = the decode with the prompt; ``why``: :data:`CLEAN`,
    :data:`AGREED` (noisy, its hint words heard without the prompt too), :data:`DROPPED` (noisy, the prompt's
    words stood alone: the words without it) or :data:`NO_HINTS`."""

    text: str
    prompted: bool
    why: str


def choose(snr_db: float, with_prompt: str, without_prompt: str | None, hints: Sequence[str],
           threshold_db: float = NOISY_SNR_DB) -> Choice:
    """Which decode's words a turn takes. ``with_prompt``: Whisper's words with the hints as prompt;
    ``without_prompt``: without (None: not decoded, allowed only when the turn is clean or there are no hints)."""
    if not any(h.strip() for h in hints):
        return Choice(with_prompt, True, NO_HINTS)
    if not is_noisy(snr_db, threshold_db):
        return Choice(with_prompt, True, CLEAN)
    if without_prompt is None:
        raise ValueError("a noisy turn needs the decode without the prompt")
    if prompted_words(with_prompt, hints) <= set(words(without_prompt)):
        return Choice(with_prompt, True, AGREED)
    return Choice(without_prompt, False, DROPPED)
