"""Black-box tests of the DNS responder (DESIGN §2.9) through the hidden
`linkup dns-serve` command: dig and hand-made UDP/TCP packets against
127.0.0.1, a stand-in upstream DNS server written here on loopback (never the
real resolver)."""
import os
import random
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

import lk

NAMES = ["tiny-cow.example.com", "quiet-fox.other.com"]


def build_query(name, qtype, qid=None, edns=0, flags=0x0100):
    qid = random.randrange(65536) if qid is None else qid
    msg = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 1 if edns else 0)
    for label in name.strip(".").split("."):
        if label:
            msg += bytes([len(label)]) + label.encode()
    msg += b"\0" + struct.pack(">HH", qtype, 1)
    if edns:
        msg += b"\0" + struct.pack(">HHIH", 41, edns, 0, 0)
    return msg


def skip_name(msg, off):
    while True:
        n = msg[off]
        if n & 0xC0 == 0xC0:
            return off + 2
        if n == 0:
            return off + 1
        off += 1 + n


def parse_answer(msg):
    """Returns (id, flags, rcode, [(type, ttl, rdata)], arcount)."""
    qid, flags, qd, an, ns, ar = struct.unpack(">HHHHHH", msg[:12])
    off = 12
    for _ in range(qd):
        off = skip_name(msg, off) + 4
    records = []
    for _ in range(an):
        off = skip_name(msg, off)
        rtype, _cls, ttl, rdlen = struct.unpack(">HHIH", msg[off:off + 10])
        off += 10
        records.append((rtype, ttl, msg[off:off + rdlen]))
        off += rdlen
    return qid, flags, flags & 0xF, records, ar


def udp_ask(port, packet, timeout=3.0):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except socket.timeout:
            return None


def tcp_ask(port, packets, timeout=3.0):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        for p in packets:
            s.sendall(struct.pack(">H", len(p)) + p)
        answers = []
        buf = b""
        while len(answers) < len(packets):
            chunk = s.recv(65535)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack(">H", buf[:2])[0]:
                n = struct.unpack(">H", buf[:2])[0]
                answers.append(buf[2:2 + n])
                buf = buf[2 + n:]
        return answers


class FakeUpstream:
    """A loopback DNS server on UDP and TCP (one port) answering every A
    query with 192.0.2.7 (TTL 33): "big.*" gets 40 records (> 512 bytes).
    silent: never answers. udp_tc: UDP answers are header + question with TC
    set (RFC 1035 §4.2.1), so only TCP carries the records. tcp=False: the
    TCP port is bound but not listening (connections are refused)."""

    def __init__(self, silent=False, host="127.0.0.1", udp_tc=False, tcp=True):
        for _ in range(20):  # until TCP gets the port UDP got
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((host, 0))
            self.port = self.sock.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                self.tcp.bind((host, self.port))
                break
            except OSError:
                self.sock.close()
                self.tcp.close()
        else:
            raise OSError("no port free for both UDP and TCP")
        if tcp:
            self.tcp.listen(16)
        self.silent = silent
        self.udp_tc = udp_tc
        self.serve_tcp = tcp
        self.queries = []
        self.tcp_queries = []
        self.stop = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def answer(self, data, truncated):
        qend = skip_name(data, 12) + 4
        count = 40 if data[13:16] == b"big" else 1
        if truncated:
            return data[:2] + struct.pack(">HHHHH", 0x8380, 1, 0, 0, 0) + data[12:qend]
        edns = data[10:12] == b"\0\1"  # the query's OPT: answer with one (4096, DO)
        head = data[:2] + struct.pack(">HHHHH", 0x8180, 1, count, 0, 1 if edns else 0)
        rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 33, 4) + bytes([192, 0, 2, 7])
        opt = b"\0" + struct.pack(">HHIH", 41, 4096, 0x8000, 0) if edns else b""
        return head + data[12:qend] + rr * count + opt

    def run(self):
        socks = [self.sock] + ([self.tcp] if self.serve_tcp else [])
        while not self.stop:
            r, _, _ = select.select(socks, [], [], 0.1)
            if self.sock in r:
                data, peer = self.sock.recvfrom(65535)
                self.queries.append(data)
                if not self.silent:
                    self.sock.sendto(self.answer(data, self.udp_tc), peer)
            if self.tcp in r:
                conn, _ = self.tcp.accept()
                threading.Thread(target=self.run_tcp, args=(conn,), daemon=True).start()

    def run_tcp(self, conn):
        with conn:
            conn.settimeout(5)
            try:
                while True:
                    head = conn.recv(2, socket.MSG_WAITALL)
                    if len(head) < 2:
                        return
                    n = struct.unpack(">H", head)[0]
                    data = conn.recv(n, socket.MSG_WAITALL)
                    self.tcp_queries.append(data)
                    if self.silent:
                        continue
                    msg = self.answer(data, False)
                    conn.sendall(struct.pack(">H", len(msg)) + msg)
            except OSError:
                return

    def close(self):
        self.stop = True
        self.thread.join(timeout=2)
        self.sock.close()
        self.tcp.close()


class DnsServe:
    def __init__(self, linkup_bin, env, extra=(), preexec_fn=None):
        args = [linkup_bin, "dns-serve", "--dns", "127.0.0.1:0"]
        for n in NAMES:
            args += ["--name", n]
        args += list(extra)
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10)
        assert ready, "dns-serve printed nothing"
        line = self.proc.stdout.readline()
        assert line.startswith("DNS listening on 127.0.0.1:"), line
        self.port = int(line.rsplit(":", 1)[1])

    def close(self):
        """SIGTERM; must exit 0. Returns its stderr."""
        assert self.proc.poll() is None, "dns-serve died: " + self.proc.stderr.read()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=10)
        err = self.proc.stderr.read()
        assert rc == 0, err
        return err


@pytest.fixture
def upstream():
    u = FakeUpstream()
    yield u
    u.close()


@pytest.fixture
def server(linkup_bin, env, upstream):
    s = DnsServe(linkup_bin, env, ["--dns-upstream", f"127.0.0.1:{upstream.port}"])
    yield s
    s.close()


def dig(port, *args):
    if shutil.which("dig") is None:
        pytest.skip("dig is not installed")
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=5", *args],
                         capture_output=True, text=True, timeout=20)
    return out.stdout


@pytest.mark.parametrize("name,qtype,expect", [
    ("tiny-cow.example.com", "A", "127.0.0.1"),
    ("tiny-cow.example.com", "AAAA", "::1"),
    ("api.tiny-cow.example.com", "A", "127.0.0.1"),
    ("a.b.tiny-cow.example.com", "AAAA", "::1"),
    ("Quiet-Fox.Other.COM", "A", "127.0.0.1"),
])
def test_dig_registered_names(server, name, qtype, expect):
    out = dig(server.port, name, qtype, "+noall", "+answer")
    fields = out.split()
    assert fields[1] == "60", out
    assert fields[3] == qtype and fields[4] == expect, out


def test_dig_tcp(server):
    out = dig(server.port, "+tcp", "tiny-cow.example.com", "A", "+short")
    assert out.strip() == "127.0.0.1"


@pytest.mark.parametrize("name,qtype,rcode,n_answers", [
    ("tiny-cow.example.com", 15, 0, 0),   # MX: NODATA
    ("tiny-cow.example.com", 16, 0, 0),   # TXT: NODATA
    ("unknown.example.com", 1, 3, 0),     # NXDOMAIN under a managed domain
    ("tiny-cow.other.com", 28, 3, 0),
    ("tiny-cow.example.com", 1, 0, 1),
])
def test_udp_rcodes(server, name, qtype, rcode, n_answers):
    q = build_query(name, qtype, qid=0x4242)
    qid, flags, rc, records, _ = parse_answer(udp_ask(server.port, q))
    assert qid == 0x4242
    assert flags & 0x8000 and flags & 0x0400  # QR, AA
    assert rc == rcode
    assert len(records) == n_answers


@pytest.mark.parametrize("name,qtype,rcode,owner", [
    ("nope.example.com", "A", "NXDOMAIN", "example.com."),
    ("a.b.Other.COM", "AAAA", "NXDOMAIN", "Other.COM."),
    ("tiny-cow.example.com", "MX", "NOERROR", "example.com."),
    ("x.quiet-fox.other.com", "TXT", "NOERROR", "other.com."),
])
def test_negative_answers_carry_soa(server, name, qtype, rcode, owner):
    """RFC 2308 §3: NXDOMAIN under a managed domain and NODATA at a
    registered name carry the managed domain's SOA in the authority section
    (TTL and MINIMUM 60, DESIGN §2.9), so resolvers cache them negatively."""
    out = dig(server.port, name, qtype, "+norecurse", "+noall", "+comments", "+authority")
    assert f"status: {rcode}" in out, out
    assert "flags: qr aa" in out and "ANSWER: 0, AUTHORITY: 1" in out, out
    soa = [line.split() for line in out.splitlines() if "\tSOA\t" in line]
    assert soa == [[owner, "60", "IN", "SOA", "localhost.", "hostmaster.localhost.", "1", "3600",
                    "600", "86400", "60"]], out


def test_positive_and_forwarded_answers_carry_no_soa(server):
    for name in ["tiny-cow.example.com", "www.example.org"]:
        q = build_query(name, 1)
        answer = udp_ask(server.port, q)
        assert struct.unpack(">H", answer[8:10])[0] == 0  # NSCOUNT
        assert parse_answer(answer)[2] == 0


def test_zone_transfers_of_our_names_are_refused(server, upstream):
    """No zone to transfer (RFC 5936 §2.2.1): AXFR/IXFR of a managed name
    gets REFUSED, over TCP as dig asks, with no records; nothing forwarded."""
    answers = tcp_ask(server.port, [build_query(NAMES[0], 252, qid=1),
                                    build_query("nope.example.com", 251, qid=2)])
    got = [parse_answer(a) for a in answers]
    assert [(qid, rc, records) for qid, _, rc, records, _ in got] == [(1, 5, []), (2, 5, [])]
    assert struct.unpack(">H", answers[0][8:10])[0] == 0
    assert upstream.queries == [] and upstream.tcp_queries == []


def test_edns_answer_has_opt(server):
    q = build_query("tiny-cow.example.com", 1, edns=4096)
    _, _, rc, records, arcount = parse_answer(udp_ask(server.port, q))
    assert rc == 0 and records[0][2] == bytes([127, 0, 0, 1])
    assert arcount == 1


def test_forwarding_to_upstream(server, upstream):
    q = build_query("www.example.org", 1, qid=0x1234)
    answer = udp_ask(server.port, q)
    qid, flags, rc, records, _ = parse_answer(answer)
    assert qid == 0x1234  # the client's id is restored
    assert rc == 0 and records == [(1, 33, bytes([192, 0, 2, 7]))]
    assert len(upstream.queries) == 1
    assert upstream.queries[0][2:] == q[2:]  # same question, own id
    # Over TCP too (forwarded over TCP, RFC 7766 §5).
    answers = tcp_ask(server.port, [build_query("a.example.net", 1, qid=7)])
    assert parse_answer(answers[0])[0] == 7
    assert parse_answer(answers[0])[3][0][2] == bytes([192, 0, 2, 7])
    assert len(upstream.queries) == 1 and len(upstream.tcp_queries) == 1


def test_bare_managed_domain_is_forwarded(server, upstream):
    """SPEC §5.6: the bare configured domain (the shared deployment) is
    forwarded; only names below it are answered here."""
    q = build_query("Example.COM", 1, qid=0x55)
    qid, flags, rc, records, _ = parse_answer(udp_ask(server.port, q))
    assert (qid, rc) == (0x55, 0)
    assert records == [(1, 33, bytes([192, 0, 2, 7]))]
    assert len(upstream.queries) == 1


def test_managed_names_are_never_forwarded(server, upstream):
    for name in ["nope.example.com", "tiny-cow.example.com"]:
        udp_ask(server.port, build_query(name, 1))
    assert upstream.queries == []


def test_servfail_when_upstream_is_silent(linkup_bin, env):
    silent = FakeUpstream(silent=True)
    s = DnsServe(linkup_bin, env, ["--dns-upstream", f"127.0.0.1:{silent.port}"])
    try:
        start = time.monotonic()
        answer = udp_ask(s.port, build_query("example.org", 1, qid=99), timeout=6)
        took = time.monotonic() - start
        assert answer is not None
        qid, _, rc, _, _ = parse_answer(answer)
        assert qid == 99 and rc == 2
        assert 1.5 <= took <= 4.5
        assert len(silent.queries) == 1
    finally:
        s.close()
        silent.close()


def test_servfail_without_upstream(linkup_bin, env, tmp_path):
    empty = tmp_path / "resolv.conf"
    empty.write_text("# no nameservers\n")
    s = DnsServe(linkup_bin, env, ["--resolv-conf", str(empty)])
    try:
        _, _, rc, _, _ = parse_answer(udp_ask(s.port, build_query("example.org", 1)))
        assert rc == 2
        # Registered names still work.
        _, _, rc, records, _ = parse_answer(udp_ask(s.port, build_query(NAMES[0], 1)))
        assert rc == 0 and len(records) == 1
    finally:
        s.close()


def test_upstream_from_resolv_conf(linkup_bin, env, tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example.net\nnameserver 127.0.0.1\nnameserver 10.9.9.9\n")
    s = DnsServe(linkup_bin, env, ["--resolv-conf", str(conf)])
    try:
        assert s.proc.stderr.readline().strip() == "dns-serve: upstream 127.0.0.1:53"
    finally:
        s.close()


def test_systemd_resolved_stub_is_bypassed(linkup_bin, env, tmp_path):
    """DESIGN §2.9 (never forward to itself): with systemd-resolved, resolv.conf names its
    stub 127.0.0.53, which `local-dns install` tells to send the managed domains to this
    responder; a forwarded name (a bare managed domain, SPEC §5.6) would come straight back.
    The responder forwards to the stub's own upstreams (/run/systemd/resolve/resolv.conf)
    instead; without that file, or for another nameserver, resolv.conf is used as is."""
    stub = tmp_path / "stub-resolv.conf"
    stub.write_text("# managed by systemd-resolved\nnameserver 127.0.0.53\noptions edns0\n")
    uplinks = tmp_path / "resolved-resolv.conf"
    uplinks.write_text("nameserver 127.0.0.9\nnameserver 10.9.9.9\n")
    plain = tmp_path / "resolv.conf"
    plain.write_text("nameserver 127.0.0.8\n")
    cases = [(stub, uplinks, "127.0.0.9:53"), (stub, tmp_path / "missing", "127.0.0.53:53"),
             (plain, uplinks, "127.0.0.8:53")]
    for conf, resolved, want in cases:
        s = DnsServe(linkup_bin, dict(env, LINKUP_SYSTEMD_RESOLV_CONF=str(resolved)),
                     ["--resolv-conf", str(conf)])
        try:
            assert s.proc.stderr.readline().strip() == f"dns-serve: upstream {want}", conf
        finally:
            s.close()


def test_dns_serve_upstream_off(linkup_bin, env):
    """`dns-serve --dns-upstream off` forwards nothing, as `linkup server` does."""
    s = DnsServe(linkup_bin, env, ["--dns-upstream", "off"])
    try:
        assert s.proc.stderr.readline().strip() == "dns-serve: upstream (none)"
        _, _, rc, records, _ = parse_answer(udp_ask(s.port, build_query(NAMES[0], 1)))
        assert rc == 0 and len(records) == 1
    finally:
        s.close()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t.bind(("127.0.0.1", port))
        return port


@pytest.mark.parametrize("spelling", ["127.0.0.1:{}", "0.0.0.0:{}", "[::ffff:127.0.0.1]:{}"])
def test_never_forwards_to_itself(linkup_bin, env, spelling):
    """DESIGN §2.9: an upstream that names this responder, however its address is
    written (0.0.0.0 and an IPv4-mapped address reach 127.0.0.1 too), is no upstream:
    otherwise each question would come back to it, over and over."""
    # The port is chosen here, so another program may grab it before the
    # server binds it: retry a few times.
    for _ in range(5):
        try:
            port = free_port()
            me = f"127.0.0.1:{port}"
            s = DnsServe(linkup_bin, env, ["--dns", me, "--dns-upstream", spelling.format(port)])
            break
        except (OSError, AssertionError):
            continue
    else:
        pytest.fail("could not start dns-serve on a chosen port")
    try:
        assert s.proc.stderr.readline().strip() == "dns-serve: upstream (none)"
        start = time.monotonic()
        _, _, rc, _, _ = parse_answer(udp_ask(s.port, build_query("example.org", 1)))
        assert rc == 2 and time.monotonic() - start < 1.0
    finally:
        s.close()


@pytest.mark.parametrize("packet", [
    b"",
    b"\x01",
    b"\x12\x34\x01\x00\x00\x01",
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07exam",  # truncated
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # ptr loop
    b"\x12\x34\x01\x00\xff\xff\xff\xff\xff\xff\xff\xff",
    b"\x12\x34\x81\x80\x00\x00\x00\x00\x00\x00\x00\x00",  # a response
    bytes(range(256)) * 4,
])
def test_garbage_is_formerr_or_dropped(server, packet):
    answer = udp_ask(server.port, packet, timeout=0.5)
    if answer is not None:
        assert answer[:2] == packet[:2]
        assert answer[2] & 0x80
        assert answer[3] & 0x0F == 1  # FORMERR
    # Still serving.
    _, _, rc, records, _ = parse_answer(udp_ask(server.port, build_query(NAMES[0], 1)))
    assert rc == 0 and len(records) == 1


def test_random_garbage_never_kills_it(server):
    rng = random.Random(6)
    for _ in range(300):
        n = rng.randrange(0, 120)
        pkt = bytes(rng.randrange(256) for _ in range(n))
        if len(pkt) > 2:  # mostly queries with a single question
            pkt = pkt[:2] + bytes([pkt[2] & 0x7F]) + pkt[3:]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(pkt, ("127.0.0.1", server.port))
    # UDP may drop a datagram queued behind the garbage on a busy machine (the
    # socket's buffer full): asked again, as a resolver would, it must answer.
    answer = None
    for _ in range(3):
        answer = udp_ask(server.port, build_query(NAMES[1], 1))
        if answer is not None:
            break
    _, _, rc, _, _ = parse_answer(answer)
    assert rc == 0


def test_tcp_pipelined_and_garbage(server):
    qs = [build_query(NAMES[0], 1, qid=1), build_query("zzz.example.com", 1, qid=2),
          build_query(NAMES[0], 28, qid=3)]
    answers = tcp_ask(server.port, qs)
    assert [parse_answer(a)[0] for a in answers] == [1, 2, 3]
    assert [parse_answer(a)[2] for a in answers] == [0, 3, 0]
    # A length prefix too short for a header closes the connection.
    with socket.create_connection(("127.0.0.1", server.port), timeout=3) as s:
        s.sendall(b"\x00\x03abc")
        assert s.recv(100) == b""
    # A malformed message on TCP gets FORMERR.
    bad = b"\x55\x66\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07exam"
    (answer,) = tcp_ask(server.port, [bad])
    assert answer[:2] == b"\x55\x66" and answer[3] & 0xF == 1


def test_udp_truncation_of_big_upstream_answers(server, upstream):
    # The stand-in upstream answers "big.*" with 40 A records (> 512 bytes).
    q = build_query("big.example.org", 1, qid=5)
    answer = udp_ask(server.port, q)
    qid, flags, rc, records, _ = parse_answer(answer)
    assert qid == 5 and flags & 0x0200 and records == [] and len(answer) <= 512
    # With EDNS 4096 the whole answer comes through, and over TCP as well.
    _, flags, _, records, _ = parse_answer(udp_ask(server.port, build_query(
        "big.example.org", 1, edns=4096)))
    assert not flags & 0x0200 and len(records) == 40
    (answer,) = tcp_ask(server.port, [build_query("big.example.org", 1, qid=6)])
    assert parse_answer(answer)[0] == 6 and len(parse_answer(answer)[3]) == 40


def test_udp_truncation_keeps_the_opt_record(server, upstream):
    """RFC 6891 §7: a truncated answer to an EDNS query is the header, the
    question and an OPT record (the upstream's, its options left out)."""
    q = build_query("big.example.org", 1, qid=8, edns=600)
    answer = udp_ask(server.port, q)
    qid, flags, rc, records, arcount = parse_answer(answer)
    assert (qid, rc) == (8, 0) and flags & 0x0200 and records == []
    assert arcount == 1 and len(answer) == len(q)
    assert answer[-11:] == b"\0" + struct.pack(">HHIH", 41, 4096, 0x8000, 0)


def test_tcp_queries_are_forwarded_over_tcp(linkup_bin, env):
    """RFC 7766 §5, RFC 1035 §4.2.2: a query that came over TCP is forwarded
    over TCP, so an answer too big for UDP resolves through the responder. The
    stand-in answers UDP with TC and no records, TCP with 40 A records; a UDP
    client gets the TC answer as it is and retries over TCP (dig does)."""
    up = FakeUpstream(host="127.0.0.6", udp_tc=True)
    s = DnsServe(linkup_bin, env, ["--dns-upstream", f"127.0.0.6:{up.port}"])
    try:
        q = build_query("big.example.org", 1, qid=9)
        (answer,) = tcp_ask(s.port, [q])
        qid, flags, rc, records, _ = parse_answer(answer)
        assert (qid, rc) == (9, 0) and not flags & 0x0200
        assert records == [(1, 33, bytes([192, 0, 2, 7]))] * 40
        assert up.queries == [] and len(up.tcp_queries) == 1
        assert up.tcp_queries[0][2:] == q[2:]  # same question, own id
        # UDP in, UDP out: the TC answer is relayed unchanged.
        qid, flags, rc, records, _ = parse_answer(udp_ask(s.port, build_query(
            "big.example.org", 1, qid=10)))
        assert (qid, rc) == (10, 0) and flags & 0x0200 and records == []
        assert len(up.queries) == 1 and len(up.tcp_queries) == 1
        # dig over TCP, and dig over UDP retrying over TCP on TC.
        assert dig(s.port, "+tcp", "big.example.org", "A", "+short").split() == ["192.0.2.7"] * 40
        out = dig(s.port, "+time=2", "big.example.org", "A", "+short")
        assert out.split() == ["192.0.2.7"] * 40, out
        assert len(up.queries) == 2 and len(up.tcp_queries) == 3
    finally:
        s.close()
        up.close()


@pytest.mark.parametrize("kind", ["refused", "silent"])
def test_tcp_forward_failure_is_servfail(linkup_bin, env, kind):
    """An upstream that refuses TCP, or accepts and never answers, gives the
    TCP client SERVFAIL (at once, or at the forwarding timeout), as a UDP
    failure does; the responder keeps serving."""
    up = FakeUpstream(host="127.0.0.6", tcp=kind != "refused", silent=kind == "silent")
    s = DnsServe(linkup_bin, env, ["--dns-upstream", f"127.0.0.6:{up.port}"])
    try:
        answers = tcp_ask(s.port, [build_query("www.example.org", 1, qid=12),
                                   build_query(NAMES[0], 1, qid=13)], timeout=8)
        assert sorted((parse_answer(a)[0], parse_answer(a)[2]) for a in answers) == [(12, 2),
                                                                                    (13, 0)]
        assert up.queries == []
    finally:
        s.close()
        up.close()


def test_server_dns_upstream_off_means_no_forwarding(linkup_bin, env, tmp_path):
    """`linkup server --dns-upstream off` (the value its usage admits) starts
    the responder without forwarding: outside names get SERVFAIL, registered
    names still resolve."""
    w = lk.FakeWorker("127.0.0.3")
    env["LINKUP_HTTPS_ADDR"] = "off"
    try:
        s = lk.spawn_local_server(linkup_bin, env, "--dns", "127.0.0.1:0", "--dns-upstream", "off",
                                  "--worker-url", w.url, "--worker-token", "token123",
                                  log_path=str(tmp_path / "server.log"), wanted=("HTTP", "DNS"))
        try:
            body = lk.session_body("off-cow", {"web": "http://127.0.0.2:9"},
                                   [("example.com", "web", None)])
            assert lk.post_json(s.addrs["HTTP"], "/linkup/sessions/tunneled", body).status == 200
            port = s.addrs["DNS"][1]
            _, _, rc, _, _ = parse_answer(udp_ask(port, build_query("example.org", 1)))
            assert rc == 2
            _, _, rc, records, _ = parse_answer(udp_ask(port, build_query("off-cow.example.com",
                                                                          1)))
            assert rc == 0 and len(records) == 1
            # RFC 2308 §3: the session's domain owns the SOA of negative answers.
            for name, qtype in [("nobody.example.com", "A"), ("off-cow.example.com", "TXT")]:
                out = dig(port, name, qtype, "+noall", "+authority")
                assert out.split()[:4] == ["example.com.", "60", "IN", "SOA"], out
        finally:
            code, _ = lk.stop_gracefully(s)
        assert code == 0, open(s.log_path).read()
    finally:
        w.close()


def test_out_of_descriptors_pauses_the_tcp_listener(linkup_bin, env):
    """accept(2) failing with EMFILE (RLIMIT_NOFILE 32, hard too) pauses the
    TCP listener and logs a line now and then (lib/net/accept_guard.c), as on
    the HTTP listeners; before, it spun writing "Error from accept() call"
    until its stderr pipe filled and it blocked. UDP keeps answering, and TCP
    again once descriptors are free."""
    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))

    s = DnsServe(linkup_bin, env, ["--dns-upstream", "off"], preexec_fn=low_limit)
    socks = []
    try:
        for _ in range(48):
            socks.append(socket.create_connection(("127.0.0.1", s.port), timeout=3))
        time.sleep(1)
        ans = udp_ask(s.port, build_query("tiny-cow.example.com", 1))
        assert ans is not None and len(parse_answer(ans)[3]) == 1
        for c in socks:
            c.close()
        socks = []
        time.sleep(0.3)
        (ans,) = tcp_ask(s.port, [build_query("tiny-cow.example.com", 1)], timeout=5)
        assert len(parse_answer(ans)[3]) == 1
    finally:
        for c in socks:
            c.close()
        err = s.close()
    assert "accept failed: Too many open files" in err, err[-2000:]
    assert err.count("accept failed") <= 3 and "Error from accept() call" not in err, err[-2000:]
