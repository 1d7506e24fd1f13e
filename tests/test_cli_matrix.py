"""Every ``voicebot`` command against bad input: one line naming the thing, the cause and the fix, the documented
exit code (docs/cli.md), never a traceback.

Most cases call :func:`voicebot.cli.main` in-process (an exception escaping it fails the test as a traceback
would); a handful run ``python -m voicebot.cli`` in a subprocess for what only a real process shows (a taken
port, a closed stdout, the ``--debug`` traceback).
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicebot.audio.wav import write_wav
from voicebot.cli import main

ROOT = Path(__file__).resolve().parent.parent
FLOW = ROOT / "examples" / "flows" / "lead_screening_en.yaml"
SCRIPT = ROOT / "examples" / "callers" / "demo_en.yaml"
CAMPAIGN = ROOT / "examples" / "campaigns" / "spring_offer_en.yaml"
OK, FAILED, USAGE, UNREACHABLE, PORT_IN_USE, INTERNAL, BROKEN_PIPE = 0, 1, 2, 3, 6, 70, 141


def _adpcm_wav() -> bytes:
    fmt = struct.pack("<HHIIHH", 2, 1, 8000, 4000, 256, 4)  # MS ADPCM: a real WAV format that is not read
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 256) + bytes(256)
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of bad inputs: missing.*, empty.*, binary.*, adir/, garbage.wav, adpcm.wav, notes.txt, a flow without tests."""
    d = tmp_path_factory.mktemp("bad")
    for name in ("empty.yaml", "empty.wav", "empty.tests.yaml"):
        (d / name).write_bytes(b"")
    binary = bytes(range(256)) * 4
    for name in ("binary.yaml", "binary.tests.yaml"):
        (d / name).write_bytes(binary)
    (d / "adir").mkdir()
    (d / "garbage.wav").write_bytes(b"this is not a wav file at all, just text in a .wav")
    (d / "adpcm.wav").write_bytes(_adpcm_wav())
    (d / "notes.txt").write_text("some notes\n")
    (d / "untested.yaml").write_text(FLOW.read_text(encoding="utf-8"), encoding="utf-8")
    (d / "mapping.yaml").write_text("say: hello\n")  # neither a list of actions nor `turns:`
    from voicebot.records.store import open_store

    open_store(str(d / "calls.sqlite")).close()  # a records database with no calls in it
    _campaign_inputs(d)
    return d


def _campaign_inputs(d: Path) -> None:
    """campaigns.sqlite with campaign c1, a bad campaign file, a CSV of leads with a bad row, a garbage .xlsx."""
    from voicebot.campaign.store import Campaign, CampaignStore

    with CampaignStore(str(d / "campaigns.sqlite")) as store:
        store.create_campaign(Campaign("c1", flow_path=str(FLOW)), 0.0)
    (d / "campaign_bad.yaml").write_text("campaign: c2\nflow: nowhere.yaml\nmax_atempts: 3\n")
    (d / "leads.csv").write_text("phone,name\n+12125550142,Alex\n")
    (d / "leads_bad.csv").write_text("phone,name\n+12125550142,Alex\n12,Bad\n")
    (d / "garbage.xlsx").write_bytes(b"PK this is no workbook")


@pytest.fixture(scope="module")
def closed_port() -> int:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def listening() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


# (argv with {bad} for the folder above and {flow} for the example flow, exit code, words the message must hold)
CASES = [
    ("validate {bad}/missing.yaml", FAILED, "cannot read the flow file"),
    ("validate {bad}/empty.yaml", FAILED, "empty"),
    ("validate {bad}/binary.yaml", FAILED, "binary.yaml"),
    ("validate {bad}/adir", USAGE, "no flow files found in this folder (looked for *.yaml and *.yml"),
    ("validate {bad}/empty.tests.yaml", FAILED, "the flow test file is empty"),
    ("chat {bad}/missing.yaml", USAGE, "missing.yaml"),
    ("chat {bad}/empty.yaml", USAGE, "empty"),
    ("chat {bad}/binary.yaml", USAGE, "binary.yaml"),
    ("chat {bad}/adir", USAGE, "adir"),
    ("chat {flow} --script {bad}/missing.yaml", USAGE, "missing.yaml: no such file"),
    ("chat {flow} --script {bad}/empty.yaml", USAGE, "empty.yaml: the file is empty"),
    ("chat {flow} --script {bad}/binary.yaml", USAGE, "binary.yaml: a binary file"),
    ("chat {flow} --script {bad}/adir", USAGE, "adir: a directory"),
    ("chat {flow} --script {bad}/garbage.wav", USAGE, "chat is text only"),
    ("chat {flow} --script {bad}/mapping.yaml", USAGE, "`turns:` list; see docs/callers.md"),
    ("chat {flow} --var oops", USAGE, "--var oops: expects KEY=VALUE"),
    ("chat {flow} --var patient_nme=Bob", USAGE, "no variable 'patient_nme'"),
    ("test-flow {bad}/untested.yaml", USAGE, "no flow tests beside it (looked for"),
    ("test-flow {bad}/adir", USAGE, "no flow tests in this folder"),
    ("test-flow {bad}/missing.yaml", USAGE, "missing.yaml: no such flow file"),
    ("test-flow {bad}/missing.tests.yaml", USAGE, "missing.tests.yaml: no such file"),
    ("test-flow {bad}/empty.tests.yaml", USAGE, "the flow test file is empty"),
    ("test-flow {bad}/binary.tests.yaml", USAGE, "a binary file, not a flow test file"),
    ("test-flow {bad}/notes.txt", USAGE, "the name must end in .tests.yaml"),
    ("graph {bad}/missing.yaml -o {bad}/out.svg", USAGE, "missing.yaml"),
    ("graph {flow} -o {bad}/out.txt", USAGE, "out.txt"),
    ("simulate {bad}/missing.yaml --caller {bad}/garbage.wav", USAGE, "missing.yaml"),
    ("simulate {flow} --caller {bad}/missing.wav", USAGE, "missing.wav: no such recording"),
    ("simulate {flow} --caller {bad}/empty.wav", USAGE, "empty file (0 bytes)"),
    ("simulate {flow} --caller {bad}/garbage.wav", USAGE, "not a WAV file"),
    ("simulate {flow} --caller {bad}/adpcm.wav", USAGE, "MS ADPCM (WAV format tag 0x0002) is not supported"),
    ("simulate {flow} --caller {bad}/adir", USAGE, "a directory"),
    ("simulate {flow} --caller {bad}/binary.yaml", USAGE, "a binary file"),
    ("simulate {flow} --caller {script} --asr vosk", USAGE, "--asr vosk needs --asr-model DIR"),
    ("simulate {flow} --caller {script} --asr whisper", USAGE, "--asr whisper: no such ASR backend"),
    ("simulate {flow} --caller {script} --voice-pack {bad}/missing", USAGE, "--voice-pack"),
    ("simulate {flow} --caller {script} --var customer_nme=Bob", USAGE, "did you mean customer_name?"),
    ("demo --text --caller {bad}/missing.yaml", USAGE, "missing.yaml: no such file"),
    ("demo --text --caller {bad}/garbage.wav", USAGE, "chat is text only"),
    ("demo --text --rate 16000", USAGE, "--rate applies to the voice demo only"),
    ("demo --caller {bad}/garbage.wav", USAGE, "not a WAV file"),
    ("serve --config {bad}/missing.yaml", USAGE, "missing.yaml: no such config file"),
    ("serve --config {bad}/empty.yaml", USAGE, "the config file is empty"),
    ("serve --config {bad}/binary.yaml", USAGE, "a binary file, not a config file"),
    ("serve --config {bad}/adir", USAGE, "a directory, not a config file"),
    ("call 7000 --caller {script} --flow {flow}", USAGE, "--flow does not apply with --caller"),
    ("call 7000 --caller {bad}/garbage.wav", USAGE, "not a WAV file"),
    ("call 7000 --caller {bad}/missing.yaml", USAGE, "no such file"),
    ("call user/1001 --var patient_nme=Bob", USAGE, "no variable 'patient_nme'"),
    ("call user/1001 --config {bad}/binary.yaml", USAGE, "a binary file"),
    ("calls --db {bad}/missing.sqlite", USAGE, "no records database there"),
    ("calls --db {bad}/adir", USAGE, "a directory, not a records database"),
    ("calls --db {bad}/binary.yaml", USAGE, "binary.yaml"),
    ("calls --db {bad}/calls.sqlite --since yesterday", USAGE, "yesterday"),
    ("calls --db {bad}/calls.sqlite show 1234abcd", USAGE, "no call '1234abcd'; list the calls with `voicebot calls`"),
    ("voice script {bad}/missing.yaml", USAGE, "missing.yaml"),
    ("voice script {bad}/binary.yaml", USAGE, "binary.yaml"),
    ("voice import {bad}/adir {bad}/missing", USAGE, "voice pack directory not found"),
    ("voice check {bad}/missing", USAGE, "voice pack directory not found"),
    ("voice check {bad}/adir", USAGE, "voice.yaml"),
    ("voice say {bad}/missing hello -o {bad}/out.wav", USAGE, "voice pack directory not found"),
    ("voice train {bad}/missing", USAGE, "voice pack directory not found"),
    ("voice train {bad}/adir", USAGE, "voice.yaml: missing"),
    ("voice say hello there now -o {bad}/out.wav", USAGE, "quote the text"),
    ("voice say hi,{{{{name}}}} -o {bad}/out.wav --var nme=Bob", USAGE, "did you mean name?"),
    *[(f"campaign {argv}", status, words) for argv, status, words in [
        ("", USAGE, "campaign: no action given"),
        ("create {bad}/missing.yaml --db {bad}/new.sqlite", USAGE, "missing.yaml: no such file"),
        ("create {bad}/empty.yaml --db {bad}/new.sqlite", USAGE, "the campaign file is empty"),
        ("create {bad}/binary.yaml --db {bad}/new.sqlite", USAGE, "a binary file, not a campaign file"),
        ("create {bad}/adir --db {bad}/new.sqlite", USAGE, "a directory, not a campaign file"),
        ("create {bad}/campaign_bad.yaml --db {bad}/new.sqlite", USAGE, "2 problem(s) in the campaign file"),
        ("create {campaign} --db {bad}/campaigns.sqlite --name a/b", USAGE, "--name a/b: not a campaign id"),
        ("create {campaign} --db {bad}/campaigns.sqlite --name c1", USAGE, "campaign c1: exists already"),
        ("validate {bad}/missing.yaml", FAILED, "missing.yaml: no such file"),
        ("validate {bad}/campaign_bad.yaml", FAILED, "unknown key 'max_atempts' (hint: did you mean 'max_attempts'?)"),
        ("import c1 {bad}/leads.csv --db {bad}/missing.sqlite", USAGE, "no campaign database there"),
        ("import c9 {bad}/leads.csv --db {bad}/campaigns.sqlite", USAGE, "campaign c9: no such campaign"),
        ("import c1 {bad}/missing.csv --db {bad}/campaigns.sqlite", USAGE, "missing.csv: no such file"),
        ("import c1 {bad}/notes.txt --db {bad}/campaigns.sqlite", USAGE, "no column 'phone'"),
        ("import c1 {bad}/binary.yaml --db {bad}/campaigns.sqlite", USAGE, "not UTF-8 text"),
        ("import c1 {bad}/garbage.xlsx --db {bad}/campaigns.sqlite", USAGE, "not a readable XLSX workbook"),
        ("import c1 {bad}/leads.csv --db {bad}/campaigns.sqlite --var oops", USAGE, "--var oops: expects COLUMN=NAME"),
        ("import c1 {bad}/leads.csv --db {bad}/campaigns.sqlite --var name=custmer_name", USAGE,
         "did you mean customer_name?"),
        ("import c1 {bad}/leads_bad.csv --db {bad}/campaigns.sqlite", FAILED, "1 bad row(s) of 2, nothing imported"),
        ("import-dnc {bad}/missing.csv --db {bad}/campaigns.sqlite", USAGE, "missing.csv: no such file"),
        ("import-dnc {bad}/leads.csv --db {bad}/campaigns.sqlite --column nope", USAGE, "no column 'nope'"),
        ("import-dnc {bad}/leads.csv --db {bad}/campaigns.sqlite --campaign c9", USAGE, "campaign c9: no such campaign"),
        ("start c9 --db {bad}/campaigns.sqlite", USAGE, "campaign c9: no such campaign"),
        ("pause c1 --db {bad}/adir", USAGE, "a directory, not a campaign database"),
        ("resume c1 --db {bad}/notes.txt", USAGE, "file is not a database"),
        ("stop c1 --db mysql://127.0.0.1/x", USAGE, "unknown campaign database"),
        ("status c1 --db postgresql://u:secret@127.0.0.1:1/x", USAGE, "check --db"),
        ("status c1 --config {bad}/missing.yaml", USAGE, "missing.yaml: no such file"),
        ("status c1 --config {bad}/binary.yaml", USAGE, "a binary file, not a config file"),
        ("status c1 --db {bad}/campaigns.sqlite --watch -1", USAGE, "--watch -1: the interval must be more than 0"),
        ("report c1 --db {bad}/campaigns.sqlite --day 2026-13-01", USAGE, "--day 2026-13-01: not a date"),
        ("report c1 --db {bad}/campaigns.sqlite --png {bad}/notes.txt", USAGE, "a file, not a folder"),
        ("export c1 --db {bad}/campaigns.sqlite --out {bad}/adir", USAGE, "--out {bad}/adir: a directory"),
        ("export c1 --db {bad}/campaigns.sqlite --out {bad}/nofolder/x.csv", USAGE, "no folder"),
        ("list --db {bad}/missing.sqlite", USAGE, "no campaign database there"),
    ]],
]


@pytest.mark.parametrize(("command", "status", "words"), CASES, ids=[c[0].split(" {")[0] + f"-{i}" for i, c in enumerate(CASES)])
def test_bad_input_gives_one_line_and_the_documented_status(command: str, status: int, words: str, bad: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    argv = command.format(bad=bad, flow=FLOW, script=SCRIPT, campaign=CAMPAIGN).split()
    assert main(argv) == status
    err = capsys.readouterr().err
    assert words.format(bad=bad) in err, err
    assert "secret" not in err, err
    assert "Traceback" not in err and "unexpected error" not in err, err


def _run(*argv: str, timeout: float = 60, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "voicebot.cli", *argv], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env, **kwargs)  # type: ignore[call-overload,no-any-return]


@pytest.mark.parametrize("key", ["outbound", "http"])
def test_serve_on_a_taken_port_names_the_port_and_its_key(key: str, listening: int, tmp_path: Path) -> None:
    config = tmp_path / "voicebot.yaml"
    other = "outbound: {port: 0}" if key == "http" else "http: {port: 0}"
    config.write_text(f"{key}: {{host: 127.0.0.1, port: {listening}}}\n{other}\nflows: {{default: {FLOW}}}\n")
    result = _run("serve", "--config", str(config))
    assert result.returncode == PORT_IN_USE, result.stderr
    assert f"127.0.0.1:{listening} ({key}.port) is already in use" in result.stderr
    assert f"set another {key}.port in the config" in result.stderr and "Traceback" not in result.stderr


def test_call_to_an_unreachable_switch_exits_3_with_and_without_a_caller(closed_port: int, bad: Path,
                                                                         tmp_path: Path) -> None:
    config = tmp_path / "voicebot.yaml"
    config.write_text(f"freeswitch: {{host: 127.0.0.1, port: {closed_port}, password: pw}}\nflows: {{default: {FLOW}}}\n"
                      "media: {ports: 43820-43839}\n")
    wav = tmp_path / "caller.wav"  # a recording: no text to synthesize before the call
    write_wav(wav, [0.1, -0.1] * 400, 8000)
    for extra in ([], ["--caller", str(wav), "--out", str(tmp_path / "out")]):
        result = _run("call", "7000" if extra else "user/1001", "--config", str(config), *extra)
        assert result.returncode == UNREACHABLE, (extra, result.stderr)
        assert f"FreeSWITCH is not reachable at 127.0.0.1:{closed_port}" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_closed_stdout_ends_chat_quietly() -> None:
    """`voicebot chat ... | head`: the reader is gone before the first line; no BrokenPipeError, exit 141."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "voicebot.cli", "chat", str(FLOW), "--script", str(SCRIPT)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `head` does once it has its lines
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == BROKEN_PIPE, err
    assert "BrokenPipeError" not in err and "Traceback" not in err, err


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def broken(_: object) -> int:
        raise RuntimeError("boom\nsecond line of detail")

    monkeypatch.setattr("voicebot.cli.cmd_validate", broken)
    assert main(["validate", str(FLOW)]) == INTERNAL
    err = capsys.readouterr().err
    assert err == "voicebot: unexpected error: RuntimeError: boom; run with --debug for the traceback (and report it)\n"
    for argv in (["--debug", "validate", str(FLOW)], ["validate", str(FLOW), "--debug"]):
        with pytest.raises(RuntimeError, match="boom"):
            main(argv)


def test_the_engine_turns_a_taken_port_into_port_in_use(listening: int) -> None:
    """What `serve` checks first can still race: the engine's own bind names the config key too."""
    import gevent.server

    from voicebot.cli_errors import PortInUse
    from voicebot.engine import _bind

    server = gevent.server.StreamServer(("127.0.0.1", listening), lambda sock, addr: None)
    with pytest.raises(PortInUse, match=rf"127.0.0.1:{listening} \(outbound.port\) is already in use"):
        _bind(server.start, "outbound.port", "127.0.0.1", listening)
    server.close()
