"""``voicebot serve``: the engine on a live FreeSWITCH.

Rules:

1. Flows, voices and models are loaded and the static prompts rendered once,
   at start; calls only make streams.
2. The outbound socket server takes each call at once; beyond ``max_calls``
   a call gets the busy action (hang up with USER_BUSY, or a transfer).
3. The inbound ESL connection reconnects by itself; while FreeSWITCH is down the
   engine runs on and ``/health`` says so.
4. Every call's record is written when it ends, whatever ended it, and records
   of calls cut off by a shutdown are written too. The record is saved first,
   then its recording closed, each step guarded; both run on the record
   writer's thread (:class:`~voicebot.records.writer.RecordWriter`), never on
   the hub, so a slow or absent database delays records, never media.
5. Graceful shutdown: stop taking calls, let current ones finish up to the
   deadline, then hang them up; then the record writer drains its queue.
6. Models for every rate a call can bring (``PRELOAD_RATES``) and every agent
   voice are loaded, and each pipeline is warmed by a short silent session, before
   the first call; a call at another rate builds its pipeline in a native thread
   while it waits, and other calls carry on. The default recogniser decodes in
   worker processes (``asr.backend: pocketsphinx-pool``), each warmed by a decode
   before the engine loads on; shutdown stops them (:meth:`Engine.close_models`).
"""

from __future__ import annotations

import contextlib
import errno
import signal
import sys
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.pywsgi

from voicebot.asr.registry import AsrConfig
from voicebot.asr.whisper_pool import WhisperPool
from voicebot.call import CallSession
from voicebot.campaign.amdgate import gate_for_call
from voicebot.cli_errors import PortInUse
from voicebot.config import EngineConfig
from voicebot.dialog.flow import Flow
from voicebot.dialog.loader import load_flow
from voicebot.dialog.outcome import Outcome
from voicebot.esl.busy import BusyPrompt, play_busy
from voicebot.esl.campaigns import CampaignService, campaign_flow, outbox_location, start_campaigns
from voicebot.esl.connection import ChannelData, EslFailure, InboundConnection, OutboundCall, OutboundServer
from voicebot.esl.driver import CallResult, HandoffFactory, SessionThread, drive_call
from voicebot.esl.handoff import CallHandoff, HandoffContext
from voicebot.esl.socketapp import socket_mode_problem
from voicebot.esl.stall import RearmSettings
from voicebot.esl.unicast import PortPool
from voicebot.handoff.agents import AgentPool
from voicebot.handoff.setup import agent_voices, handoff_group
from voicebot.handoff.whisper import whisper_text, write_whisper
from voicebot.logs import get_logger
from voicebot.memory import MemoryTrimmer
from voicebot.metrics import Metrics
from voicebot.notify.notifier import CallInfo, Notifier, open_notifier
from voicebot.notify.screenpop import make_screenpop
from voicebot.notify.settings import NotificationsConfig
from voicebot.pipeline import Pipeline, PipelineConfig, load_pipeline
from voicebot.records.model import CallRecord, record_from_call
from voicebot.records.recording import StereoRecorder
from voicebot.records.store import RecordStore, open_store
from voicebot.records.writer import RecordWriter
from voicebot.warmup import warm_pipeline

SWITCH_INTERVAL_S = 0.001  # the GIL switch interval the engine runs with (s): see Engine.start
SWITCH_PROBE_S = 1.0  # how long `api status` may take when a call's socket closed, before FreeSWITCH is taken for lost
PRELOAD_RATES = (8000, 16000)  # Hz: narrowband (PCMU/PCMA) and wideband (L16@16k, G.722) calls find their models loaded
CAMPAIGN_IDS = ("campaign_id", "lead_id", "attempt_id", "attempt")  # vb_* channel variables a campaign dial sets
RECORDS_DRAIN_S = 10.0  # at shutdown, how long the record writer may take to save what is queued (s)
Progress = Callable[[str], None]  # one line of start-up progress (``voicebot serve`` prints it to stderr)


@dataclass
class Engine:
    """The running engine: shared pipelines, the ESL edges, records and metrics."""

    config: EngineConfig
    pipelines: dict[tuple[str, int, str], Pipeline] = field(default_factory=dict)
    flows: dict[str, Flow] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)
    accepting: bool = True
    on_session: Callable[[CallSession], None] | None = None  # e.g. `voicebot call` shows the live transcript
    notifications: NotificationsConfig | None = None  # None: the config file's `notifications:` section
    publish_campaign: Callable[[str, dict[str, Any]], None] | None = None  # a campaign's runtime snapshot (status)
    accurate_model: str | None = None  # the accurate pass's Whisper model, run in a worker pool; None: fast finals only

    def load(self, progress: Progress | None = None) -> None:
        """Load flows and models, render prompts, warm every pipeline, open the record store (rules 1 and 6).

        ``progress`` gets a line for each slow step (a model set loaded, prompts synthesized n/N).
        """
        cfg = self.config
        self._progress = progress or (lambda _: None)
        self._building: dict[tuple[str, int, str], threading.Event] = {}
        paths = {"": cfg.default_flow, **cfg.flows_by_destination}
        for key, path in paths.items():
            if path is not None:
                self.flows[key] = load_flow(path)
        if "" not in self.flows:
            raise ValueError("no default flow: set flows.default in the config")
        for flow in {id(f): f for f in self.flows.values()}.values():
            for rate in PRELOAD_RATES:
                self._pipeline(flow, rate)
                for voice in agent_voices(cfg.agents, flow):
                    self._pipeline(flow, rate, voice)
        self._check_groups()
        self.agents = AgentPool(cfg.agents, time.monotonic())
        self.screenpop = make_screenpop(cfg.handoff)
        self.busy_prompt: BusyPrompt | None = None  # rendered once, in the default flow's voice
        if cfg.busy_action == "prompt":
            audio, _ = self._pipeline(self.flows[""], 8000).cache.render(cfg.busy_prompt, 8000)
            self.busy_prompt = BusyPrompt.render(audio, 8000)
        self.store: RecordStore = open_store(cfg.records_db)
        self.trimmer = MemoryTrimmer()  # an ended call's memory goes back to the system (on the writer's thread)
        self.records = RecordWriter(self.store, when_idle=self.trimmer.trim)
        self.notifier = self._notifier()
        self.pool = PortPool(*cfg.media_ports)
        self.log = get_logger("engine")

    def _check_groups(self) -> None:
        """With agents configured, every group a flow hands calls to must exist."""
        groups = self.config.agents.groups
        if not groups:
            return
        for flow in self.flows.values():
            used = {n.prepare for n in flow.nodes.values()} | {n.transfer.group for n in flow.nodes.values() if n.transfer}
            missing = sorted(g for g in used | {flow.handoff.group} if g and g not in groups)
            if missing:
                raise ValueError(f"{flow.source}: agent group(s) {', '.join(missing)} not in the config's agents.groups "
                                 f"({', '.join(groups)})")

    def _pipeline(self, flow: Flow, rate: int, voice: Path | None = None) -> Pipeline:
        """The flow's models at ``rate``, speaking in ``voice`` (an agent's pack; None: the configured one), loaded
        and warmed now if missing (blocks: from a call's greenlet use :meth:`_pipeline_off_hub`)."""
        key = (flow.id, rate, str(voice or ""))
        if key in self.pipelines:
            return self.pipelines[key]
        progress = getattr(self, "_progress", None) or (lambda _: None)
        what = f"flow {flow.id} at {rate} Hz" + (f", voice {voice.name}" if voice is not None else "")

        def rendered(done: int, total: int, source: str) -> None:  # the first, each quarter and the last: 5 lines
            if source == "synth" and (done in (1, total) or done * 4 // total != (done - 1) * 4 // total):
                progress(f"rendering prompts {done}/{total} ({what})")

        started = time.perf_counter()
        if voice is not None:
            pipeline = self._pipeline(flow, rate).with_voice(voice, progress=rendered)
        else:
            cfg = self.config
            options: dict[str, object] = {} if cfg.vad == "silero" else {"aggressiveness": cfg.vad_aggressiveness}
            asr = AsrConfig(cfg.asr_backend, cfg.asr_model, flow.language, cfg.asr_offscript_rejection)
            loaded = next((p.asr for p in list(self.pipelines.values()) if p.config.asr == asr), None)  # any rate
            pipeline = load_pipeline(flow, PipelineConfig(
                rate=rate, vad=cfg.vad, vad_options=options, asr=asr,
                voice_pack=cfg.voice_pack, cache_dir=cfg.cache_dir / "prompts"), progress=rendered, asr=loaded,
                whisper_pool=self._whisper_pool())
        warm_pipeline(pipeline)
        self.pipelines[key] = pipeline
        progress(f"loaded {what} in {time.perf_counter() - started:.1f} s")
        return pipeline

    def _whisper_pool(self) -> WhisperPool | None:
        """The accurate pass's worker pool, shared by every flow and call (started on first use; None: off)."""
        if self.accurate_model is not None and getattr(self, "_whispers", None) is None:
            self._whispers = WhisperPool(self.accurate_model)
        return getattr(self, "_whispers", None)

    def _pipeline_off_hub(self, flow: Flow, rate: int, voice: Path | None = None) -> Pipeline:
        """:meth:`_pipeline` for a call's greenlet: a missing pipeline is built in gevent's threadpool (one build per
        key; other calls waiting for the same key wait on it) while the hub serves every other call."""
        key = (flow.id, rate, str(voice or ""))
        while key not in self.pipelines:
            building = self._building.get(key)
            if building is not None:
                gevent.get_hub().threadpool.spawn(building.wait, 1.0).get()
                continue
            self._building[key] = threading.Event()
            self.log.warning("engine.pipeline_missing", flow=flow.id, rate=rate, detail="built off the hub for this call")
            try:
                built: Pipeline = gevent.get_hub().threadpool.spawn(self._pipeline, flow, rate, voice).get()
                return built
            finally:
                self._building.pop(key).set()
        return self.pipelines[key]

    def flow_for(self, destination: str) -> Flow:
        """The flow for the number the call reached, or the default one."""
        return self.flows.get(destination, self.flows[""])

    # ------------------------------------------------------------------ serving

    def start(self) -> None:
        """Start the ESL edges and the HTTP endpoint (returns at once)."""
        cfg = self.config
        # The hub gives up the GIL on every socket call and then waits up to the switch interval for the session
        # threads to hand it back; at 5 ms (CPython's default) its frames leave late under load. bench/capacity.py,
        # 50 calls: 1.03-1.61% of frames late by > 40 ms at 5 ms, 0.29-0.9% at 1 ms (what-if switch-1ms).
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self.inbound = inbound_connection(cfg)
        self.inbound.start()
        self.server = OutboundServer(cfg.outbound_host, cfg.outbound_port, self.handle_call,
                                     command_timeout_s=cfg.command_timeout_s)
        self.http = gevent.pywsgi.WSGIServer((cfg.http_host, cfg.http_port), self._http, log=None, error_log=None)
        try:
            _bind(self.server.start, "outbound.port", cfg.outbound_host, cfg.outbound_port)
            _bind(self.http.start, "http.port", cfg.http_host, cfg.http_port)
        except PortInUse:
            self.server.stop(timeout=0)
            self.inbound.stop()
            raise
        self.handoff = HandoffContext(self.agents, self.inbound, cfg.handoff, f"{cfg.outbound_host}:{self.server.port}",
                                      self.screenpop, whisper=self._whisper)
        self.campaigns: CampaignService | None = None  # set once the campaign database is open
        if cfg.campaigns is not None:  # docs/campaigns.md: campaigns run inside serve
            self._campaigns_opening = start_campaigns(self, cfg.campaigns, self.publish_campaign)
        self.log.info("engine.started", outbound_port=self.server.port, http_port=self.http.server_port,
                      flows=sorted(f.id for f in self.flows.values()))

    def handle_call(self, call: OutboundCall) -> None:
        """One FreeSWITCH call (runs in its own greenlet)."""
        data = call.connect()
        if (problem := socket_mode_problem(data.headers)) is not None:  # `event`/`linger` would fail obscurely
            self.log.error("call.socket_mode", call=data.uuid, problem=problem)
            call.hangup_quietly()
            return
        call.subscribe()
        call.linger(5)
        if data.headers.get("variable_vb_role") == "agent":  # an agent's leg we originated for a handoff
            self.handoff.attach_agent_leg(call, data.uuid)
            return
        if self._turn_away(data):
            self._busy(call, data)
            return
        flow = campaign_flow(self, data.headers) or self.flow_for(data.callee)
        self.metrics.call_started()
        result = CallResult(data, None, time.time(), None)  # drive_call fills it as the call goes, even if it raises
        call_id = data.uuid or str(uuidlib.uuid4())
        try:
            prefer, voice = self._voice_agent(flow)
            handoff = self._handoff_factory(data.uuid, prefer) if self.config.agents.groups else None
            drive_call(call, data, lambda rate: self._session(flow, rate, voice, data), self.pool,
                       media_ip=self.config.media_ip, handoff=handoff, result=result,
                       recording=self.config.recordings_dir / f"{call_id}.wav", switch_alive=self._switch_alive,
                       rearm=rearm_settings(self.config))
            if result.worker is not None and result.worker.error is not None:  # the session's thread failed
                result.error = repr(result.worker.error)
                self.metrics.errors += 1
        except Exception as err:
            result.error = repr(err)
            self.metrics.errors += 1
            self.log.error("call.failed", call=data.uuid, error=repr(err))
            call.hangup_quietly()
        finally:
            if call.closed and not call.hung_up:  # the socket is gone, the channel may not be: end it over inbound
                with contextlib.suppress(EslFailure):
                    self.inbound.uuid_kill(data.uuid, "NORMAL_TEMPORARY_FAILURE", timeout=1.0)
            self.metrics.call_ended()
            self._write_record(flow, result, call_id)
            self.records.submit(self.trimmer.maybe)

    def _turn_away(self, data: ChannelData) -> bool:
        """Over ``max_calls``, or stopping (a campaign dial this engine placed is still taken: it was answered)."""
        ours = getattr(self, "campaigns", None) is not None and bool(data.headers.get("variable_vb_attempt_id"))
        return (not self.accepting and not ours) or self.metrics.active_calls >= self.config.max_calls

    def _switch_alive(self) -> bool:
        """Is FreeSWITCH there? (``api status`` over the inbound connection; a crash closes that one too)."""
        try:
            self.inbound.api("status", timeout=SWITCH_PROBE_S)
        except EslFailure:
            return False
        return True

    def _voice_agent(self, flow: Flow) -> tuple[str, Path | None]:
        """The agent this call will most likely reach, and their voice: the bot speaks as they do."""
        group = handoff_group(flow)
        agent = self.agents.peek(group, time.monotonic()) if group in self.config.agents.groups else None
        if agent is None or not agent.voice:
            return (agent.id if agent else ""), None
        return agent.id, Path(agent.voice)

    def _handoff_factory(self, call_id: str, prefer: str) -> HandoffFactory:
        def make(call: OutboundCall, worker: SessionThread, codec: str, rearm: Callable[[], None]) -> CallHandoff:
            return CallHandoff(self.handoff, call, call_id=call_id, caller_codec=codec, clock=worker.now,
                               post=worker.post, mute=worker.mute, rearm=rearm, prefer=prefer)
        return make

    def _whisper(self, snapshot: Mapping[str, object], path: Path) -> Path:
        """The whisper WAV for an agent (runs in a native thread)."""
        flow = self.flows[""]
        text = whisper_text(snapshot, flow.language)
        return write_whisper(self._pipeline(flow, 8000).cache.render_dynamic, text, path, 8000)

    def _session(self, flow: Flow, rate: int, voice: Path | None = None, data: ChannelData | None = None) -> CallSession:
        session = self._pipeline_off_hub(flow, rate, voice).session()
        if data is not None:  # a campaign's dial may ask for answering-machine detection (vb_amd)
            session.core.amd, problem = gate_for_call(data.headers, flow, rate)
            if problem is not None:
                self.log.error("call.amd_settings", call=data.uuid, problem=problem)
        if self.on_session is not None:
            self.on_session(session)
        if self.notifier is not None and data is not None:
            self.notifier.watch(session, CallInfo(data.uuid, data.caller, data.callee, flow.id))
        return session

    def _busy(self, call: OutboundCall, data: ChannelData) -> None:
        self.metrics.rejected += 1
        campaigns = getattr(self, "campaigns", None)
        if campaigns is not None:  # a campaign dial answered with no bot free: dropped, not waited for
            campaigns.turned_away(data.uuid)
        self.log.warning("call.busy", call=data.uuid, active=self.metrics.active_calls)
        action = self.config.busy_action
        if action == "prompt" and self.busy_prompt is not None:
            play_busy(call, data, self.busy_prompt, self.pool, media_ip=self.config.media_ip)
        elif action.startswith("transfer:"):
            call.execute_nowait("transfer", action.split(":", 1)[1])
        else:
            call.hangup_quietly("USER_BUSY")

    def _write_record(self, flow: Flow, result: CallResult, call_id: str) -> None:
        """Rule 4: a record for every call (built here, from state that no longer changes), then saved and its
        recording closed on the record writer's thread."""
        recorder = result.recorder
        try:
            record = self._record(flow, result, call_id)
        except Exception as exc:  # never lose the call: a record of what is certain, with the error
            self.log.error("record.build_failed", call=call_id, error=repr(exc))
            result.worker, result.error = None, result.error or repr(exc)
            record = self._record(flow, result, call_id)
        self.records.submit(lambda: _store(self.store, record, recorder))
        session = result.worker.session if result.worker is not None else None
        if getattr(self, "campaigns", None) is not None and record.extras.get("campaign"):
            return  # the campaign runner writes this call's messages with its attempt (voicebot.esl.campaigns)
        if self.notifier is not None and session is not None:  # hands the messages to its writer thread
            self.notifier.call_ended(record, flow.hangup_notify, session.machine.outcome.notifications)

    def flush_records(self, timeout_s: float = 10.0) -> bool:
        """Wait (yielding to the hub) until the record writer has run every job queued so far; True if it did."""
        deadline = time.monotonic() + timeout_s
        while not self.records.idle:
            if time.monotonic() > deadline:
                return False
            gevent.sleep(0.01)
        return True

    def _record(self, flow: Flow, result: CallResult, call_id: str) -> CallRecord:
        data, worker = result.data, result.worker
        recorder = result.recorder
        session = worker.session if worker else None
        if session is not None:
            for turn in session.timeline.turns():
                if turn["response_ms"] is not None:
                    self.metrics.response_ms.observe(turn["response_ms"])
            for barge in session.timeline.barge_ins():
                self.metrics.barge_in_ms.observe(barge["reaction_ms"])
        outcome = session.machine.outcome if session else Outcome(disposition="not_answered")
        return record_from_call(call_id, outcome, session.timeline if session else None, flow_id=flow.id,
                                caller=data.caller if data else "", callee=data.callee if data else "",
                                started_wall=result.started_wall, answered_wall=result.answered_wall,
                                ended_wall=time.time(),
                                recording_path=str(recorder.path) if recorder is not None and recorder.has_audio else "",
                                flow_version=flow.version, hangup_cause=result.hangup_cause or result.error,
                                extras=_extras(result), handoff=result.handoff)

    def _notifier(self) -> Notifier | None:
        """The notifications sender (docs/notifications.md), when the config has any; None otherwise."""
        config = self.notifications or self.config.notifications
        return open_notifier(replace(config, db=outbox_location(replace(self.config, notifications=config))),
                             self.config.records_db)

    # ------------------------------------------------------------------ HTTP

    def _http(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            body = self.metrics.prometheus(esl_up=self.inbound.up, accepting=self.accepting).encode()
            start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4")])
            return [body]
        if path == "/health":
            up = self.inbound.up
            state = self.inbound.state()
            text = (f"{'ok' if up else 'degraded'}: freeswitch {'up' if up else 'down'} "
                    f"(connects {state.connects}, reconnects {state.reconnects}, attempts {state.attempts_total}, "
                    f"failed since last up {state.attempts}), active calls {self.metrics.active_calls}\n")
            if not up and state.last_error:
                text += f"last error: {state.last_error}\nhint: {state.hint}\n"
            text += "".join(f"agent {a['id']}: {a['state']}\n" for a in self.agents.snapshot(time.monotonic()))
            start_response("200 OK" if up else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [text.encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"try /health or /metrics\n"]

    def shutdown(self) -> None:
        """Rule 5: stop taking calls, wait for current ones up to the deadline, then end them."""
        self.accepting = False
        self.log.info("engine.stopping", active=self.metrics.active_calls)
        if getattr(self, "_campaigns_opening", None) is not None:
            self._campaigns_opening.kill()
        campaigns = getattr(self, "campaigns", None)
        if campaigns is not None:
            campaigns.stop_dialing()
        deadline = time.monotonic() + self.config.shutdown_deadline_s
        while self.metrics.active_calls and time.monotonic() < deadline:
            gevent.sleep(0.1)
        if campaigns is not None:  # the dials in flight end and are written while the record writer still runs
            campaigns.close(max(2.0, deadline - time.monotonic()))
        self.server.stop(timeout=2.0)
        self.http.stop(timeout=1)
        self.inbound.stop()
        if self.screenpop is not None:
            self.screenpop.close(timeout=2.0)
        if self.notifier is not None:
            self.notifier.close(timeout=2.0)
        self.records.close(RECORDS_DRAIN_S)
        self.close_models()
        self.log.info("engine.stopped")

    def close_models(self) -> None:
        """Stop the processes the models run in (the ASR pool's and the accurate pass's workers): none outlives
        the engine. Closing twice does nothing."""
        models: list[Any] = [p.asr for p in self.pipelines.values()] + [getattr(self, "_whispers", None)]
        for model in {id(m): m for m in models if m is not None}.values():
            close = getattr(model, "close", None)
            if close is not None:
                try:
                    close()
                except Exception as err:  # one model's failure never keeps the others' workers running
                    self.log.error("engine.model_close_failed", model=type(model).__name__, error=repr(err))

    def serve_forever(self) -> None:
        """Start, then run until SIGTERM or SIGINT, then shut down gracefully."""
        self.start()
        stop = gevent.event.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(sig, stop.set)
        stop.wait()
        self.shutdown()


def inbound_connection(cfg: EngineConfig) -> InboundConnection:
    """The inbound ESL connection as the config sets it up (``freeswitch.*``); not started."""
    return InboundConnection(cfg.esl_host, cfg.esl_port, cfg.esl_password, command_timeout_s=cfg.command_timeout_s,
                             connect_timeout_s=cfg.esl_connect_timeout_s, backoff_initial_s=cfg.esl_reconnect_initial_s,
                             backoff_max_s=cfg.esl_reconnect_max_s)


def rearm_settings(cfg: EngineConfig) -> RearmSettings:
    """Every call's stall watch as the config sets it (``media.stall_s``, ``media.rearm_*``)."""
    return RearmSettings(stall_s=cfg.media_stall_s, backoff_initial_s=cfg.rearm_backoff_initial_s,
                         backoff_max_s=cfg.rearm_backoff_max_s, max_failed=cfg.rearm_max_failed,
                         max_per_window=cfg.rearm_max_per_window, window_s=cfg.rearm_window_s)


def _bind(start: Callable[[], None], key: str, host: str, port: int) -> None:
    """Start a listening server; a taken port becomes :class:`PortInUse` naming the config key."""
    try:
        start()
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise PortInUse(key, host, port) from err
        raise


def _extras(result: CallResult) -> dict[str, Any] | None:
    extras: dict[str, Any] = {}
    if result.error:
        extras["error"] = result.error
    if result.handoff.get("agent_id"):
        extras["agent"] = result.handoff["agent_id"]
    if result.thread_stuck:
        extras["thread_stuck"] = True
    headers = result.data.headers if result.data is not None else {}
    campaign = {k: headers[f"variable_vb_{k}"] for k in CAMPAIGN_IDS if headers.get(f"variable_vb_{k}")}
    if campaign:  # a campaign's dial (voicebot.campaign.dialing): the attempt links back to this record
        extras["campaign"] = campaign
    return extras or None


def _store(store: RecordStore, record: CallRecord, recorder: StereoRecorder | None) -> None:
    """(The record writer's thread) the record first, then the recording's last frames and header."""
    try:
        store.save(record)  # never raises: the record is spooled before the database is tried
    finally:
        if recorder is not None:
            recorder.close()  # never raises: a failure is logged, the record is already safe


def print_progress(line: str) -> None:
    """Start-up progress for people, on stderr."""
    print(f"voicebot: {line}", file=sys.stderr, flush=True)
