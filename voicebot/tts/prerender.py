"""Pre-rendering a lead's fill-in while it waits to be dialed, so its call synthesizes nothing.

A campaign claims leads into its hopper some seconds before it dials them (voicebot.campaign.runner, rule 6:
``prepare``). Whatever a flow says with the lead's own variables ("Hello {{customer_name}}") would otherwise be
synthesized on the call, as it plays (:meth:`PromptCache.render_dynamic`): CPU taken from every call in progress
at the worst moment. :class:`Prerenderer` takes each such lead and synthesizes those pieces ahead, into the prompt
caches of the flow's loaded pipelines (:meth:`PromptCache.add_prerendered`), where the call finds them.

Rules:

1. ``submit`` never blocks and never raises: it runs inside the campaign's poll. A full queue drops the lead
   (counted in ``dropped``); its call synthesizes live as without pre-rendering.
2. One thread renders, in claim order, at :data:`PRERENDER_NICE` below the engine's CPU priority (Linux: a
   thread's own nice value), so pre-rendering never competes with live calls for a core: it is work for idle time.
3. A lead whose flow is not loaded in a pipeline with the default voice, or whose rendering fails, is skipped and
   logged (no phone number or value in the message): the call still works, it synthesizes live.
4. The values rendered are the ones the call will use: the flow's variable defaults overlaid with the lead's
   variables, as the dialog machine does at ``CallStarted``.
5. A piece is synthesized once per voice, at the voice's own rate, and resampled for each call rate a loaded
   pipeline of the flow uses (8 and 16 kHz), since the rate of a call is known only at its answer.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from voicebot.audio.resample import resample
from voicebot.dialog.flow import Flow
from voicebot.logs import get_logger
from voicebot.tts.render import PromptCache, static_prompts

PRERENDER_NICE = 10  # the pre-render thread runs this much nicer than the engine (rule 2)
QUEUE_MAX = 2000  # leads waiting to be pre-rendered; more are dropped (rule 1)

log = get_logger("tts.prerender")


@dataclass(frozen=True)
class LeadFillIn:
    """A lead to pre-render: its flow's path and its variables (``campaign_id``/``lead_id`` for the logs)."""

    campaign_id: str
    lead_id: str
    flow_path: str
    variables: Mapping[str, str]


@dataclass(frozen=True)
class Target:
    """Where a flow's calls find their pieces: the flow and one prompt cache with its call rate (Hz)."""

    flow: Flow
    cache: PromptCache
    rate: int


TargetsFor = Callable[[str], Sequence[Target]]  # a flow path -> the loaded pipelines' caches of that flow


def fill_in_phrases(flow: Flow, cache: PromptCache, variables: Mapping[str, str]) -> list[str]:
    """Every piece a call of ``flow`` with ``variables`` synthesizes live in its prompts (rule 4), each once."""
    values = {name: v.default for name, v in flow.variables.items() if v.default is not None}
    values.update(variables)
    phrases: list[str] = []
    for spec in static_prompts(flow):
        if spec.dynamic:
            phrases += cache.value_phrases(spec.text, values)
    return list(dict.fromkeys(phrases))


class Prerenderer:
    """Renders submitted leads' fill-ins on one low-priority thread (the rules above)."""

    def __init__(self, targets_for: TargetsFor, *, queue_max: int = QUEUE_MAX, nice: int = PRERENDER_NICE) -> None:
        self.targets_for, self.nice = targets_for, nice
        self.leads = 0  # leads rendered (every piece ready)
        self.pieces = 0  # pieces synthesized
        self.dropped = 0  # leads not queued: the queue was full
        self.skipped = 0  # leads whose flow had no pipeline, or whose rendering failed
        self.seconds = 0.0  # time spent rendering (s)
        self._queue: queue.Queue[LeadFillIn | None] = queue.Queue(queue_max)
        self._thread = threading.Thread(target=self._run, name="voicebot-prerender", daemon=True)
        self._thread.start()

    def submit(self, lead: LeadFillIn) -> None:
        """Queue ``lead`` (rule 1: never blocks, never raises)."""
        try:
            self._queue.put_nowait(lead)
        except queue.Full:
            self.dropped += 1

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until everything submitted so far was rendered or skipped; False on timeout (tests, benches)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self._queue.unfinished_tasks

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop after the lead being rendered; what is still queued is dropped (those calls synthesize live)."""
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
                self._queue.task_done()
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout_s)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # not Linux, or not allowed: render at the same priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + self.nice)
        while True:
            lead = self._queue.get()
            try:
                if lead is None:
                    return
                self._render(lead)
            finally:
                self._queue.task_done()

    def _render(self, lead: LeadFillIn) -> None:
        started = time.perf_counter()
        try:
            targets = self.targets_for(lead.flow_path)
            voices: dict[tuple[str, str, float], list[Target]] = {}
            for target in targets:
                voices.setdefault(target.cache.voice_key, []).append(target)
            for same_voice in voices.values():
                self._render_voice(same_voice, lead.variables)
        except Exception as err:  # rule 3: a lead that cannot be rendered is synthesized live on its call
            self.skipped += 1
            log.warning("prerender.failed", campaign=lead.campaign_id, lead=lead.lead_id, error=type(err).__name__)
            return
        finally:
            self.seconds += time.perf_counter() - started
        if not targets:
            self.skipped += 1
            log.info("prerender.no_pipeline", campaign=lead.campaign_id, lead=lead.lead_id)
            return
        self.leads += 1

    def _render_voice(self, targets: Sequence[Target], variables: Mapping[str, str]) -> None:
        """Each piece the lead's calls would synthesize, made once and kept at every target's rate (rule 5)."""
        first = targets[0]
        for phrase in fill_in_phrases(first.flow, first.cache, variables):
            missing = [t for t in targets if t.cache.needs_prerender(phrase, t.rate)]
            if not missing:
                continue
            audio, rate = first.cache.synthesize_native(phrase)
            self.pieces += 1
            for target in missing:
                target.cache.add_prerendered(phrase, target.rate, resample(audio, rate, target.rate))
