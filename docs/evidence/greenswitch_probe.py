"""greenswitch 0.0.19 probe behind docs/decisions.md entry 1 (not part of the package, not run by the tests).

Run: pip install greenswitch==0.0.19 && python docs/evidence/greenswitch_probe.py
Asks: does send() time out? does the reader survive non-UTF-8 bytes? how long does the outbound server take to
serve a new connection? are handlers serialized? what does it log at hang-up?
"""
import logging, socket, statistics, sys, threading, time
import gevent, gevent.socket
from greenswitch import esl

AUTH = b"Content-Type: auth/request\n\n"
OK = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"

def fake_fs(script):
    """A raw TCP 'FreeSWITCH' in a real thread: sends auth/request, answers auth, then runs script(conn)."""
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
    def run():
        conn, _ = srv.accept(); conn.sendall(AUTH)
        conn.recv(4096); conn.sendall(OK); script(conn); time.sleep(5)
    threading.Thread(target=run, daemon=True).start()
    return srv.getsockname()[1]

def bounded(fn, seconds):
    try:
        with gevent.Timeout(seconds):
            return ("returned", fn())
    except gevent.Timeout:
        return ("still blocked after %.1f s" % seconds, None)
    except Exception as e:
        return ("raised %r" % e, None)

# 1. send() with no reply: does it time out?
port = fake_fs(lambda c: c.recv(4096))  # reads the command, never replies
cli = esl.InboundESL("127.0.0.1", port, "x", timeout=1); cli.connect()
print("1 send() with no reply:", bounded(lambda: cli.send("api status"), 3.0)[0])

# 2. a non-UTF-8 byte in an event body (e.g. a Latin-1 caller name), then a command
def latin1(c):
    body = b"Event-Name: CHANNEL_DATA\nCaller-Caller-ID-Name: Jos\xe9\n\n"
    c.sendall(b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body)
    c.recv(4096); c.sendall(b"Content-Type: api/response\nContent-Length: 3\n\nUP\n")
port = fake_fs(latin1)
cli = esl.InboundESL("127.0.0.1", port, "x", timeout=1); cli.connect()
gevent.sleep(0.2)
print("2 after a non-UTF-8 event: reader alive:", not cli._receive_events_greenlet.dead, "connected:", cli.connected,
      "| next send():", bounded(lambda: cli.send("api status"), 3.0)[0])

# 3. OutboundESLServer: delay from FreeSWITCH's TCP connect to the server's 'connect' command
class App:
    def __init__(self, session): self.session = session
    def run(self): gevent.sleep(0.05)
server = esl.OutboundESLServer("127.0.0.1", 0, application=App)
def bind_any():
    # bind_port=0 is falsy in its port loop; give it a free port instead
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
server.bind_port = [bind_any()]
gevent.spawn(server.listen); gevent.sleep(0.2)
delays = []
def freeswitch_side():
    for _ in range(20):
        time.sleep(0.137)
        t0 = time.monotonic()
        s = socket.create_connection(("127.0.0.1", server.bound_port))
        s.recv(4096)  # "connect\n\n"
        delays.append(time.monotonic() - t0)
        s.sendall(b"Content-Type: command/reply\nReply-Text: %2BOK%0A\nCaller-Caller-ID-Number: 15551234567\n\n")
        s.close()
t = threading.Thread(target=freeswitch_side, daemon=True); t.start()
while t.is_alive(): gevent.sleep(0.01)
print("3 outbound accept->connect delay ms: median %.0f, max %.0f (n=%d)" % (
    statistics.median(delays) * 1e3, max(delays) * 1e3, len(delays)))
server.stop()

# 4. handlers: serialized per connection? (one slow handler delays the next event)
def two_events(c):
    for n in (1, 2):
        body = b"Event-Name: CUSTOM_%d\n\n" % n
        c.sendall(b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(body) + body)
port = fake_fs(two_events)
cli = esl.InboundESL("127.0.0.1", port, "x", timeout=1)
seen = []
cli.register_handle("CUSTOM_1", lambda e: (gevent.sleep(0.5), seen.append(("1", time.monotonic()))))
cli.register_handle("CUSTOM_2", lambda e: seen.append(("2", time.monotonic())))
cli.connect(); gevent.sleep(1.0)
print("4 second event handled %.0f ms after the first handler started (first handler sleeps 500 ms)" % (
    (seen[1][1] - seen[0][1] + 0.5) * 1e3) if len(seen) == 2 else seen)

# 5. PII: what it logs at hangup
records = []
class H(logging.Handler):
    def emit(self, r): records.append(r.getMessage())
logging.getLogger().addHandler(H()); logging.getLogger().setLevel(logging.INFO)
sess = esl.OutboundSession(("127.0.0.1", 1), socket.socketpair()[0])
sess.session_data = {"Caller-Caller-ID-Number": "15551234567"}
sess.on_hangup(None)
print("5 INFO log at hangup:", records[-1])
