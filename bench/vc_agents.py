"""Three agents assembled from Debian packages as voice packs, for voice conversion tests and benchmarks.

- ``librivox``: the LibriVox reader of pocketsphinx-testdata (male, ~95 Hz), 5 prompts (23 s), 2 held out;
- ``cards``: the "cards" speaker of pocketsphinx-testdata (male), 5 short prompts (10 s), 2 held out;
- ``allison``: Allison Smith, the female voice of Asterisk's core prompts (asterisk-core-sounds-en-g722,
  16 kHz G.722, decoded with the ``G722`` module; texts from asterisk-core-sounds-en's core-sounds-en.txt),
  50 telephone prompts, every 5th held out.

Each pack: ``prompts/<id>.wav`` + ``.txt`` (16 kHz) and ``enroll/`` = copies of training prompts (never a
held-out one). :data:`HELDOUT` names the held-out prompts, to pass to ``voice train --heldout``.
"""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np

from voicebot.audio.wav import read_wav, write_wav

POCKETSPHINX = Path("/usr/share/pocketsphinx/test/data")
ASTERISK = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
ASTERISK_TEXTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
AGENTS = ("librivox", "cards", "allison")
ALLISON_PROMPTS = 50
HELDOUT: dict[str, tuple[str, ...]] = {
    "librivox": ("sense_and_sensibility_01_austen_64kb-0880", "sense_and_sensibility_01_austen_64kb-0930"),
    "cards": ("002", "004"),
}


def available(agent: str) -> bool:
    """Whether the Debian package(s) the agent comes from are installed."""
    if agent == "allison":
        return ASTERISK.is_dir() and ASTERISK_TEXTS.is_file()
    return (POCKETSPHINX / agent).is_dir()


def _sphinx_transcripts(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if "(" in line:
            text, key = line.rsplit("(", 1)
            out[key.strip(" )")] = " ".join(text.replace("<s>", "").replace("</s>", "").split())
    return out


def _write_pack(root: Path, name: str, prompts: dict[str, tuple[np.ndarray, str]], enroll: list[str]) -> Path:
    if root.exists():
        shutil.rmtree(root)
    (root / "prompts").mkdir(parents=True)
    (root / "enroll").mkdir()
    (root / "voice.yaml").write_text(f"name: {name}\nlanguage: en\nsample_rate: 16000\n", encoding="utf-8")
    for pid, (audio, text) in prompts.items():
        write_wav(root / "prompts" / f"{pid}.wav", audio, 16000)
        (root / "prompts" / f"{pid}.txt").write_text(text + "\n", encoding="utf-8")
    for pid in enroll:
        shutil.copy(root / "prompts" / f"{pid}.wav", root / "enroll" / f"{pid}.wav")
    return root


def sphinx_pack(agent: str, root: Path) -> Path:
    """The librivox or cards speaker as a pack; enrollment: the prompts not held out."""
    folder = POCKETSPHINX / agent
    texts = _sphinx_transcripts(folder / ("transcription" if agent == "librivox" else "cards.transcription"))
    prompts = {pid: (read_wav(folder / f"{pid}.wav")[0], text) for pid, text in sorted(texts.items())}
    return _write_pack(root, agent, prompts, [p for p in prompts if p not in HELDOUT[agent]])


def allison_texts() -> dict[str, str]:
    """Prompt name -> text of the Asterisk core prompts that are plain sentences of 4-20 words."""
    out = {}
    with gzip.open(ASTERISK_TEXTS, "rt", encoding="utf-8", errors="replace") as lines:
        texts = list(lines)
    for line in texts:
        name, sep, text = line.partition(":")
        text = " ".join(text.split())
        if sep and not name.startswith(";") and "/" not in name and re.fullmatch(r"[A-Za-z0-9 ,.'?!-]+", text) \
                and 4 <= len(text.split()) <= 20 and (ASTERISK / f"{name.strip()}.g722").is_file():
            out[name.strip()] = text
    return dict(sorted(out.items()))


def decode_g722(path: Path) -> np.ndarray:
    """16 kHz int16 samples of an Asterisk .g722 file (64 kbit/s G.722)."""
    import G722

    codec = G722.G722(16000, 64000)
    return np.asarray(codec.decode(path.read_bytes()), dtype=np.int16)


def allison_pack(root: Path, count: int = ALLISON_PROMPTS) -> tuple[Path, tuple[str, ...]]:
    """The Asterisk voice as a pack of ``count`` prompts (1.2-8 s each); every 5th is held out. Returns (pack, held out)."""
    prompts: dict[str, tuple[np.ndarray, str]] = {}
    for name, text in allison_texts().items():
        audio = decode_g722(ASTERISK / f"{name}.g722")
        if 1.2 <= len(audio) / 16000 <= 8.0:
            prompts[name] = (audio, text)
        if len(prompts) == count:
            break
    held = tuple(pid for i, pid in enumerate(prompts) if i % 5 == 4)
    train = [pid for pid in prompts if pid not in held]
    return _write_pack(root, "allison", prompts, train[:10]), held


def build(agent: str, root: Path) -> tuple[Path, tuple[str, ...]]:
    """(pack directory, held-out prompt ids) of one agent, written under ``root``."""
    if agent == "allison":
        return allison_pack(root / agent)
    return sphinx_pack(agent, root / agent), HELDOUT[agent]
