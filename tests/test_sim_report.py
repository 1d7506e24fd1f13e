"""The simulate/demo report: the timeline picture's layout (measured with matplotlib's renderer), the latency table,
the transcript and timeline.json, on the recorded timeline of the demo call (no models needed)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from voicebot.dialog.loader import load_flow
from voicebot.sim import report
from voicebot.timeline import Timeline

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "tests" / "data" / "demo_timeline.json"
FLOW = ROOT / "examples" / "flows" / "lead_screening_en.yaml"
LONG = ("well I was wondering whether you could tell me a little more about the fees and the rate before I decide "
        "anything at all because my bank already pays me something")


def demo_result(extra: list[dict[str, Any]] | None = None) -> Any:
    """A stand-in for SimResult: the demo call's recorded timeline, noise where each side spoke."""
    data = json.loads(DEMO.read_text(encoding="utf-8"))
    tl = Timeline.from_json({**data, "entries": data["entries"] + (extra or [])})
    duration = max([data["duration_s"], *(e["t"] + 1 for e in extra or [])])
    rate, n = data["rate"], int(duration * data["rate"])
    rng = np.random.default_rng(1)

    def track(spans: list[tuple[float, float]]) -> np.ndarray:
        audio = np.zeros(n, dtype=np.int16)
        for start, end in spans:
            i, j = int(start * rate), min(n, int(end * rate))
            audio[i:j] = (rng.standard_normal(j - i) * 5000).astype(np.int16)
        return audio

    starts = {e["play_id"]: e["t"] for e in tl.of("prompt_start")}
    bot = track([(starts[e["play_id"]], e["t"]) for e in tl.of("prompt_end")])
    caller = track([(t["onset"], t["speech_end"]) for t in tl.turns()])
    session = SimpleNamespace(timeline=tl, settings=SimpleNamespace(rate=rate), machine=SimpleNamespace(flow=load_flow(FLOW)))
    result = SimpleNamespace(session=session, duration_s=duration, spoken=[], prompts=[], speech={}, caller_track=[],
                             bot_track=[], ear_latencies=lambda: {"response": [], "barge_in": []})
    return result, caller, bot


def drawn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, extra: list[dict[str, Any]] | None = None) -> Figure:
    """Draw the demo call's picture through report.draw_timeline and keep the figure it saved."""
    saved: list[Figure] = []
    original = Figure.savefig

    def keep(fig: Figure, *args: Any, **kwargs: Any) -> None:
        saved.append(fig)
        original(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    result, caller, bot = demo_result(extra)
    report.draw_timeline(result, caller, bot, tmp_path / "timeline.png")
    assert (tmp_path / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    (fig,) = saved
    return fig


def visible_texts(fig: Figure) -> list[Text]:
    """The texts drawn: visible, not empty, tick labels only within their axis' limits."""
    hidden = set()
    for ax in fig.axes:
        low, high = sorted(ax.get_xlim())
        hidden |= {id(t) for t in ax.get_xticklabels() if not low <= t.get_position()[0] <= high}
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden]


def test_timeline_labels_do_not_overlap_and_stay_inside(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fig = drawn(monkeypatch, tmp_path)
    renderer = FigureCanvasAgg(fig).get_renderer()  # type: ignore[no-untyped-call]
    page = fig.bbox
    texts = visible_texts(fig)
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    for text, box in boxes:
        assert page.x0 - 0.5 <= box.x0 and box.x1 <= page.x1 + 0.5, f"runs off the side: {text!r}"
        assert page.y0 - 0.5 <= box.y0 and box.y1 <= page.y1 + 0.5, f"runs off the top or bottom: {text!r}"
    tl = Timeline.from_json(json.loads(DEMO.read_text(encoding="utf-8")))
    words = [e["text"][:12] for e in tl.of("play") + tl.of("final")]
    said = [(text, box) for text, box in boxes if any(w in text.replace("\n", " ") for w in words)]
    assert len(said) == len(words) == 15, "every prompt and every caller turn is labelled"
    for i, (a, box_a) in enumerate(said):
        for b, box_b in said[i + 1:]:
            assert not box_a.overlaps(box_b), f"{a!r} overprints {b!r}"
    transcripts = [t for t in texts if t.get_text() in {s for s, _ in said}]
    others = [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t not in transcripts]
    for text, box in said:
        for other, other_box in others:
            assert not box.overlaps(other_box), f"{text!r} overprints {other!r}"


def test_timeline_marks_ignored_speech_and_explains_every_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fig = drawn(monkeypatch, tmp_path)
    texts = [t.get_text() for t in visible_texts(fig)]
    ignored = [t for t in texts if "wait [unk]" in t]
    assert ignored and ignored[0].startswith("ignored (protected prompt)"), ignored
    legends = [legend for ax in fig.axes if (legend := ax.get_legend()) is not None] + fig.legends
    labels = {t.get_text() for legend in legends for t in legend.get_texts()}
    assert {"speech probability", "speech start", "end of turn"} <= labels, "the VAD panel's lines are explained"
    assert {"speech ignored (bot kept talking)", "barge-in declined (bot resumed)", "bot paused"} <= labels


def test_long_caller_text_is_cut_with_an_ellipsis(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    extra = [{"t": 57.0, "kind": "speech_start"}, {"t": 63.0, "kind": "speech_end", "reason": "max_speech"},
             {"t": 63.2, "kind": "final", "text": LONG}]
    fig = drawn(monkeypatch, tmp_path, extra)
    (label,) = [t.get_text() for t in visible_texts(fig) if "wondering" in t.get_text()]
    assert label.endswith("…”") and "pays me something" not in label
    renderer = FigureCanvasAgg(fig).get_renderer()  # type: ignore[no-untyped-call]
    (box,) = [t.get_window_extent(renderer) for t in visible_texts(fig) if "wondering" in t.get_text()]
    assert box.x1 <= fig.bbox.x1, "the last label stays inside the figure"


def test_latency_table_marks_the_ignored_turn_instead_of_a_latency() -> None:
    result, _, _ = demo_result()
    table = report.latency_table(result)
    rows = table.splitlines()
    assert "11880 ms" not in table, "the ignored turn's 'latency' is the time to the next caller turn's answer"
    (row3,) = [r for r in rows if r.startswith("   3 ")]
    assert "wait [unk]" in row3 and "ignored" in row3 and "ms" in row3.split("ignored")[0]  # ASR final still shown
    assert any(r.startswith("turn 3 ignored:") and "protected for its first 4 s" in r for r in rows)
    (row1,) = [r for r in rows if r.startswith("   1 ")]
    assert "don't those [unk]…" in row1, "caller text cut with an ellipsis"


def test_transcript_and_timeline_json_say_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, _, _ = demo_result()
    monkeypatch.setattr(result.session, "machine", SimpleNamespace(flow=load_flow(FLOW), outcome=SimpleNamespace(
        disposition="transferred", level="A", tags=[], path=["greet"])))
    transcript = report.transcript_lines(result)
    (said,) = [line for line in transcript if "CALLER wait [unk]" in line]
    assert "(ignored: said 1.5 s into a prompt of node 'disclosure', protected for its first 4 s)" in said
    rows = report.latency_rows(result)
    assert [r["ignored"] for r in rows] == [False, False, True, False, False, False, False]
    assert rows[2]["response_ms"] is None and rows[2]["ear_response_ms"] is None
