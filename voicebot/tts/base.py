"""The speech-synthesis interface: a shared voice, and the error a missing or broken voice raises."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np
import numpy.typing as npt


class VoiceError(Exception):
    """A voice or voice pack is missing or broken; the message names the path and what was expected."""


class Voice(Protocol):
    """A loaded voice, shared by every call (thread-safe ``synthesize``)."""

    name: str
    language: str
    sample_rate: int  # the model's native rate (Hz)

    def synthesize(self, text: str, *, normalize: bool = True) -> Iterator[npt.NDArray[np.int16]]:
        """int16 audio at ``sample_rate``, one array per sentence; ``normalize`` spells out numbers first."""
        ...
