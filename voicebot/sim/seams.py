"""The joins of a simulated call's dynamic prompts: loudness step and click at each, and who each piece sounds like.

A prompt with variables is pieces joined on the call (voicebot.tts.joins): the agent's recordings, fixed text
synthesized before the call, values synthesized for it. After a simulated call, each such prompt it asked for is
rendered again from the same prompt cache (the pieces come back from its memory: nothing is synthesized anew,
so the audio is what the call played) with the pieces' places recorded, and measured:

- per piece: kind, text, start and duration (s), speech level (dBFS) and, when the pack has enrollment clips,
  speaker similarity to the agent (the d-vector of ``voicebot voice check``; pieces under 0.5 s of speech get none:
  too short to embed);
- per join between two pieces of speech: the loudness step (dB, between the two pieces' speech levels) and the
  click measure (:class:`voicebot.tts.joins.Join`).

The goal a listener would set, and the report's verdict: every step within :data:`MAX_STEP_DB` and no click.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from voicebot.audio.resample import resample
from voicebot.dialog import events as ev
from voicebot.tts.joins import Segment, measure_joins
from voicebot.tts.pack import Int16Array, active_dbfs, trim_silence
from voicebot.tts.render import TEMPLATE, PromptCache

MAX_STEP_DB = 1.0  # a loudness step a listener does not notice at a join
MIN_EMBED_S = 0.5  # pieces shorter than this (speech) get no similarity
EMBED_RATE = 16000
Similarity = Callable[[Int16Array], float]  # 16 kHz speech -> similarity to the agent (-1..1)


def agent_similarity(cache: PromptCache) -> Similarity | None:
    """Similarity to the pack's enrollment clips (None when the pack has none: the default voice)."""
    clips = [c for c in (trim_silence(a, EMBED_RATE) for a in cache.pack.enrollment(EMBED_RATE)) if len(c)]
    if not clips:
        return None
    from voicebot.tts.speaker import shared_embedder, similarity

    embedder = shared_embedder()
    enrolled = embedder.embed_many(clips)
    return lambda audio: similarity(enrolled, embedder.embed(audio))


def prompt_joins(cache: PromptCache, spoken: Sequence[tuple[ev.Play, dict[str, str]]], rate: int,
                 similar: Similarity | None = None) -> list[dict[str, Any]]:
    """One report per dynamic prompt of ``spoken`` (what the call asked for, with its values), in order."""
    return [_report(cache, play, values, rate, similar) for play, values in spoken if TEMPLATE.search(play.template)]


def _report(cache: PromptCache, play: ev.Play, values: dict[str, str], rate: int,
            similar: Similarity | None) -> dict[str, Any]:
    segments: list[Segment] = []
    audio = np.concatenate(list(cache.render_dynamic(play.template, values, rate, segments=segments)))
    joins = measure_joins(audio, segments, rate)
    pieces = [_piece(audio, s, rate, similar) for s in segments if s.kind != "pause"]
    return {
        "play_id": play.play_id, "node": play.node, "pieces": pieces,
        "joins": [{"at_s": j.at_s, "between": f"{j.before}>{j.after}", "loudness_step_db": j.loudness_step_db,
                   "step_ratio": j.step_ratio, "clicks": j.clicks} for j in joins],
        "seamless": all(abs(j.loudness_step_db) <= MAX_STEP_DB and not j.clicks for j in joins),
    }


def _piece(audio: Int16Array, segment: Segment, rate: int, similar: Similarity | None) -> dict[str, Any]:
    clip = audio[segment.start: segment.start + segment.length]
    speech = trim_silence(resample(clip, rate, EMBED_RATE), EMBED_RATE)
    score = similar(speech) if similar is not None and len(speech) >= MIN_EMBED_S * EMBED_RATE else None
    return {"kind": segment.kind, "text": segment.text, "start_s": round(segment.start / rate, 3),
            "duration_s": round(segment.length / rate, 3), "level_dbfs": round(active_dbfs(clip, rate), 1),
            "similarity": None if score is None else round(score, 3)}


def join_lines(report: dict[str, Any]) -> list[str]:
    """The report as lines for transcript.txt (under the prompt's BOT line)."""
    pieces = " + ".join(f"{p['kind']} \"{p['text'][:24]}\" {p['level_dbfs']} dBFS"
                        + (f" sim {p['similarity']:.2f}" if p["similarity"] is not None else "") for p in report["pieces"])
    joins = ", ".join(f"{j['loudness_step_db']:+.1f} dB{' CLICK' if j['clicks'] else ''}" for j in report["joins"])
    verdict = "seamless" if report["seamless"] else f"audible seam (> {MAX_STEP_DB:g} dB or a click)"
    return [f"             pieces: {pieces}", f"             joins: {joins or 'none'} ({verdict})"]
