"""WebSockets over HTTP/2 (RFC 8441 extended CONNECT, SPEC §5.4) on their
failure paths: a client that stops reading (flow control pauses the
upstream), resets or ends its stream, sends before the 200; an upstream that
floods, closes abruptly (RST_STREAM CANCEL, RFC 8441 §5) or never answers;
malformed extended CONNECTs; a graceful stop with WebSockets open (the
worker closes them with 1001); an upstream reset behind the built-in tunnel
(worker -> tunnel -> local server), told to the worker's client. Raw frames, as test_h2_websocket.py."""
import ctypes
import ctypes.util
import fcntl
import json
import signal
import socket
import struct
import termios
import threading
import time

import pytest

import lk
from test_h2_websocket import (DATA, END_HEADERS, END_STREAM, GOAWAY, H2, HEADERS, HOST, NAME,
                               RST, assert_echo_stream, connect_fields, frame, hpack)

FLOOD_FRAME = 64 * 1024
CANCEL = 0x8  # RFC 9113 §7


class WsScript:
    """A WebSocket upstream on 127.0.0.2:0 whose behaviour depends on the
    request path (one thread per connection):
    /flood   101, then 64 KiB binary frames until a send blocks for 3 s
             (self.blocked set, self.sent counts), then a text frame "end"
             once self.resume is set, then close;
    /abort   101, a text frame "last words", then a reset (SO_LINGER 0);
    /bigabort 101, 48 binary frames of 64 KiB, then a reset once the peer's
             kernel has taken them all (the send queue is empty);
    /silent  reads the head and never answers (reads until EOF);
    /reject  403 "no websocket here"; /ok200  200 "not a websocket";
    /cl101   101 with Content-Length: 0 and X-Up: yes, then echoes;
    /burst   101, 32 binary frames of 64 KiB and a text frame "end", then
             a close (self.closed set);
    /echo    101 (with the request's sec-websocket-extensions echoed), then
             echoes every byte it receives, the head's leftovers first;
             records them in self.got."""

    def __init__(self, host="127.0.0.2"):
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.sent = 0
        self.blocked = threading.Event()
        self.resume = threading.Event()
        self.stop = threading.Event()
        self.heads = []
        self.got = b""
        self.conns = []
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _switch(self, c, headers, extra=""):
        key = dict((k.lower(), v) for k, v in headers)["sec-websocket-key"]
        c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n"
                   % (lk.ws_accept(key), extra)).encode())

    def _conn(self, c):
        c.settimeout(10)
        try:
            line, headers, rest = lk.read_http_head(c)
            self.heads.append((line, headers))
            path = line.split(" ")[1]
            if path == "/flood":
                self._switch(c, headers)
                c.settimeout(3)
                chunk = lk.ws_frame(2, b"x" * FLOOD_FRAME, mask=False)
                try:
                    while True:
                        c.sendall(chunk)
                        self.sent += len(chunk)
                except socket.timeout:
                    self.blocked.set()
                c.settimeout(10)
                self.resume.wait(30)
                c.sendall(lk.ws_frame(1, b"end", mask=False))
            elif path == "/burst":
                self._switch(c, headers)
                for _ in range(32):
                    c.sendall(lk.ws_frame(2, b"b" * FLOOD_FRAME, mask=False))
                c.sendall(lk.ws_frame(1, b"end", mask=False))
            elif path == "/bigabort":
                self._switch(c, headers)
                for _ in range(48):
                    c.sendall(lk.ws_frame(2, b"a" * FLOOD_FRAME, mask=False))
                outq = struct.pack("i", 0)
                for _ in range(1000):  # 10 s at most: a reset drops what is unsent
                    if struct.unpack("i", fcntl.ioctl(c, termios.TIOCOUTQ, outq))[0] == 0:
                        break
                    time.sleep(0.01)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif path == "/abort":
                self._switch(c, headers)
                c.sendall(lk.ws_frame(1, b"last words", mask=False))
                time.sleep(0.2)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif path in ("/reject", "/ok200"):
                status, body = ((b"403 Forbidden", b"no websocket here") if path == "/reject"
                                else (b"200 OK", b"not a websocket"))
                c.sendall(b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s"
                          % (status, len(body), body))
            elif path == "/silent":
                c.settimeout(30)
                while c.recv(65536):
                    pass
            elif path == "/cl101":
                self._switch(c, headers, "Content-Length: 0\r\nX-Up: yes\r\n")
                while True:
                    b = c.recv(65536)
                    if not b:
                        break
                    c.sendall(b)
            elif path == "/echo":
                ext = dict((k.lower(), v) for k, v in headers).get("sec-websocket-extensions")
                self._switch(c, headers, f"Sec-WebSocket-Extensions: {ext}\r\n" if ext else "")
                self.got += rest
                if rest:
                    c.sendall(rest)
                while True:
                    b = c.recv(65536)
                    if not b:
                        break
                    self.got += b
                    c.sendall(b)
        except (OSError, EOFError, KeyError, IndexError):
            pass
        finally:
            c.close()
            self.closed.set()

    def close(self):
        self.stop.set()
        self.resume.set()
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


@pytest.fixture
def script():
    u = WsScript()
    yield u
    u.close()


def spawn(linkup_bin, env, tmp_path, fake_worker, script, **extra_env):
    env["LINKUP_DNS_ADDR"] = "off"
    env.update(extra_env)
    certs = tmp_path / "certs"
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              "token123", "--https", "127.0.0.1:0", "--certs-dir", str(certs),
                              log_path=str(tmp_path / "server.log"), wanted=("HTTP", "HTTPS"))
    s.ca = str(certs / "linkup_ca.cert.pem")
    body = lk.session_body(NAME, {"frontend": script.url}, [("example.com", "frontend", None)])
    r = lk.post_json(s.addrs["HTTP"], "/linkup/sessions/tunneled", body)
    assert r.status == 200, r.body
    return s


@pytest.fixture
def server(linkup_bin, env, tmp_path, fake_worker, script):
    s = spawn(linkup_bin, env, tmp_path, fake_worker, script, LINKUP_FIRST_BYTE_TIMEOUT_MS="1500")
    yield s
    if s.popen.poll() is None:
        code, _ = lk.stop_gracefully(s)
        assert code == 0, open(s.log_path).read()[-3000:]


class HpackDecoder:
    """The answers' header blocks decoded with libnghttp2's own inflater
    (ctypes): one per connection, fed every block in order."""

    class NV(ctypes.Structure):
        _fields_ = [("name", ctypes.POINTER(ctypes.c_uint8)),
                    ("value", ctypes.POINTER(ctypes.c_uint8)), ("namelen", ctypes.c_size_t),
                    ("valuelen", ctypes.c_size_t), ("flags", ctypes.c_uint8)]

    def __init__(self):
        name = ctypes.util.find_library("nghttp2") or "libnghttp2.so.14"
        self.lib = ctypes.CDLL(name)
        self.lib.nghttp2_hd_inflate_hd2.restype = ctypes.c_ssize_t
        self.lib.nghttp2_hd_inflate_hd2.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(self.NV), ctypes.POINTER(ctypes.c_int),
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        self.inf = ctypes.c_void_p()
        assert self.lib.nghttp2_hd_inflate_new(ctypes.byref(self.inf)) == 0

    def decode(self, block):
        out, nv, fl = [], self.NV(), ctypes.c_int(0)
        buf = ctypes.create_string_buffer(block, len(block))
        off = 0
        while True:
            rv = self.lib.nghttp2_hd_inflate_hd2(self.inf, ctypes.byref(nv), ctypes.byref(fl),
                                                 ctypes.addressof(buf) + off, len(block) - off, 1)
            assert rv >= 0, rv
            off += rv
            if fl.value & 2:  # NGHTTP2_HD_INFLATE_EMIT
                out.append((ctypes.string_at(nv.name, nv.namelen).decode(),
                            ctypes.string_at(nv.value, nv.valuelen).decode()))
            if fl.value & 1:  # NGHTTP2_HD_INFLATE_FINAL
                self.lib.nghttp2_hd_inflate_end_headers(self.inf)
                return out
            assert rv > 0 or fl.value & 2


class H2D(H2):
    """H2 that decodes every header block (END_HEADERS in one frame, no
    padding or priority: what nghttp2 sends): self.fields[sid]."""

    def __init__(self, sock):
        self.hd = HpackDecoder()
        self.fields = {}
        super().__init__(sock)

    def _note(self, ftype, flags, sid, payload):
        if ftype == HEADERS:
            self.fields[sid] = self.hd.decode(payload)
        super()._note(ftype, flags, sid, payload)


def h2c(server):
    return H2(socket.create_connection(server.addrs["HTTP"], timeout=10))


def until_end(c, sid):
    """Frames until stream sid ends (END_STREAM) or is reset; returns "end"
    or "rst"."""
    for _ in range(10000):
        if sid in c.ended:
            return "end"
        ftype, _, got, _ = c.next_frame()
        if ftype == RST and got == sid:
            return "rst"
        if ftype == GOAWAY:
            raise AssertionError("GOAWAY")
    raise AssertionError("stream did not end")


def until_end_code(c, sid):
    """Frames until stream sid ends: ("end", None) for END_STREAM, ("rst",
    error code) for RST_STREAM."""
    for _ in range(10000):
        if sid in c.ended:
            return "end", None
        ftype, _, got, payload = c.next_frame()
        if ftype == RST and got == sid:
            return "rst", int.from_bytes(payload[:4], "big")
        if ftype == GOAWAY:
            raise AssertionError("GOAWAY")
    raise AssertionError("stream did not end")


def still_serves(c, sid):
    assert c.connect(sid, path="/echo")[:1] == b"\x88"
    c.send(sid, lk.ws_frame(1, b"ping?"))
    assert lk.ws_read_frame(c.reader(sid)) == (1, b"ping?")


def test_client_that_stops_reading_pauses_the_upstream(server, script):
    """The client reads nothing (its windows run out): the server must not
    buffer the upstream's flood without bound, the upstream's sends block;
    once the client reads again, every byte arrives, in order."""
    c = h2c(server)
    try:
        assert c.connect(1, path="/flood")[:1] == b"\x88"
        # Not reading the socket at all: no WINDOW_UPDATE goes out.
        assert script.blocked.wait(60), "the upstream never blocked"
        sent = script.sent
        # Windows (256 KiB stream, 16 MiB connection as the client set it),
        # 1 MiB queued on the socket, the kernel's buffers, the engine's.
        assert sent < 48 * lk.MIB, sent
        script.resume.set()
        ws = c.reader(1)
        total = 0
        while True:
            op, payload = lk.ws_read_frame(ws)
            if op == 1:
                assert payload == b"end"
                break
            assert op == 2 and len(payload) == FLOOD_FRAME
            total += len(payload) + 10  # 64-bit length form (RFC 6455 §5.2)
        assert total == script.sent
    finally:
        c.sock.close()


def test_client_reset_mid_message_closes_the_upstream(server, script):
    c = h2c(server)
    try:
        assert c.connect(1, path="/echo")[:1] == b"\x88"
        whole = lk.ws_frame(2, b"y" * 100000)
        c.send(1, whole[:50000])  # half a WebSocket message
        c.sock.sendall(frame(RST, 0, 1, (8).to_bytes(4, "big")))  # CANCEL
        assert script.closed.wait(15), "the upstream connection stayed open"
        still_serves(c, 3)
    finally:
        c.sock.close()


def test_upstream_abort_resets_the_stream_with_cancel(server, script):
    """RFC 8441 §5: an upstream connection reset (TCP RST) is RST_STREAM
    CANCEL, after the bytes that came before it; a clean close is END_STREAM
    (test_upstream_closes_while_the_client_is_not_reading)."""
    c = h2c(server)
    try:
        assert c.connect(1, path="/abort")[:1] == b"\x88"
        assert lk.ws_read_frame(c.reader(1)) == (1, b"last words")
        assert until_end_code(c, 1) == ("rst", CANCEL)
        still_serves(c, 3)
    finally:
        c.sock.close()


def test_upstream_that_never_answers_times_out(server, script):
    """LINKUP_FIRST_BYTE_TIMEOUT_MS=1500: the upgrade is not held forever."""
    c = H2D(socket.create_connection(server.addrs["HTTP"], timeout=10))
    try:
        c.connect(1, path="/silent")
        assert until_end(c, 1) == "end"
        # SPEC §5.4 step 3: a failure without an HTTP answer is a 502.
        assert dict(c.fields[1])[":status"] == "502", c.fields[1]
        still_serves(c, 3)
    finally:
        c.sock.close()


def test_data_before_the_200_reaches_the_upstream(server, script):
    """RFC 8441 §5 has the client wait for the 200, but bytes sent early
    must not be lost nor taken for another request."""
    c = h2c(server)
    try:
        fields = connect_fields("/echo", HOST)
        early = lk.ws_frame(1, b"early bird")
        c.sock.sendall(frame(HEADERS, END_HEADERS, 1, hpack(fields)) + frame(DATA, 0, 1, early))
        assert c.until(HEADERS)[3][:1] == b"\x88"
        assert lk.ws_read_frame(c.reader(1)) == (1, b"early bird")
        c.send(1, lk.ws_frame(1, b"then more"))
        assert lk.ws_read_frame(c.reader(1)) == (1, b"then more")
    finally:
        c.sock.close()


def test_client_end_stream_then_upstream_data(server, script):
    """The client's END_STREAM half-closes its side only: what the upstream
    still sends arrives, and the upstream ending ends the stream."""
    c = h2c(server)
    try:
        assert c.connect(1, path="/echo")[:1] == b"\x88"
        c.send(1, lk.ws_frame(1, b"last from the client"), end=True)
        assert lk.ws_read_frame(c.reader(1)) == (1, b"last from the client")
        still_serves(c, 3)
    finally:
        c.sock.close()


def test_client_key_and_extensions(server, script):
    """A client's own sec-websocket-key is replaced by the front's (RFC 8441
    §5: no key over HTTP/2); sec-websocket-extensions goes through, both
    ways."""
    c = H2D(socket.create_connection(server.addrs["HTTP"], timeout=10))
    try:
        block = c.connect(1, path="/echo", extra=[
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-extensions", "permessage-deflate; client_max_window_bits")])
        assert block[:1] == b"\x88"
        _, headers = script.heads[-1]
        keys = [v for k, v in headers if k.lower() == "sec-websocket-key"]
        assert len(keys) == 1 and keys[0] != "dGhlIHNhbXBsZSBub25jZQ=="
        assert dict((k.lower(), v) for k, v in headers)["sec-websocket-extensions"] == \
            "permessage-deflate; client_max_window_bits"
        assert dict(c.fields[1])["sec-websocket-extensions"] == \
            "permessage-deflate; client_max_window_bits"
    finally:
        c.sock.close()


def test_content_length_on_extended_connect_is_not_a_body(server, script):
    """A content-length on the CONNECT does not turn the first WebSocket
    bytes into a request body (RFC 9110 §9.3.6: CONNECT content has no
    defined semantics)."""
    c = h2c(server)
    try:
        first = lk.ws_frame(1, b"first")
        block = c.connect(1, path="/echo", extra=[("content-length", str(len(first)))])
        assert block[:1] == b"\x88"
        _, headers = script.heads[-1]
        assert "content-length" not in [k.lower() for k, _ in headers]
        c.send(1, first)
        assert lk.ws_read_frame(c.reader(1)) == (1, b"first")
    finally:
        c.sock.close()


@pytest.mark.parametrize("fields", [
    # :protocol on a method other than CONNECT (RFC 8441 §4).
    [(":method", "GET"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/echo"),
     (":authority", HOST)],
    # Extended CONNECT without :path, without :scheme (RFC 8441 §4: required).
    [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
     (":authority", HOST)],
    [(":method", "CONNECT"), (":protocol", "websocket"), (":path", "/echo"),
     (":authority", HOST)],
], ids=["protocol-on-get", "no-path", "no-scheme"])
def test_malformed_extended_connect_is_reset(server, script, fields):
    c = h2c(server)
    try:
        c.sock.sendall(frame(HEADERS, END_HEADERS, 1, hpack(fields)))
        assert until_end(c, 1) == "rst"
        assert not script.heads
        still_serves(c, 3)
    finally:
        c.sock.close()


def test_many_websockets_and_requests_on_one_connection(server, script):
    c = h2c(server)
    try:
        ids = list(range(1, 81, 2))  # 40 WebSockets
        for sid in ids:
            assert c.connect(sid, path="/echo")[:1] == b"\x88"
        for sid in ids:
            c.send(sid, lk.ws_frame(2, sid.to_bytes(2, "big") * 5000))
        for sid in ids:
            assert lk.ws_read_frame(c.reader(sid)) == (2, sid.to_bytes(2, "big") * 5000)
        # Requests in between (the admin API, answered by the engine).
        for sid in range(81, 121, 2):
            c.sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, sid, hpack([
                (":method", "GET"), (":scheme", "http"), (":path", "/linkup/check"),
                (":authority", "localhost")])))
        for sid in range(81, 121, 2):
            assert until_end(c, sid) == "end"
        for sid in ids[::3]:
            c.sock.sendall(frame(RST, 0, sid, (8).to_bytes(4, "big")))
        for sid in ids:
            if sid not in ids[::3]:
                c.send(sid, lk.ws_frame(1, b"again"))
                assert lk.ws_read_frame(c.reader(sid)) == (1, b"again")
    finally:
        c.sock.close()


def test_graceful_stop_with_websockets_open(linkup_bin, env, tmp_path, fake_worker, script):
    """SIGTERM with WebSockets open over HTTP/2 through the local server:
    GOAWAY, the WebSockets are cut at the drain deadline, the process exits
    0."""
    s = spawn(linkup_bin, env, tmp_path, fake_worker, script)
    c = h2c(s)
    try:
        assert c.connect(1, path="/echo")[:1] == b"\x88"
        assert c.connect(3, path="/echo")[:1] == b"\x88"
        code, _ = lk.stop_gracefully(s, timeout=30)
        assert code == 0, open(s.log_path).read()[-3000:]
        # What the client saw: a GOAWAY, then the end of the connection.
        saw_goaway = False
        try:
            for _ in range(1000):
                if c.next_frame()[0] == GOAWAY:
                    saw_goaway = True
        except (EOFError, OSError):
            pass
        assert saw_goaway
        # The local server relays WebSocket bytes without reading frames
        # (SPEC §5.4): it has no boundary to put a close frame at, and
        # injects none.
        assert not c.data.get(1) and not c.data.get(3), c.data
    finally:
        c.sock.close()
        if s.popen.poll() is None:
            s.popen.kill()
            s.popen.wait(5)


def test_worker_refused_upgrades_over_h2c(worker):
    """The worker's WebSocket path (SPEC §4.7) over extended CONNECT: an
    upstream that does not switch (403, or a 200) is a 502 `Failed to connect
    to destination: ...`, never a 200; the connection serves on."""
    w, host = worker
    c = H2(socket.create_connection(w.addrs["Worker"], timeout=10))
    try:
        for sid, path in ((1, "/reject"), (3, "/ok200")):
            fields = connect_fields(path, host)
            c.sock.sendall(frame(HEADERS, END_HEADERS, sid, hpack(fields)))
            assert until_end(c, sid) == "end"
            assert c.data[sid].startswith(b"Failed to connect to destination: "), c.data[sid]
        assert_echo_stream(c, 5, "/echo", host, b"via the worker")
    finally:
        c.sock.close()


def test_switched_answer_has_no_content_length(linkup_bin, env, tmp_path, server, script):
    """An upstream 101 carrying Content-Length: the 200 that opens the
    WebSocket must not (RFC 9110 §8.6: no Content-Length in a 2xx to CONNECT;
    an HTTP/2 client would take the DATA that follows for a length error), on
    the local server and on the worker (whose SPEC §4.7 101 appends the
    upstream's fields); the upstream's other fields pass."""
    w = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker.log"), token="tok")
    try:
        body = lk.session_body(NAME, {"frontend": script.url}, [("example.com", "frontend", None)])
        r = lk.request(w.addrs["Worker"], "POST", "/linkup/v2/sessions/preview",
                       [("Authorization", "Bearer tok"), ("Content-Type", "application/json"),
                        ("x-linkup-version", "99.0.0")], json.dumps(body))
        assert r.status == 200, r.body
        for addr, host in ((server.addrs["HTTP"], HOST),
                           (w.addrs["Worker"], f"{r.json()['session_name']}.example.com")):
            c = H2D(socket.create_connection(addr, timeout=10))
            try:
                fields = connect_fields("/cl101", host)
                c.sock.sendall(frame(HEADERS, END_HEADERS, 1, hpack(fields)))
                c.until(HEADERS)
                got = dict(c.fields[1])
                assert got[":status"] == "200", c.fields[1]
                assert got.get("x-up") == "yes", c.fields[1]
                assert "content-length" not in got, c.fields[1]
                assert "sec-websocket-accept" not in got, c.fields[1]
                c.send(1, lk.ws_frame(1, b"after the 200"))
                assert lk.ws_read_frame(c.reader(1)) == (1, b"after the 200")
            finally:
                c.sock.close()
    finally:
        assert w.stop() == 0, open(w.log_path).read()[-3000:]


def test_padded_data_gives_the_windows_back(server, script):
    """Padding counts against flow control (RFC 9113 §6.1) and never reaches
    the pair: 20 000 DATA frames of one byte and 255 of padding (5 MiB of
    window, over the 4 MiB connection window) must not run the windows dry."""
    c = h2c(server)
    try:
        assert c.connect(1, path="/echo")[:1] == b"\x88"
        msg = bytes(i % 251 for i in range(20000))
        wire = lk.ws_frame(2, msg)
        out = b"".join(frame(DATA, 0x8, 1, bytes([254]) + wire[i:i + 1] + b"\0" * 254)
                       for i in range(len(wire)))
        for i in range(0, len(out), 1 << 20):
            c.sock.sendall(out[i:i + (1 << 20)])
        assert lk.ws_read_frame(c.reader(1)) == (2, msg)
    finally:
        c.sock.close()


def test_early_data_on_a_refused_upgrade_is_not_a_request(server, script):
    """Bytes a client sends before the answer belong to the WebSocket: when
    the upstream refuses the upgrade they are dropped, never read as another
    HTTP/1.1 request on the engine's side of the stream."""
    c = h2c(server)
    try:
        fields = connect_fields("/reject", HOST)
        smuggled = f"GET /silent HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
        c.sock.sendall(frame(HEADERS, END_HEADERS, 1, hpack(fields)) + frame(DATA, 0, 1, smuggled))
        assert until_end(c, 1) == "end"
        assert c.data[1] == b"no websocket here"
        still_serves(c, 3)
        assert [line for line, _ in script.heads] == ["GET /reject HTTP/1.1",
                                                     "GET /echo HTTP/1.1"]
    finally:
        c.sock.close()


@pytest.mark.parametrize("how", ["close", "goaway-then-close"])
def test_client_gone_closes_its_websockets_upstream(server, script, how):
    """The client connection ends (with or without a GOAWAY first) while a
    WebSocket is open: the upstream connection is closed too."""
    c = h2c(server)
    try:
        assert c.connect(1, path="/echo")[:1] == b"\x88"
        c.send(1, lk.ws_frame(1, b"hi"))
        assert lk.ws_read_frame(c.reader(1)) == (1, b"hi")
        if how == "goaway-then-close":
            c.sock.sendall(frame(GOAWAY, 0, 0, (0).to_bytes(4, "big") * 2))
            c.send(1, lk.ws_frame(1, b"still open after our GOAWAY"))
            assert lk.ws_read_frame(c.reader(1)) == (1, b"still open after our GOAWAY")
    finally:
        c.sock.close()
    assert script.closed.wait(15), "the upstream connection stayed open"
    assert lk.request(server.addrs["HTTP"], "GET", "/linkup/check").status == 200


def test_extended_connect_with_end_stream(server, script):
    """END_STREAM on the CONNECT's HEADERS: the client will send nothing, but
    the WebSocket opens and what the upstream sends arrives."""
    c = h2c(server)
    try:
        fields = connect_fields("/abort", HOST)
        c.sock.sendall(frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack(fields)))
        assert c.until(HEADERS)[3][:1] == b"\x88"
        assert lk.ws_read_frame(c.reader(1)) == (1, b"last words")
        assert until_end(c, 1) in ("end", "rst")
        still_serves(c, 3)
    finally:
        c.sock.close()


def test_upstream_closes_while_the_client_is_not_reading(server, script):
    """The upstream sends 2 MiB and closes while the client reads nothing:
    whatever was held back (the stream paused at its bound) is still
    delivered, whole, before the END_STREAM."""
    c = h2c(server)
    try:
        assert c.connect(1, path="/burst")[:1] == b"\x88"
        assert script.closed.wait(30), "the upstream could not send 2 MiB"
        ws = c.reader(1)
        for _ in range(32):
            assert lk.ws_read_frame(ws) == (2, b"b" * FLOOD_FRAME)
        assert lk.ws_read_frame(ws) == (1, b"end")
        assert until_end(c, 1) == "end"
    finally:
        c.sock.close()


def test_client_reset_before_the_answer_cancels_the_upgrade(server, script):
    c = h2c(server)
    try:
        fields = connect_fields("/silent", HOST)
        c.sock.sendall(frame(HEADERS, END_HEADERS, 1, hpack(fields)))
        for _ in range(100):  # the upstream has the request
            if script.heads:
                break
            c.sock.settimeout(0.1)
            try:
                c.next_frame()
            except socket.timeout:
                pass
        c.sock.settimeout(10)
        assert script.heads
        c.sock.sendall(frame(RST, 0, 1, (8).to_bytes(4, "big")))  # CANCEL
        assert script.closed.wait(15), "the upstream connection stayed open"
        still_serves(c, 3)
    finally:
        c.sock.close()


@pytest.fixture
def worker(linkup_bin, env, tmp_path, script):
    """The worker with a preview session whose frontend is script: (Proc,
    the session's host)."""
    w = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker.log"), token="tok")
    try:
        body = lk.session_body(NAME, {"frontend": script.url}, [("example.com", "frontend", None)])
        r = lk.request(w.addrs["Worker"], "POST", "/linkup/v2/sessions/preview",
                       [("Authorization", "Bearer tok"), ("Content-Type", "application/json"),
                        ("x-linkup-version", "99.0.0")], json.dumps(body))
        assert r.status == 200, r.body
        yield w, f"{r.json()['session_name']}.example.com"
    finally:
        assert w.stop() == 0, open(w.log_path).read()[-3000:]


def worker_connect(w, host, path):
    """An h2c connection to the worker with a WebSocket open on stream 1."""
    c = H2(socket.create_connection(w.addrs["Worker"], timeout=10))
    fields = connect_fields(path, host)
    c.sock.sendall(frame(HEADERS, END_HEADERS, 1, hpack(fields)))
    assert c.until(HEADERS)[3][:1] == b"\x88"
    return c


@pytest.mark.parametrize("path,end", [("/abort", ("rst", CANCEL)), ("/burst", ("end", None))],
                         ids=["reset", "fin"])
def test_worker_upstream_gone_over_h2c(worker, script, path, end):
    """Through the worker an upstream that ends without a close frame gets
    the client a 1011 close (SPEC §4.7), delivered as DATA; then a reset
    upstream (TCP RST) resets the stream with CANCEL and a clean one (FIN)
    ends it (RFC 8441 §5)."""
    w, host = worker
    c = worker_connect(w, host, path)
    try:
        ws = c.reader(1)
        if path == "/abort":
            assert lk.ws_read_frame(ws) == (1, b"last words")
        else:
            for _ in range(32):
                assert lk.ws_read_frame(ws) == (2, b"b" * FLOOD_FRAME)
            assert lk.ws_read_frame(ws) == (1, b"end")
        assert lk.ws_read_frame(ws) == (8, struct.pack("!H", 1011) +
                                        b"websocket upstream went away without a close frame")
        assert until_end_code(c, 1) == end
    finally:
        c.sock.close()


class Bytes:
    """recv() over bytes already received, for lk.ws_read_frame()."""

    def __init__(self, data):
        self.data = data

    def recv(self, n):
        out, self.data = self.data[:n], self.data[n:]
        return out


def test_worker_drain_closes_h2_websockets_with_1001(worker, script):
    """SIGTERM with a WebSocket open over HTTP/2 through the worker: the
    client and the upstream each get a 1001 close at once (the upstream's
    masked: the worker is its client); the client's answer ends the stream
    and the worker exits well before WORKER_DRAIN_MS (10 s)."""
    w, host = worker
    bye = struct.pack("!H", 1001) + b"server shutting down"
    c = worker_connect(w, host, "/echo")
    try:
        c.send(1, lk.ws_frame(1, b"hi"))
        assert lk.ws_read_frame(c.reader(1)) == (1, b"hi")
        started = time.monotonic()
        w.popen.send_signal(signal.SIGTERM)
        assert lk.ws_read_frame(c.reader(1)) == (8, bye)
        c.send(1, lk.ws_frame(8, struct.pack("!H", 1001)), end=True)
        assert until_end_code(c, 1) == ("end", None)
        assert w.popen.wait(10) == 0
        assert time.monotonic() - started < 5, "the worker waited for the drain deadline"
        got = Bytes(script.got)
        frames = [lk.ws_read_frame(got, with_mask=True) for _ in range(2)]
        assert frames == [(1, b"hi", True), (8, bye, True)]
        assert got.data == b""  # the client's close was not relayed after ours
    finally:
        c.sock.close()


# ---- behind the built-in tunnel ------------------------------------------------

@pytest.fixture
def tunnelled(linkup_bin, env, tmp_path):
    """worker -> tunnel -> local server -> a WsScript on 127.0.0.1, reached
    as a `localhost` service (the worker re-points it at the tunnel): (the
    worker, the session's host, the script)."""
    from test_tunnel import wait_connected
    env["LINKUP_DNS_ADDR"] = "off"
    up = WsScript("127.0.0.1")
    w = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker.log"), token="tok")
    s = None
    try:
        waddr = w.addrs["Worker"]
        s = lk.spawn_local_server(linkup_bin, env, "--https", "off", "--dns", "off",
                                  "--worker-url", "http://%s:%d" % waddr, "--worker-token", "tok",
                                  log_path=str(tmp_path / "server.log"))
        body = lk.session_body(NAME, {"frontend": "http://localhost:%d" % up.port},
                               [("example.com", "frontend", None)])
        r = lk.post_json(s.addrs["HTTP"], "/linkup/sessions/tunneled", body)
        assert r.status == 200, r.body
        wait_connected(s)
        yield w, f"{r.json()['session_name']}.example.com", up
    finally:
        up.close()
        if s is not None and s.popen.poll() is None:
            code, _ = lk.stop_gracefully(s)
            assert code == 0, open(s.log_path).read()[-3000:]
        assert w.stop() == 0, open(w.log_path).read()[-3000:]


GONE_1011 = struct.pack("!H", 1011) + b"websocket upstream went away without a close frame"


@pytest.mark.parametrize("path,end", [("/abort", ("rst", CANCEL)), ("/bigabort", ("rst", CANCEL)),
                                      ("/burst", ("end", None))],
                         ids=["reset", "reset-queued", "fin"])
def test_tunnelled_upstream_gone_over_h2c(tunnelled, path, end):
    """RFC 8441 §5 across the tunnel: the local server's WebSocket upstream
    resets (TCP RST); the local server's pipe sends the last bytes, then
    resets the tunnel stream with CANCEL; the worker takes that as an
    upstream error: its HTTP/2 client gets the frames, the worker's 1011
    close (SPEC §4.7), then RST_STREAM CANCEL. reset-queued: the client
    reads nothing for a second, so 3 MiB wait along the path (the local
    server's pipe among them) when the reset comes, and still all arrive
    before it. A clean close (FIN) ends the stream with END_STREAM after the
    same 1011 close."""
    w, host, up = tunnelled
    c = worker_connect(w, host, path)
    try:
        ws = c.reader(1)
        if path == "/abort":
            assert lk.ws_read_frame(ws) == (1, b"last words")
        elif path == "/bigabort":
            time.sleep(1)  # the stream window (64 KiB) stops the worker
            for _ in range(48):
                assert lk.ws_read_frame(ws) == (2, b"a" * FLOOD_FRAME)
        else:
            for _ in range(32):
                assert lk.ws_read_frame(ws) == (2, b"b" * FLOOD_FRAME)
            assert lk.ws_read_frame(ws) == (1, b"end")
        assert lk.ws_read_frame(ws) == (8, GONE_1011)
        assert until_end_code(c, 1) == end
        # The worker's connection and the tunnel still serve.
        assert_echo_stream(c, 3, "/echo", host, b"ping?")
    finally:
        c.sock.close()


class Prefixed:
    """recv() over bytes already read, then the socket."""

    def __init__(self, rest, sock):
        self.rest, self.sock = rest, sock

    def recv(self, n):
        if self.rest:
            out, self.rest = self.rest[:n], self.rest[n:]
            return out
        return self.sock.recv(n)


def test_tunnelled_upstream_reset_over_http1(tunnelled):
    """The same reset for an HTTP/1.1 client of the worker: the frames, the
    1011 close, then the connection closes."""
    w, host, up = tunnelled
    s = socket.create_connection(w.addrs["Worker"], timeout=10)
    try:
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        s.sendall(("GET /abort HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n" % (host, key)).encode())
        line, _, rest = lk.read_http_head(s)
        assert line.startswith("HTTP/1.1 101"), line
        ws = Prefixed(rest, s)
        assert lk.ws_read_frame(ws) == (1, b"last words")
        assert lk.ws_read_frame(ws) == (8, GONE_1011)
        assert ws.recv(65536) == b""
    finally:
        s.close()
