"""Checks `chaosforge proxy` with the real toxiproxy-python client (PyPI `toxiproxy-python`).

Every check drives the API through the client and then measures the fault from a plain socket
client, so a server that only echoes JSON back would fail. Run by scripts/compat-toxiproxy.
"""

import socket
import sys
import threading
import time

from toxiproxy import Toxiproxy
from toxiproxy.exceptions import InvalidToxic, NotFound, ProxyExists

FAILURES = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + (f" ({detail})" if detail else ""))
    if not ok:
        FAILURES.append(name)


def echo_server():
    """An upstream on 127.0.0.1:0 that echoes everything back."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)

    def serve(conn):
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                conn.sendall(data)

    def accept():
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return "127.0.0.1:%d" % srv.getsockname()[1]


def addr(listen):
    host, port = listen.rsplit(":", 1)
    return (host.strip("[]"), int(port))


def connect(listen):
    s = socket.create_connection(addr(listen), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def rtt(sock, payload=b"ping"):
    start = time.monotonic()
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError("closed")
        got += chunk
    assert got == payload, got
    return time.monotonic() - start


def refused(listen):
    try:
        socket.create_connection(addr(listen), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


def main():
    server = Toxiproxy()
    server.update_api_consumer("127.0.0.1", 8474)
    check("server running", server.running())
    check("version", b"2.12.0" in server.version(), server.version())
    server.destroy_all()
    upstream = echo_server()

    proxy = server.create(upstream=upstream, name="py_echo", listen="127.0.0.1:0")
    check("listen rewritten to the bound port", not proxy.listen.endswith(":0"), proxy.listen)
    check("listed", "py_echo" in server.proxies())
    try:
        server.create(upstream=upstream, name="py_echo")
        check("duplicate refused", False)
    except ProxyExists:
        check("duplicate refused", True)

    with connect(proxy.listen) as s:
        base = min(rtt(s) for _ in range(5))
        check("forwards bytes", base < 0.1, f"{base * 1000:.1f} ms")

        proxy.add_toxic(type="latency", attributes={"latency": 200})
        toxics = proxy.toxics()
        t = toxics.get("latency_downstream")
        check("toxic defaults (name, stream, toxicity)",
              t is not None and t.stream == "downstream" and t.toxicity == 1
              and t.attributes == {"latency": 200, "jitter": 0},
              str(t and vars(t)))
        slow = rtt(s)
        check("latency applies to an open connection", 0.19 <= slow < 0.5, f"{slow * 1000:.0f} ms")
        proxy.destroy_toxic("latency_downstream")
        fast = rtt(s)
        check("removing latency restores speed", fast < 0.1, f"{fast * 1000:.0f} ms")

    proxy.add_toxic(type="latency", stream="upstream", name="up", attributes={"latency": 100})
    with connect(proxy.listen) as s:
        slow = rtt(s)
        check("upstream latency from a new connection", 0.09 <= slow < 0.4, f"{slow * 1000:.0f} ms")
    proxy.destroy_toxic("up")

    try:
        proxy.add_toxic(type="bandwidth", attributes={"rate": -1})
        check("invalid attribute refused with 400", False)
    except InvalidToxic as e:
        check("invalid attribute refused with 400", b"rate" in e.args[0], e.args[0])
    try:
        proxy.add_toxic(type="nonsense")
        check("unknown type refused", False)
    except InvalidToxic:
        check("unknown type refused", True)
    check("server alive after invalid toxics", server.running() and "py_echo" in server.proxies())

    listen = proxy.listen
    with proxy.down():
        check("down refuses connections", refused(listen))
        check("down shows enabled=false", server.get_proxy("py_echo").enabled is False)
    with connect(listen) as s:
        check("up again on the same port", rtt(s) < 0.1)

    # timeout 0: data is swallowed, the connection stays open; removing the toxic closes it.
    proxy.add_toxic(type="timeout", name="t0", attributes={"timeout": 0})
    with connect(listen) as s:
        s.sendall(b"hello")
        s.settimeout(0.3)
        try:
            s.recv(10)
            check("timeout swallows data", False)
        except socket.timeout:
            check("timeout swallows data", True)
        s.settimeout(3)
        proxy.destroy_toxic("t0")
        try:
            check("removing timeout closes its connections", s.recv(10) == b"")
        except OSError as e:
            check("removing timeout closes its connections", False, repr(e))

    # reset_peer: the client sees ECONNRESET.
    proxy.add_toxic(type="reset_peer", stream="upstream", name="rst", attributes={"timeout": 0})
    with connect(listen) as s:
        s.sendall(b"x")
        s.settimeout(3)
        try:
            s.recv(10)
            check("reset_peer resets", False, "no reset")
        except ConnectionResetError:
            check("reset_peer resets", True)
    proxy.destroy_toxic("rst")

    # limit_data: 10 bytes of replies, then the connection closes.
    proxy.add_toxic(type="limit_data", name="lim", attributes={"bytes": 10})
    with connect(listen) as s:
        s.settimeout(3)
        s.sendall(b"1234567")
        got = s.recv(100)
        s.sendall(b"abcdefghi")
        rest = b""
        try:
            while True:
                c = s.recv(100)
                if not c:
                    break
                rest += c
        except OSError:
            pass
        check("limit_data forwards 10 bytes then closes", got + rest == b"1234567abc",
              repr(got + rest))
    proxy.destroy_toxic("lim")

    # reset: re-enables disabled proxies and removes every toxic.
    proxy.add_toxic(type="latency", attributes={"latency": 300})
    proxy.disable()
    server.reset()
    again = server.get_proxy("py_echo")
    check("reset re-enables", again.enabled is True)
    check("reset removes toxics", again.toxics() == {})
    with connect(listen) as s:
        check("reset: no latency left", rtt(s) < 0.1)

    # populate through the client (it creates what is missing).
    made = server.populate([{"name": "py_pop", "upstream": upstream, "listen": "127.0.0.1:0"}])
    check("populate creates", len(made) == 1 and server.get_proxy("py_pop") is not None)

    proxy.destroy()
    check("destroyed", server.get_proxy("py_echo") is None)
    check("destroyed proxy refuses", refused(listen))
    try:
        proxy.destroy_toxic("nope")
        check("404 after destroy", False)
    except NotFound:
        check("404 after destroy", True)
    server.destroy_all()
    check("all destroyed", server.proxies() == {})

    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed: {', '.join(FAILURES)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
