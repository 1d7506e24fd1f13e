"""The double splits an originate's arguments as FreeSWITCH does, and the socket app connects in the mode that
leaves (issue 13: ``&socket(127.0.0.1:PORT async full)`` unquoted gives a sync, non-full socket).

FreeSWITCH 1.11.1 behaviour reproduced here: switch_separate_string (originate, the socket app), the connect reply's
``Socket-Mode`` / ``Control`` headers, and mod_event_socket refusing all but a few commands on a non-full socket.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import unquote

import pytest
from structlog.testing import capture_logs

from fsdouble.args import parse_originate, parse_socket_arg, separate_blank
from fsdouble.double import FreeSwitchDouble
from tests.engine_support import PASSWORD, engine_config, running_engine
from tests.test_esl_double import RawEsl, accept, inbound
from voicebot.esl.socketapp import originate_socket_app, originate_vars, socket_mode_problem


@pytest.mark.parametrize(("text", "tokens"), [
    ("{a=1}loopback/7000 &socket(127.0.0.1:8084 async full)",
     ["{a=1}loopback/7000", "&socket(127.0.0.1:8084", "async", "full)"]),
    ("{a=1}loopback/7000 &socket('127.0.0.1:8084 async full')", ["{a=1}loopback/7000", "&socket(127.0.0.1:8084 async full)"]),
    ("  x   'a b'  c ", ["x", "a b", "c"]),
    ("{n='Voice Bot'}user/1 &park()", ["{n=Voice Bot}user/1", "&park()"]),
    (r"a\ b c", [r"a\ b", "c"]),  # a backslash keeps the space from splitting (and stays: \  is no known escape)
    (r"it\'s x", ["it's", "x"]),
    ("don't split", ["don't split"]),  # the split pass opens a quote at any ', the cleanup keeps a lone one
])
def test_separate_blank_splits_as_switch_separate_string(text: str, tokens: list[str]) -> None:
    assert separate_blank(text) == tokens


def test_originate_argument_parsing() -> None:
    unquoted = parse_originate("{origination_uuid=u}loopback/7000 &socket(127.0.0.1:8084 async full)")
    assert unquoted is not None and (unquoted.app, unquoted.arg) == ("socket", "127.0.0.1:8084")
    quoted = parse_originate("{origination_uuid=u}loopback/7000 &socket('127.0.0.1:8084 async full')")
    assert quoted is not None and (quoted.app, quoted.arg) == ("socket", "127.0.0.1:8084 async full")
    inline = parse_originate("user/1001 'playback:/x.wav,eavesdrop:U' inline")
    assert inline is not None and (inline.app, inline.arg) == ("inline", "playback:/x.wav,eavesdrop:U")
    assert parse_originate("user/1001") is None and parse_originate("a b c d e f g h") is None
    assert parse_socket_arg("127.0.0.1:8084").control == "single-channel"
    target = parse_socket_arg("127.0.0.1:8084 ASYNC full")
    assert (target.socket_mode, target.control, target.data) == ("async", "full", "127.0.0.1:8084 async full")


def _originate_socket(fs: FreeSwitchDouble, engine: socket.socket, app_arg: str) -> tuple[RawEsl, dict[str, str]]:
    esl = inbound(fs)
    reply = esl.command(f"api originate {{origination_uuid=bot-call}}loopback/7001/voicebot &socket({app_arg})\n\n")
    assert reply.body == b"+OK bot-call\n"
    call = accept(engine)
    return call, call.command("connect\n\n").headers


def test_unquoted_socket_app_connects_sync_and_not_full(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    port = engine.getsockname()[1]
    call, data = _originate_socket(fs, engine, f"127.0.0.1:{port} async full")
    assert (data["Socket-Mode"], data["Control"]) == ("static", "single-channel")
    assert unquote(data["variable_current_application_data"]) == f"127.0.0.1:{port}"
    for refused in ("event plain CHANNEL_ANSWER", "linger", "linger 5", "api status", "bgapi status", "nolinger"):
        assert call.command(f"{refused}\n\n").reply == "-ERR command not found", refused
    assert call.command("myevents\n\n").reply == "+OK Events Enabled"
    assert call.command("getvar socket_host\n\n").reply == "127.0.0.1"
    assert call.command("sendmsg\ncall-command: execute\nexecute-app-name: answer\n\n").reply == "+OK"
    fs.assert_no_crash()


def test_quoted_socket_app_connects_async_and_full(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    port = engine.getsockname()[1]
    call, data = _originate_socket(fs, engine, f"'127.0.0.1:{port} async full'")
    assert (data["Socket-Mode"], data["Control"]) == ("async", "full")
    assert unquote(data["variable_current_application_data"]) == f"127.0.0.1:{port} async full"
    assert call.command("event plain CHANNEL_ANSWER\n\n").reply == "+OK event listener enabled plain"
    assert call.command("linger 5\n\n").reply.startswith("+OK")
    assert call.command("api status\n\n").body.startswith(b"UP")
    fs.assert_no_crash()


def test_dialplan_socket_data_is_not_split(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    port = engine.getsockname()[1]
    fs.route("7000", "socket", f"127.0.0.1:{port} async full")
    esl = inbound(fs)
    esl.send("bgapi originate {origination_uuid=caller}loopback/7000/voicebot &park()\n\n")
    call = accept(engine)
    data = call.command("connect\n\n").headers
    assert (data["Socket-Mode"], data["Control"]) == ("async", "full")
    assert call.command("linger\n\n").reply.startswith("+OK")


def test_place_call_connects_async_full(fs: FreeSwitchDouble, engine: socket.socket) -> None:
    fs.place_call(engine.getsockname()[1])
    data = accept(engine).command("connect\n\n").headers
    assert (data["Socket-Mode"], data["Control"]) == ("async", "full")


def test_engine_refuses_a_call_on_a_non_full_socket_and_names_the_quoting_trap(tmp_path: Path) -> None:
    """An unquoted originate (a dial script of the user's, an old engine) reaches the engine in sync, non-full
    mode: the engine says why in one log line and hangs the call up, instead of failing on ``event``."""
    with capture_logs() as logs, FreeSwitchDouble(password=PASSWORD) as double, \
            running_engine(engine_config(double.inbound_port, tmp_path, (42460, 42469))) as engine:
        engine.inbound.originate("loopback/7001/voicebot", f"&socket(127.0.0.1:{engine.server.port} async full)",
                                 uuid="unquoted")
        double.wait_for(lambda: double.channel("unquoted").hung_up, timeout=10, what="the refused call hangs up")
        refused = [e for e in logs if e["event"] == "call.socket_mode"]
        assert len(refused) == 1 and refused[0]["log_level"] == "error" and refused[0]["call"] == "unquoted"
        assert "Socket-Mode static, Control single-channel" in refused[0]["problem"]
        assert "&socket('HOST:PORT async full')" in refused[0]["problem"]
        assert not [e for e in logs if e["event"] == "esl.handler_error"], "no obscure -ERR command not found"
        assert engine.metrics.calls_total == 0
        double.assert_no_crash()


def test_the_engine_originates_with_the_socket_argument_quoted() -> None:
    assert originate_socket_app("127.0.0.1:8084") == "&socket('127.0.0.1:8084 async full')"
    parsed = parse_originate(f"{{origination_uuid=u}}user/1001 {originate_socket_app('127.0.0.1:8084')}")
    assert parsed is not None and parse_socket_arg(parsed.arg).control == "full"
    with pytest.raises(ValueError, match="no quotes or spaces"):
        originate_socket_app("127.0.0.1:8084 async")
    assert socket_mode_problem({"Socket-Mode": "async", "Control": "full"}) is None
    assert socket_mode_problem({"Socket-Mode": "async", "Control": "single-channel"}) is not None


def test_call_variables_with_spaces_are_quoted_so_the_dial_string_stays_whole() -> None:
    variables = {"origination_uuid": "u", "vb_var_customer_name": "Dana Smith", "vb_var_plan": "gold"}
    line = f"{{{originate_vars(variables)}}}loopback/7001/voicebot {originate_socket_app('127.0.0.1:8084')}"
    parsed = parse_originate(line)
    assert parsed is not None and parsed.app == "socket"
    assert parsed.aleg == "{origination_uuid=u,vb_var_customer_name=Dana Smith,vb_var_plan=gold}loopback/7001/voicebot"
    joined = ",".join(f"{k}={v}" for k, v in variables.items())  # what place_test_call sent before
    split = parse_originate(f"{{{joined}}}loopback/7001/voicebot {originate_socket_app('127.0.0.1:8084')}")
    assert split is not None and split.app == "transfer", "unquoted, the space cut the dial string"
    for bad in ("a,b", "it's", "x}y", "two\nlines"):
        with pytest.raises(ValueError, match="vb_var_x"):
            originate_vars({"vb_var_x": bad})


def test_voicebot_call_refuses_a_variable_no_originate_can_carry_before_loading_anything(tmp_path: Path) -> None:
    from voicebot.serving import place_test_call

    config = engine_config(1, tmp_path, (42470, 42479))
    status, summary = place_test_call(config, "loopback/7001/voicebot", {"plan": "gold,silver"}, lambda entry: None)
    assert status == 2 and summary == "voicebot call: call variable 'vb_var_plan' holds ',', which an originate cannot carry"
