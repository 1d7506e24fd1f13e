"""Tests for voicebot.dialog.graph: DOT text for a flow, and rendering it with Graphviz."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest

from voicebot.dialog.flow import (
    REPEAT,
    RETURN,
    Flow,
    Listen,
    Node,
    Retry,
    Say,
    Transfer,
    Utterance,
)
from voicebot.dialog.graph import GraphvizError, GraphvizMissing, UnsupportedFormat, best_dot, flow_to_dot, render

SVG = "{http://www.w3.org/2000/svg}"


def say(*texts: str) -> Say:
    return Say(variants=tuple(Utterance(text=t) for t in texts))


def english_flow() -> Flow:
    """A small loan-reminder flow touching every kind of edge."""
    nodes = [
        Node(
            id="greet",
            say=say("Hello {{name}}, this is Acme Bank about your loan payment.", "Hi again"),
            listen=Listen(),
            routes={"yes": "confirm", "no": "offer_agent", "help": REPEAT},
            dtmf={"1": "confirm", "0": "offer_agent"},
            default="offer_agent",
            no_input=Retry(retries=2, then="goodbye"),
            tags=("reached",),
            level="B",
            capture={"pay_date": "date"},
        ),
        Node(id="confirm", say=say("Thank you. Goodbye."), hangup="promised", tags=("promise",), level="A"),
        Node(
            id="offer_agent",
            say=say("Let me connect you with a colleague."),
            transfer=Transfer(group="collections", timeout_s=20, on_timeout="goodbye", on_fail="sorry"),
            notify=("supervisor",),
            prepare="collections",
        ),
        Node(id="sorry", say=say("Sorry, something went wrong."), next="goodbye", globals_enabled=False),
        Node(
            id="robot_answer",
            say=say("Yes, I am an automated assistant."),
            next=RETURN,
        ),
        Node(id="goodbye", say=say("Goodbye."), hangup="no_response", level="D"),
    ]
    return Flow(
        id="loan_reminder",
        version="1.2",
        language="en",
        start="greet",
        nodes={n.id: n for n in nodes},
        global_routes={"are_you_robot": "robot_answer", "stop_calling": "goodbye", "say_again": REPEAT},
        on_limit="goodbye",
    )


TRICKY = 'He said "pay" at C:\\bank\\ & <now>'
ZH_TEXT = "您好{{name}}，我是“安心银行”的客服"


def chinese_flow() -> Flow:
    """A Chinese flow whose texts, ids and intents hold quotes, backslashes and newlines."""
    nodes = [
        Node(
            id="问候",
            say=say(ZH_TEXT + "\n请问您方便吗？"),
            listen=Listen(),
            routes={"肯定": "结束", "否定": '转"人工"'},
            no_match=Retry(retries=1, then='转"人工"'),
            tags=("已接通", "a\\b"),
            level="C",
        ),
        Node(id='转"人工"', say=say(TRICKY), transfer=Transfer(group="客服\\组")),
        Node(id="结束", say=say("再见" * 40), hangup="完成"),
    ]
    return Flow(id="催收\\zh", version="1", language="zh", start="问候", nodes={n.id: n for n in nodes})


def edges(dot: str) -> list[tuple[str, str, str]]:
    """(source, target, attribute text) for each edge statement in DOT text."""
    found = re.findall(r'^\s*("(?:[^"\\]|\\.)*") -> ("(?:[^"\\]|\\.)*")(?: \[(.*)\])?;$', dot, re.M)
    return [(s, t, a) for s, t, a in found]


def edge_attrs(dot: str, src: str, dst: str) -> list[str]:
    """Attribute texts of the edges from node id ``src`` to ``dst`` (given unquoted)."""
    return [a for s, t, a in edges(dot) if s == f'"{src}"' and t == f'"{dst}"']


def svg_texts(path: Path) -> list[str]:
    """All text in an SVG file, parsed as XML (so it must be well-formed)."""
    root = ET.parse(path).getroot()
    assert root.tag == SVG + "svg"
    return ["".join(t.itertext()) for t in root.iter(SVG + "text")]


# --- DOT text -----------------------------------------------------------------


def test_every_node_gets_a_box_with_its_id_and_prompt() -> None:
    dot = flow_to_dot(english_flow())
    for node_id in ("greet", "confirm", "offer_agent", "sorry", "robot_answer", "goodbye"):
        assert re.search(rf'^  "{node_id}" \[label=<<B>{node_id}</B>', dot, re.M), node_id
    assert "“Hello {{name}}, this is Acme<BR/>Bank about your loan payment.” (+1)" in dot  # two lines; a second variant
    assert "“Let me connect you with a<BR/>colleague.”" in dot


def test_node_details_lines() -> None:
    dot = flow_to_dot(english_flow())
    for detail in ("tags: reached", "level: B", "capture: pay_date (date)", "notify: supervisor", "prepare: collections"):
        assert f">{detail}</FONT>" in dot, detail
    assert "hang up: promised" in dot and "hang up: no_response" in dot
    assert dot.count(">global intents off</FONT>") == 1  # only on "sorry"


def test_start_point_points_at_start_node() -> None:
    dot = flow_to_dot(english_flow())
    assert edge_attrs(dot, "__start__", "greet")
    assert re.search(r'"__start__" \[shape="circle", label="start"', dot)


def test_route_edges_are_labelled() -> None:
    dot = flow_to_dot(english_flow())
    (to_confirm,) = edge_attrs(dot, "greet", "confirm")
    assert to_confirm == 'label="yes\\nkey 1"'
    (to_agent,) = edge_attrs(dot, "greet", "offer_agent")
    assert to_agent == 'label="no\\nkey 0\\nanything else"'
    (to_goodbye,) = edge_attrs(dot, "sorry", "goodbye")  # next: no label
    assert to_goodbye == ""


def test_repeat_is_a_self_loop_and_return_a_note() -> None:
    dot = flow_to_dot(english_flow())
    (loop,) = edge_attrs(dot, "greet", "greet")
    assert loop == 'label="help\\n(say again)"'
    assert edge_attrs(dot, "robot_answer", "__return__:robot_answer")
    assert re.search(r'"__return__:robot_answer" \[shape="note".*↩ back', dot)
    assert not re.search(r'-> "(return|repeat)"', dot)


def test_retry_edges_are_dashed_and_counted() -> None:
    dot = flow_to_dot(english_flow())
    (no_input,) = edge_attrs(dot, "greet", "goodbye")
    assert 'label="no input ×3"' in no_input and 'style="dashed"' in no_input
    # greet has a default, so no-match never happens there: no edge, no line
    assert "no match" not in dot
    zh = flow_to_dot(chinese_flow())
    (no_match,) = edge_attrs(zh, "问候", '转\\"人工\\"')[1:]
    assert 'label="no match ×2"' in no_match and 'style="dashed"' in no_match
    assert "no input ×3 → hang up" in zh  # then is empty


def test_transfer_draws_a_handoff_shape_with_fallback_edges() -> None:
    dot = flow_to_dot(english_flow())
    assert re.search(r'"__handoff__:offer_agent" \[shape="doubleoctagon".*label="handoff: collections\\nwait 20 s"\]', dot)
    assert edge_attrs(dot, "offer_agent", "__handoff__:offer_agent")
    (timeout,) = edge_attrs(dot, "__handoff__:offer_agent", "goodbye")
    (fail,) = edge_attrs(dot, "__handoff__:offer_agent", "sorry")
    assert 'style="dashed"' in timeout and 'label="no agent"' in timeout
    assert 'style="dashed"' in fail and 'label="transfer failed"' in fail


def test_transfer_without_fallback_says_it_hangs_up() -> None:
    dot = flow_to_dot(chinese_flow())
    assert 'label="handoff: 客服\\\\组\\nwait 30 s\\nno agent: hang up (no_agent)"' in dot
    assert not [e for e in edges(dot) if e[0].startswith('"__handoff__') and "dashed" in e[2]]


def test_hangup_nodes_are_styled_as_ends() -> None:
    dot = flow_to_dot(english_flow())
    for node_id in ("confirm", "goodbye"):
        (stmt,) = re.findall(rf'^  "{node_id}" \[.*$', dot, re.M)
        assert 'color="#c62828"' in stmt and 'penwidth="2.5"' in stmt
    (sorry,) = re.findall(r'^  "sorry" \[.*$', dot, re.M)
    assert "#c62828" not in sorry


def test_global_intents_form_a_cluster() -> None:
    dot = flow_to_dot(english_flow())
    cluster = dot[dot.index('subgraph "cluster_globals" {') :]
    cluster = cluster[: cluster.index("\n  }\n")]
    assert 'label="from any node"' in cluster and '"__globals__"' in cluster
    assert '"__repeat__:__globals__"' in cluster  # "repeat" from anywhere is a note, not a node
    assert 'label="are_you_robot"' in edge_attrs(dot, "__globals__", "robot_answer")[0]
    assert 'label="stop_calling"' in edge_attrs(dot, "__globals__", "goodbye")[0]
    assert 'label="say_again"' in edge_attrs(dot, "__globals__", "__repeat__:__globals__")[0]
    assert "cluster_globals" not in flow_to_dot(chinese_flow())  # no global intents there


def test_limits_note_has_dotted_edge_to_on_limit() -> None:
    dot = flow_to_dot(english_flow())
    assert 'label="limits: 600 s, 30 turns"' in dot
    (edge,) = edge_attrs(dot, "__limits__", "goodbye")
    assert 'style="dotted"' in edge
    zh = flow_to_dot(chinese_flow())
    assert "30 turns\\n→ hang up" in zh and not edge_attrs(zh, "__limits__", "结束")


def test_missing_target_gets_a_warning_note() -> None:
    flow = Flow(id="f", version="1", language="en", start="a", nodes={"a": Node(id="a", next="nowhere")})
    dot = flow_to_dot(flow)
    assert edge_attrs(dot, "a", "__missing__:nowhere")
    assert "⚠ missing node: nowhere" in dot


def test_recording_only_prompt_and_silent_node() -> None:
    nodes = {
        "rec": Node(id="rec", say=Say(variants=(Utterance(prompt="greeting_v2"),)), next="quiet"),
        "quiet": Node(id="quiet", hangup="done"),
    }
    dot = flow_to_dot(Flow(id="f", version="1", language="en", start="rec", nodes=nodes))
    assert "<B>rec</B><BR/>[recording: greeting_v2]>" in dot
    assert '"quiet" [label=<<B>quiet</B><BR/><FONT COLOR="#c62828"><B>hang up: done</B></FONT>>' in dot


def test_escaping_of_quotes_backslashes_newlines_and_html() -> None:
    dot = flow_to_dot(chinese_flow())
    assert dot.startswith('digraph "催收\\\\zh" {')
    assert '"转\\"人工\\"" [label=<<B>转&quot;人工&quot;</B>' in dot
    assert "He said &quot;pay&quot; at C:\\bank\\ &amp;<BR/>&lt;now&gt;" in dot
    assert "“您好{{name}}，我是“安心银行”<BR/>的客服 请问您方便吗？”" in dot  # newline became a space, {{name}} kept
    assert "tags: 已接通, a\\b" in dot
    assert "“" + "再见" * 7 + "<BR/>" + "再见" * 7 + "…”" in dot  # Chinese counts 2 columns a character: 28 + "…"
    assert "\n\n" not in dot and "\r" not in dot


def test_dot_text_is_deterministic() -> None:
    assert flow_to_dot(english_flow()) == flow_to_dot(english_flow())
    assert flow_to_dot(chinese_flow()) == flow_to_dot(chinese_flow())


# --- rendering ----------------------------------------------------------------


def test_render_dot_writes_the_text(tmp_path: Path) -> None:
    out = render(english_flow(), tmp_path / "sub" / "flow.dot")
    assert out == tmp_path / "sub" / "flow.dot"
    assert out.read_text(encoding="utf-8") == best_dot(english_flow())


def test_render_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormat, match=r"'flow\.jpg'.*\.dot, \.svg, \.png, \.pdf") as info:
        render(english_flow(), tmp_path / "flow.jpg")
    assert isinstance(info.value, ValueError)
    assert not (tmp_path / "flow.jpg").exists()


@pytest.mark.parametrize("make", [english_flow, chinese_flow])
def test_dot_text_is_valid_graphviz(make: Callable[[], Flow]) -> None:
    done = subprocess.run(["dot", "-Tcanon"], input=flow_to_dot(make()).encode(), capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode()
    assert b"Warning" not in done.stderr and b"Error" not in done.stderr, done.stderr.decode()


def test_render_svg_english(tmp_path: Path) -> None:
    out = render(english_flow(), tmp_path / "flow.svg")
    texts = svg_texts(out)
    for node_id in ("greet", "confirm", "offer_agent", "sorry", "robot_answer", "goodbye"):
        assert node_id in texts, node_id
    for label in ("start", "handoff: collections", "from any node", "any node", "yes", "key 1", "anything else"):
        assert label in texts, label
    assert "no input ×3" in texts
    assert "“Hello {{name}}, this is Acme" in texts and "Bank about your loan payment.” (+1)" in texts


def test_render_svg_chinese_keeps_text_exact(tmp_path: Path) -> None:
    out = render(chinese_flow(), tmp_path / "zh.svg")
    texts = svg_texts(out)
    for node_id in ("问候", '转"人工"', "结束"):
        assert node_id in texts, node_id
    assert '“He said "pay" at C:\\bank\\ &' in texts and "<now>”" in texts
    assert "“您好{{name}}，我是“安心银行”" in texts and "的客服 请问您方便吗？”" in texts
    assert "handoff: 客服\\组" in texts
    assert "tags: 已接通, a\\b" in texts
    assert "催收\\zh v1 (zh)" in texts


def test_render_png_has_png_magic(tmp_path: Path) -> None:
    out = render(chinese_flow(), tmp_path / "zh.PNG")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 1000


def test_render_without_graphviz_raises_graphviz_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(GraphvizMissing, match=r"apt-get install graphviz") as info:
        render(english_flow(), tmp_path / "flow.svg")
    assert isinstance(info.value, RuntimeError)
    assert "graphviz" in str(info.value) and ".dot" in str(info.value)
    assert not (tmp_path / "flow.svg").exists()
    # .dot needs no Graphviz
    assert render(english_flow(), tmp_path / "flow.dot").exists()


def test_render_reports_dot_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    script = fake / "dot"
    script.write_text("#!/bin/sh\necho 'syntax error in line 1' >&2\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake))
    with pytest.raises(GraphvizError, match="syntax error in line 1") as info:
        render(english_flow(), tmp_path / "flow.png")
    assert not isinstance(info.value, GraphvizMissing)
    assert not (tmp_path / "flow.png").exists()


# --- PDF, and large flows on one page ---------------------------------------------

FLOWS = Path(__file__).resolve().parent.parent / "examples" / "flows"
FLOW_FILES = ["lead_screening_en.yaml", "lead_screening_zh.yaml", "appointment_reminder_en.yaml"]


def test_render_pdf(tmp_path: Path) -> None:
    out = render(english_flow(), tmp_path / "flow.pdf")
    data = out.read_bytes()
    assert data[:5] == b"%PDF-" and b"%%EOF" in data[-64:]


def test_graph_command_writes_pdf_and_names_the_formats_it_cannot(tmp_path: Path) -> None:
    """`voicebot graph FLOW -o flow.pdf` works; `-o flow.jpg` says which names work, without a traceback."""
    root = FLOWS.parent.parent
    flow = str(FLOWS / "appointment_reminder_en.yaml")

    def graph(out: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "voicebot.cli", "graph", flow, "-o", str(out)], cwd=root,
                              env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=60)

    done = graph(tmp_path / "flow.pdf")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "flow.pdf").read_bytes()[:5] == b"%PDF-"
    done = graph(tmp_path / "flow.jpg")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "flow.jpg" in done.stderr and ".svg, .png, .pdf" in done.stderr
    assert not (tmp_path / "flow.jpg").exists()


def test_a_retry_rule_most_nodes_share_is_drawn_once() -> None:
    from voicebot.dialog.loader import load_flow

    dot = flow_to_dot(load_flow(FLOWS / "appointment_reminder_en.yaml"))
    retries = [(src, dst, attrs) for src, dst, attrs in edges(dot) if "no input" in attrs or "no match" in attrs]
    assert retries == [('"__retries__"', '"goodbye_callback"', 'label="no input ×2", style="dashed", color="#777777"'),
                       ('"__retries__"', '"goodbye_callback"', 'label="no match ×2", style="dashed", color="#777777"')]
    assert '"__retries__" [shape="note", label="any listening node"' in dot
    (to_goodbye,) = edge_attrs(flow_to_dot(english_flow()), "greet", "goodbye")  # one node alone keeps its own edge
    assert 'label="no input ×3"' in to_goodbye


@pytest.mark.parametrize("name", FLOW_FILES)
def test_example_flows_draw_to_fit_one_page(name: str, tmp_path: Path) -> None:
    """The 15/16-node example flows print on one page: between 1:1.6 and 1.6:1 (was 3848x1095 for the 15 nodes)."""
    from voicebot.dialog.loader import load_flow

    flow = load_flow(FLOWS / name)
    out = render(flow, tmp_path / "flow.png")
    width, height = struct.unpack(">II", out.read_bytes()[16:24])
    assert 1 / 1.6 <= width / height <= 1.6, (width, height)
    plain = subprocess.run(["dot", "-Tplain"], input=best_dot(flow).encode(), capture_output=True, timeout=30)
    _, _, w, h = plain.stdout.decode().split("\n", 1)[0].split()
    assert 1 / 1.6 <= float(w) / float(h) <= 1.6
