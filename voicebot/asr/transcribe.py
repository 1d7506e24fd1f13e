"""``voicebot transcribe FILE...``: what each recogniser pass hears in recordings, with the time each took.

For teams checking the recogniser on their own recordings (WAV at any rate, PCM or G.711). ``--rate 8000`` first
puts the audio through the telephone channel the engine hears (:func:`~voicebot.audio.telephone.telephone_channel`:
8 kHz, 300-3400 Hz, G.711 µ-law, or A-law with ``--codec pcma``). The fast pass is the streaming recogniser
(pocketsphinx, or Vosk with ``--fast-model DIR``) fed 20 ms frames; the accurate pass is Whisper
(:mod:`voicebot.asr.whisper`; ``--model`` a name or a directory). ``--hints FLOW:NODE`` gives both passes the
phrases that node expects and the flow's language.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voicebot.audio.telephone import telephone_channel, to_rate
from voicebot.audio.wav import frames_from_array, read_wav
from voicebot.cli_errors import UsageError
from voicebot.suggest import did_you_mean

PASSES = ("fast", "accurate", "both")
CODEC_NAMES = {"pcmu": "PCMU", "pcma": "PCMA"}
STREAM_RATES = (8000, 16000)  # rates the fast pass takes; other rates are converted to 16 kHz


@dataclass(frozen=True)
class Heard:
    """One pass's result on one file: ``text`` (spoken form), the recogniser's ``name`` and ``seconds`` it took."""

    name: str
    text: str
    seconds: float


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``transcribe`` to ``subparsers``."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "transcribe", help="what each recogniser pass hears in WAV files, with the time each took")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="WAV files (any rate; PCM, µ-law or A-law)")
    p.add_argument("--rate", type=int, default=None, choices=STREAM_RATES,
                   help="8000: through the telephone channel first (8 kHz G.711, 300-3400 Hz); 16000: wideband; "
                   "default: the file's rate")
    p.add_argument("--codec", default="pcmu", choices=tuple(CODEC_NAMES), help="with --rate 8000: µ-law or A-law")
    p.add_argument("--asr", default="both", choices=PASSES, help="which pass to run (default both)")
    p.add_argument("--hints", metavar="FLOW:NODE", help="bias both passes toward what this node of this flow expects")
    p.add_argument("--model", default=None, metavar="PATH",
                   help="accurate pass: base (default, multilingual), tiny.en (faster), or a faster-whisper model directory")
    p.add_argument("--fast-model", type=Path, default=None, metavar="DIR",
                   help="fast pass: a Vosk model directory (default: pocketsphinx, English)")
    p.add_argument("--language", default=None, help="language code (default: the --hints flow's, else en)")
    p.set_defaults(run=cmd_transcribe)
    return p


def node_hints(spec: str) -> tuple[list[str], str]:
    """``FLOW:NODE`` → (the node's hint phrases, the flow's language); UsageError for a bad spec or node."""
    from voicebot.dialog.loader import load_flow
    from voicebot.dialog.machine import build_matcher

    flow_path, sep, node_id = spec.rpartition(":")
    if not sep or not flow_path or not node_id:
        raise UsageError(f"--hints {spec}: expected FLOW:NODE; e.g. --hints examples/flows/lead_screening_en.yaml:greet")
    flow = load_flow(Path(flow_path))
    node = flow.nodes.get(node_id)
    if node is None:
        hint = did_you_mean(node_id, flow.nodes)
        raise UsageError(f"--hints {spec}: flow {flow.id} has no node {node_id!r}{f' ({hint})' if hint else ''}; "
                         f"its nodes: {', '.join(flow.nodes)}")
    allowed = list(node.routes)
    if node.globals_enabled:
        allowed += [name for name in flow.global_routes if name not in node.routes]
    return build_matcher(flow).hint_phrases(allowed), flow.language


def channel(samples: npt.NDArray[np.int16], rate: int, target: int | None, codec: str) -> tuple[npt.NDArray[np.int16], int]:
    """The audio as the recognisers get it: (samples, rate)."""
    if target == 8000:
        return telephone_channel(samples, rate, CODEC_NAMES[codec]), 8000
    out_rate = target or (rate if rate in STREAM_RATES else 16000)
    return to_rate(samples, rate, out_rate), out_rate


def fast_pass(model: Any, samples: npt.NDArray[np.int16], rate: int, hints: Sequence[str]) -> Heard:
    """Stream the audio through the first-pass recogniser in 20 ms frames; its final."""
    started = time.perf_counter()
    stream = model.stream(rate, hints)
    try:
        for frame in frames_from_array(samples, rate):
            stream.accept(frame)
        text = stream.finish().text
    finally:
        stream.close()
    return Heard(model.name, text, time.perf_counter() - started)


def _load_fast(args: argparse.Namespace, language: str) -> Any:
    from voicebot.asr.registry import AsrConfig, load_asr

    if args.fast_model is not None:
        return load_asr(AsrConfig("vosk", args.fast_model, language))
    if not language.lower().startswith("en"):
        raise UsageError(f"transcribe: the default fast pass (pocketsphinx) is English only, not {language!r}; "
                         "give --fast-model DIR (a Vosk model), or --asr accurate")
    return load_asr(AsrConfig("pocketsphinx"))


def cmd_transcribe(args: argparse.Namespace) -> int:
    """Print, per file, what each chosen pass hears and how long it took."""
    for path in args.files:
        if not path.is_file():
            raise UsageError(f"{path}: {'a directory' if path.is_dir() else 'no such file'}; give WAV files")
    audio = [(path, *read_wav(path)) for path in args.files]  # a bad file stops us before any model loads
    hints, language = node_hints(args.hints) if args.hints else ([], "en")
    language = args.language or language
    fast = _load_fast(args, language) if args.asr in ("fast", "both") else None
    accurate = None
    if args.asr in ("accurate", "both"):
        from voicebot.asr.whisper import WhisperRecogniser

        accurate = WhisperRecogniser(args.model)
    for path, samples, rate in audio:
        heard, heard_rate = channel(samples, rate, args.rate, args.codec)
        way = f"telephone {args.codec} 8 kHz 300-3400 Hz" if args.rate == 8000 else f"{heard_rate} Hz"
        print(f"{path} ({len(samples) / rate:.2f} s at {rate} Hz; heard as {way})")
        results = []
        if fast is not None:
            results.append(("fast", fast_pass(fast, heard, heard_rate, hints)))
        if accurate is not None:
            result = accurate.transcribe(heard, heard_rate, hints, language)
            results.append(("accurate", Heard(accurate.name, result.text, result.seconds)))
        for kind, said in results:
            print(f"  {kind:<8} {said.name} ({said.seconds:.2f} s): {said.text or '(nothing)'}")
    return 0
