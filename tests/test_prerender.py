"""Pre-rendering a lead's fill-in before its dial (issue 16: the campaign hook): with the real default voice, the
prompt cache, the pre-render thread, and a campaign run by the engine through the FreeSWITCH double, where the
call of a pre-rendered lead synthesizes nothing."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import gevent
import pytest

from fsdouble.double import FreeSwitchDouble
from tests.engine_support import PASSWORD, campaign_engine, engine_config
from voicebot.campaign.model import Pacing
from voicebot.campaign.store import Campaign, CampaignStore, NewLead
from voicebot.config import CampaignsConfig
from voicebot.dialog.loader import load_flow
from voicebot.pipeline import PipelineConfig, load_pipeline
from voicebot.tts.prerender import LeadFillIn, Prerenderer, Target, fill_in_phrases
from voicebot.tts.render import PromptCache

ROOT = Path(__file__).resolve().parent.parent
SCREENING = ROOT / "examples" / "flows" / "lead_screening_en.yaml"
CAMPAIGN_FLOW = Path(__file__).parent / "flows" / "campaign" / "campaign.yaml"
CACHE = ROOT / ".voicebot-cache" / "prompts"
TZ = "America/New_York"
TRUNK = "sofia/gateway/trunk/"
NAMES = ("Zebulon Quartermaine", "Philippa Oyelaran-Brooks")  # names no other test says: never in a memo already


@pytest.fixture(scope="module")
def cache() -> PromptCache:
    return load_pipeline(load_flow(SCREENING), PipelineConfig(rate=8000, cache_dir=CACHE)).cache


def _say_every_dynamic_prompt(cache: PromptCache, values: dict[str, str]) -> int:
    """Render every prompt of the screening flow that has variables, as calls do; the samples rendered."""
    from voicebot.tts.render import static_prompts

    flow = load_flow(SCREENING)
    return sum(len(chunk) for spec in static_prompts(flow) if spec.dynamic
               for chunk in cache.render_dynamic(spec.text, values, 8000))


def test_a_prerendered_lead_is_said_with_no_synthesis_and_one_not_prerendered_is_synthesized(cache: PromptCache) -> None:
    flow = load_flow(SCREENING)
    ready, cold = {"customer_name": "Bartholomew Ironside"}, {"customer_name": "Cordelia Featherstonehaugh"}
    phrases = fill_in_phrases(flow, cache, ready)
    assert any("Bartholomew Ironside" in p for p in phrases), phrases
    renderer = Prerenderer(lambda path: [Target(flow, cache, 8000)])
    try:
        for _ in range(2):
            renderer.submit(LeadFillIn("c", "1", str(SCREENING), ready))
        assert renderer.wait_idle(60)
    finally:
        renderer.close()
    assert renderer.pieces == len(phrases), "each piece made once: the second submit found them ready"
    assert all(not cache.needs_prerender(p, 8000) for p in phrases)
    synthesized, hits = cache.live_synthesized, cache.prerendered_hits
    assert _say_every_dynamic_prompt(cache, ready) > 8000
    assert cache.live_synthesized == synthesized, "the pre-rendered lead's prompts synthesized on the call"
    assert cache.prerendered_hits > hits
    _say_every_dynamic_prompt(cache, cold)
    assert cache.live_synthesized > synthesized, "a lead that was not pre-rendered is synthesized live"


def test_the_flow_defaults_fill_what_the_lead_leaves_out(cache: PromptCache) -> None:
    flow = load_flow(SCREENING)
    defaults = {n: v.default for n, v in flow.variables.items() if v.default}
    assert defaults, "the example flow has variables with defaults"
    with_defaults = fill_in_phrases(flow, cache, {"customer_name": "Ann"})
    overridden = fill_in_phrases(flow, cache, {"customer_name": "Ann", **{n: "Quillon" for n in defaults}})
    assert with_defaults != overridden and any("Quillon" in p for p in overridden)


def test_the_thread_renders_queued_leads_skips_unknown_flows_and_survives_failures(cache: PromptCache) -> None:
    flow = load_flow(SCREENING)

    def targets(path: str) -> list[Target]:
        if path == "broken":
            raise OSError("disk gone")
        return [Target(flow, cache, 8000)] if path == str(SCREENING) else []

    renderer = Prerenderer(targets)
    try:
        renderer.submit(LeadFillIn("c", "1", "broken", {}))
        renderer.submit(LeadFillIn("c", "2", "elsewhere.yaml", {}))
        renderer.submit(LeadFillIn("c", "3", str(SCREENING), {"customer_name": "Ottoline Vandersteen"}))
        assert renderer.wait_idle(60)
        assert (renderer.leads, renderer.skipped) == (1, 2) and renderer.pieces >= 1
        before = cache.live_synthesized
        _say_every_dynamic_prompt(cache, {"customer_name": "Ottoline Vandersteen"})
        assert cache.live_synthesized == before
    finally:
        renderer.close()


def test_a_full_queue_drops_leads_without_blocking() -> None:
    started = []

    def slow(path: str) -> list[Target]:
        started.append(path)
        time.sleep(0.3)
        return []

    renderer = Prerenderer(slow, queue_max=2)
    try:
        begin = time.monotonic()
        for i in range(6):
            renderer.submit(LeadFillIn("c", str(i), f"f{i}", {}))
        assert time.monotonic() - begin < 0.1, "submit blocked"
        assert renderer.dropped >= 3
        assert renderer.wait_idle(10)
        assert renderer.skipped + renderer.dropped == 6
    finally:
        renderer.close()


# ------------------------------------------------------------------ end to end


def _press_when_greeted(fs: FreeSwitchDouble, stop: list[bool]) -> None:
    """Each callee presses 1 once the bot's greeting reaches it (the flow then says goodbye and hangs up)."""
    seen: set[str] = set()
    beat = 0.0
    while not stop:
        if time.monotonic() - beat >= 1.0:
            fs.heartbeat()
            beat = time.monotonic()
        for ch in fs.channels():
            if ch.uuid not in seen and ch.unicast_active and fs.first_heard(ch.uuid, "engine", min_dbfs=-40) is not None:
                gevent.sleep(1.5)  # the greeting's name is said
                fs.press(ch.uuid, "1")
                seen.add(ch.uuid)
        gevent.sleep(0.05)


def test_a_campaign_call_for_a_prerendered_lead_performs_zero_synthesis(tmp_path: Path) -> None:
    now = time.time()
    store = CampaignStore(str(tmp_path / "campaigns.sqlite"))
    store.create_campaign(Campaign("pre", "prerender e2e", flow_path=str(CAMPAIGN_FLOW), window={"all": ["00:00-23:59"]},
                                   max_attempts=1, min_gap_s=0.2, daily_cap=5, amd_policy="off",
                                   pacing=Pacing(max_cps=40, max_dial_level=1.0), status="running"), now)
    store.add_leads("pre", [NewLead(f"+1212555{i:04d}", TZ, "US", 1, {"customer_name": name})
                            for i, name in enumerate(NAMES)], now)
    with FreeSwitchDouble(password=PASSWORD) as fs:
        fs.set_endpoint(f"{TRUNK}*", ring_s=5.0)  # a callee's phone rings while the lead's name is rendered
        config = engine_config(fs.inbound_port, tmp_path, (43900, 43999), default_flow=CAMPAIGN_FLOW, max_calls=4)
        engine = campaign_engine(config, CampaignsConfig(db=str(tmp_path / "campaigns.sqlite"), poll_s=0.2))
        assert engine.campaigns is not None
        engine.campaigns.ring_s = 15.0
        caches = [t.cache for t in engine.campaigns.prerender.targets_for(str(CAMPAIGN_FLOW))]
        assert caches, "the campaign's flow is the engine's default flow: its pipelines are loaded"
        before = [(c.live_synthesized, c.prerendered_hits) for c in caches]
        stop: list[bool] = []
        presser = gevent.spawn(_press_when_greeted, fs, stop)
        try:
            deadline = time.monotonic() + 60
            while Counter(r.status for r in store.leads("pre"))["done"] < len(NAMES):
                assert time.monotonic() < deadline, [(r.status, r.attempts) for r in store.leads("pre")]
                gevent.sleep(0.2)
        finally:
            stop.append(True)
            presser.join(2)
            prerender = engine.campaigns.prerender
            engine.shutdown()
        fs.assert_no_crash()
    after = [(c.live_synthesized, c.prerendered_hits) for c in caches]
    assert (prerender.leads, prerender.pieces) == (len(NAMES), len(NAMES)), "one piece per name, for both rates"
    assert sum(a[0] - b[0] for a, b in zip(after, before, strict=True)) == 0, "a pre-rendered lead's call synthesized"
    assert sum(a[1] - b[1] for a, b in zip(after, before, strict=True)) >= len(NAMES), "the calls used the pieces"
    store.close()
