"""Makes a flow's ``notify:`` real: each notification becomes outbox messages (SMS, webhooks), sent by the sender.

A node's notification is written when the dialog emits it: :meth:`Notifier.watch` wraps the call's timeline
listener and sees the ``command`` entry of each ``Notify``. The flow's ``on_hangup`` notifications are written
with the call's outcome when its record is: :meth:`Notifier.call_ended` (which also writes, idempotently, the
node notifications the call emitted, in case one was missed). Neither blocks the call: messages go to a
queue that the notifier's writer thread puts in the outbox, then the sender's thread posts them.

Templates (``{{name}}``) see the call's variables and captured slots, then ``call_id``, ``caller``,
``callee``, ``flow_id``, ``notification``, ``level``, ``tags`` (comma separated), ``disposition``,
``hangup_cause`` and ``duration_s`` (the last three at hang-up only). A webhook's body::

    {"id", "notification", "call_id", "flow_id", "caller", "callee", "at" (unix s), "variables", "outcome"}

with ``outcome`` the outcome so far (path, tags, level, slots, disposition...; the record's at hang-up).
An SMS body: ``{"id", "to", "text", "notification", "call_id"}``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from voicebot.dialog.machine import render_template
from voicebot.logs import get_logger
from voicebot.notify.outbox import Message, Outbox, message_id
from voicebot.notify.sender import Sender
from voicebot.notify.settings import SMS_ENDPOINT, NotificationsConfig
from voicebot.records.model import CallRecord

__all__ = ["HANGUP", "NODE", "CallInfo", "Notifier", "build_messages", "open_notifier"]

NODE, HANGUP = "node", "hangup"  # the scopes of message ids: a name may be both a node's and on_hangup's


def _log() -> Any:
    return get_logger("notify")


class _Session(Protocol):
    """What :meth:`Notifier.watch` needs of a call session (attributes or read-only properties)."""

    @property
    def timeline(self) -> Any: ...  # voicebot.timeline.Timeline

    @property
    def machine(self) -> Any: ...  # voicebot.dialog.machine.DialogMachine


@dataclass(frozen=True)
class CallInfo:
    """Who the call is with: ``call_id`` (the channel UUID), ``caller``, ``callee``, ``flow_id``."""

    call_id: str
    caller: str = ""
    callee: str = ""
    flow_id: str = ""


class Notifier:
    """Turns notifications into outbox messages off the call's path; owns the writer thread and the sender."""

    def __init__(self, config: NotificationsConfig, outbox: Outbox, *, clock: Callable[[], float] = time.time,
                 retry_write_s: float = 1.0) -> None:
        self.config, self.outbox, self.clock = config, outbox, clock
        self.sender = Sender(outbox, config.endpoints(), config.retry, clock)
        self.retry_write_s = retry_write_s
        self.written = 0  # messages newly written to the outbox
        self._queue: queue.SimpleQueue[list[Message] | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="outbox-writer", daemon=True)
        self._idle = threading.Condition()
        self._unwritten = 0
        self._warned: set[str] = set()

    def start(self) -> Notifier:
        """Start the writer and the sender (messages left by an earlier run go out now); returns self."""
        self._writer.start()
        self.sender.start()
        return self

    # ------------------------------------------------------------ the call's side (never blocks)

    def watch(self, session: _Session, call: CallInfo) -> None:
        """Write the node notifications of ``session`` as the dialog emits them (chains the timeline listener)."""
        earlier = session.timeline.listener
        ended_names = set(session.machine.flow.hangup_notify)

        def listener(entry: dict[str, Any]) -> None:
            if earlier is not None:
                earlier(entry)
            if entry.get("kind") == "command" and entry.get("command") == "Notify":
                name = str(entry.get("name", ""))
                if name in ended_names and session.machine.ended:
                    return  # on_hangup's: written with the record, by call_ended
                outcome = session.machine.outcome
                self.submit(self.messages(call, name, NODE, outcome.variables, outcome.slots, outcome.summary()))

        session.timeline.listener = listener

    def call_ended(self, record: CallRecord, hangup_names: Sequence[str], emitted: Sequence[str] = ()) -> None:
        """The call's record is written: its ``on_hangup`` notifications, and again (idempotent) its node ones."""
        call = CallInfo(record.call_id, record.caller, record.callee, record.flow_id)
        outcome = {k: v for k, v in record.to_dict().items() if k not in ("transcript", "latency", "recording_path")}
        extra = {"disposition": record.disposition, "hangup_cause": record.hangup_cause,
                 "duration_s": f"{record.duration_s:g}"}
        node_names = list(emitted)
        tail = len(hangup_names)
        if tail and node_names[-tail:] == list(hangup_names):  # the dialog appends on_hangup's names last
            node_names = node_names[:-tail]
        messages = [m for name in dict.fromkeys(node_names)
                    for m in self.messages(call, name, NODE, record.variables, record.slots, outcome)]
        messages += [m for name in dict.fromkeys(hangup_names)
                     for m in self.messages(call, name, HANGUP, record.variables, record.slots, outcome, extra)]
        self.submit(messages)

    def submit(self, messages: list[Message]) -> None:
        """Hand messages to the writer thread (never blocks)."""
        if messages:
            with self._idle:
                self._unwritten += 1
            self._queue.put_nowait(messages)

    # ------------------------------------------------------------ rendering

    def messages(self, call: CallInfo, name: str, scope: str, variables: Mapping[str, str], slots: Mapping[str, str],
                 outcome: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> list[Message]:
        """The messages notification ``name`` of ``call`` makes under this configuration (none: unconfigured)."""
        if name not in self.config.sms and name not in self.config.webhook and name not in self._warned:
            self._warned.add(name)
            _log().warning("notify.unconfigured", notification=name)
        return build_messages(self.config, call, name, scope, variables=variables, slots=slots, outcome=outcome,
                              extra=extra or {}, now=self.clock())

    # ------------------------------------------------------------ the writer thread

    def _write_loop(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                return
            self._write(batch)
            with self._idle:
                self._unwritten -= 1
                self._idle.notify_all()

    def _write(self, batch: list[Message]) -> None:
        """Write one batch, retrying while the database is away (the batch is kept in memory meanwhile)."""
        while True:
            try:
                self.written += self.outbox.enqueue(batch)
                self.sender.wake()
                return
            except Exception as exc:
                _log().warning("outbox.write_failed", error=type(exc).__name__, detail=str(exc)[:200], messages=len(batch))
                time.sleep(self.retry_write_s)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every submitted message is in the outbox; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._unwritten == 0, timeout)

    def close(self, timeout: float = 2.0) -> None:
        """Write what was submitted (up to ``timeout`` s), stop the sender, close the outbox."""
        if not self.flush(timeout):
            _log().error("outbox.unwritten", batches=self._unwritten)  # the database stayed away: these are lost
        self._queue.put_nowait(None)
        self._writer.join(timeout)
        self.sender.close(timeout)
        if not self._writer.is_alive():
            self.outbox.close()


def build_messages(config: NotificationsConfig, call: CallInfo, name: str, scope: str = NODE, *,
                   variables: Mapping[str, str], slots: Mapping[str, str] | None = None,
                   outcome: Mapping[str, Any] | None = None, extra: Mapping[str, str] | None = None,
                   now: float) -> list[Message]:
    """The outbox messages notification ``name`` of ``call`` makes under ``config`` (``now``: epoch s).

    For writers outside a call too (the campaign store writes an attempt's messages in its own transaction with
    :func:`voicebot.notify.outbox.enqueue`). ``scope``: NODE or HANGUP (part of each message's id).
    """
    outcome, slots = outcome or {}, slots or {}
    values = _values(call, name, variables, slots, outcome, extra or {})
    out: list[Message] = []
    sms = config.sms.get(name)
    if sms is not None:
        to, text = render_template(sms.to, values).strip(), render_template(sms.text, values)
        mid = message_id(call.call_id, name, SMS_ENDPOINT, scope)
        if to:
            payload: dict[str, Any] = {"id": mid, "to": to, "text": text, "notification": name, "call_id": call.call_id}
            out.append(Message(mid, "sms", SMS_ENDPOINT, to, payload, now))
        else:
            _log().warning("notify.no_recipient", notification=name, call=call.call_id)
    for hook in config.webhook.get(name, ()):
        endpoint = f"webhook:{hook}"
        mid = message_id(call.call_id, name, endpoint, scope)
        payload = {"id": mid, "notification": name, "call_id": call.call_id, "flow_id": call.flow_id,
                   "caller": call.caller, "callee": call.callee, "at": now, "variables": dict(variables),
                   "outcome": dict(outcome)}
        out.append(Message(mid, "webhook", endpoint, config.webhooks[hook].url, payload, now))
    return out


def _values(call: CallInfo, name: str, variables: Mapping[str, str], slots: Mapping[str, str],
            outcome: Mapping[str, Any], extra: Mapping[str, str]) -> dict[str, str]:
    """What templates can name (see the module docstring)."""
    tags = outcome.get("tags") or ()
    return {
        **{str(k): str(v) for k, v in variables.items()}, **{str(k): str(v) for k, v in slots.items()},
        "call_id": call.call_id, "caller": call.caller, "callee": call.callee, "flow_id": call.flow_id,
        "notification": name, "level": str(outcome.get("level", "")),
        "tags": ", ".join(str(t) for t in _iterable(tags)), **extra,
    }


def _iterable(value: Any) -> Iterable[Any]:
    return value if isinstance(value, list | tuple) else ()


def open_notifier(config: NotificationsConfig, records_db: str) -> Notifier | None:
    """A started notifier when anything is configured (the outbox in ``config.db``, else ``records_db``)."""
    if not config.configured:
        return None
    return Notifier(config, Outbox(config.db or records_db)).start()
