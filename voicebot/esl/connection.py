"""ESL over gevent: the inbound connection (supervised, reconnecting) and the outbound socket server.

Layout: :mod:`voicebot.esl.commands` (errors, the command plumbing and the ESL
socket both ends share), :mod:`voicebot.esl.inbound` (the inbound connection),
:mod:`voicebot.esl.outbound` (outbound calls and their server). This module holds
the rules they keep and re-exports their public names.

Rules
1. Every command has a timeout (``command_timeout_s``, or the call's ``timeout``):
   :class:`EslTimeout` after it, :class:`EslDown` at once when there is no
   connection, :class:`EslError` with FreeSWITCH's ``-ERR`` text when it refuses.
   Nothing here waits without a bound.
2. Replies are matched to commands in the order sent (FreeSWITCH serves one
   connection in order). A command that times out keeps its place, so its late
   reply is dropped instead of answering the next command. If the oldest
   command times out and nothing at all arrived meanwhile, the peer is taken
   for dead and that connection is closed.
3. Bytes that are not ESL (:class:`EslProtocolError`) close that one connection
   (``esl.protocol_error``): the inbound connection reconnects; an outbound call
   ends (FreeSWITCH hangs a call up when its socket closes). Nothing reaches
   other calls or the server.
4. The inbound connection is supervised: connect, auth, subscribe, read; on any
   failure, reconnect after :func:`backoff_delay` (0.25 s doubling to 1.5 s,
   jitter: calls sent while it waits are lost, so it never waits long). While
   FreeSWITCH is down the engine runs on; the first failed attempt of an outage
   logs ``esl.inbound_unreachable`` with a hint of what to check (host/port,
   password, ACL), later ones ``esl.inbound_down``; :meth:`InboundConnection.state`
   counts every attempt and every successful connect.
5. Events: each ``on_event`` subscriber has its own queue and greenlet, so it sees
   events in order and a slow one delays nobody else (a greenlet per event would
   lose the order). Waiters (``expect_event``) are registered before the command
   that causes the event, so a fast event is never missed.
6. The outbound server accepts at once (gevent StreamServer: the listening socket
   is watched by the event loop, no polling) and runs each call's handler in its
   own greenlet; an exception is logged with the call's uuid and the call is hung up.
7. ``unicast`` is refused (:class:`UnicastBeforeAnswer`, nothing is sent) unless
   the channel is answered: CHANNEL_ANSWER seen (or the connect data says
   answered) and no ``answer`` of ours still running (its EXECUTE_COMPLETE not
   seen yet). Unicast before answer crashes FreeSWITCH (docs/freeswitch.md).
   The check runs after the send lock is taken, right before the bytes go out.
8. Logs name commands by their verb (``api originate``), never their arguments:
   dial strings carry phone numbers.

greenswitch is not used (docs/decisions.md, entry 1: an unbounded ``send()``, a reader that dies on
non-UTF-8 bytes, serialized handlers, a polling accept loop). Both ends use :mod:`voicebot.esl.protocol`
(bounded, byte-exact against the captures in tests/fixtures/esl) over gevent sockets, with FreeSWITCH's own
command names.
"""

from __future__ import annotations

from voicebot.esl.commands import (
    CallGone,
    EslDown,
    EslError,
    EslFailure,
    EslTimeout,
    EventWaiter,
    UnicastBeforeAnswer,
)
from voicebot.esl.inbound import DEFAULT_EVENTS, ConnectionState, InboundConnection, Subscription, backoff_delay
from voicebot.esl.outbound import CALL_EVENTS, ChannelData, OutboundCall, OutboundServer

__all__ = ["CALL_EVENTS", "DEFAULT_EVENTS", "CallGone", "ChannelData", "ConnectionState", "EslDown", "EslError",
           "EslFailure", "EslTimeout", "EventWaiter", "InboundConnection", "OutboundCall", "OutboundServer",
           "Subscription", "UnicastBeforeAnswer", "backoff_delay"]
