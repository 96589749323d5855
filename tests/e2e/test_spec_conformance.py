"""SPEC conformance of `linkup worker` and `linkup server` (SPEC §2-§5, §9,
§11 as amended by DESIGN §2, §3, §9): the items of the SPEC that the other
e2e files leave untested, each test citing its section. Everything runs
over loopback: servers on 127.0.0.1:0, upstreams on 127.0.0.2, fake workers
on 127.0.0.3."""
import json
import re
import socket

import pytest

import lk

TOKEN = "tok"
AUTH = [("Authorization", f"Bearer {TOKEN}")]
JSON = [("Content-Type", "application/json")]
VERSION = [("x-linkup-version", "99.0.0")]

WORKER_NO_SESSION = ("Linkup was unable to determine the session origin of the request.\n"
                     "Make sure your request includes a valid session ID in the referer or "
                     "tracestate headers. - Worker")
SERVER_NO_SESSION = ("Linkup was unable to determine the session origin of the request. Ensure "
                     "that your request includes a valid session identifier in the referer or "
                     "tracestate headers. - Local Server")
CORS_ORIGIN = "access-control-allow-origin"


pytestmark = pytest.mark.usefixtures("http_only")


@pytest.fixture
def worker(linkup_bin, env, tmp_path):
    w = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker.log"), token=TOKEN)
    yield w
    assert w.stop() == 0, open(w.log_path).read()[-3000:]


@pytest.fixture
def server(linkup_bin, env, tmp_path, fake_worker):
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fake_worker.url, "--worker-token",
                              TOKEN, log_path=str(tmp_path / "server.log"))
    yield s
    code, _ = lk.stop_gracefully(s)
    assert code == 0, open(s.log_path).read()


def wpost(w, path, obj, headers=None):
    """POST a JSON body (object or raw text) to the worker, authenticated."""
    body = obj if isinstance(obj, str) else json.dumps(obj)
    return lk.request(w.addrs["Worker"], "POST", path,
                      AUTH + JSON + VERSION if headers is None else headers, body)


def wget(w, path, headers=()):
    return lk.request(w.addrs["Worker"], "GET", path, list(headers))


def svc(name, url, rewrites=None):
    return {"name": name, "location": url, "rewrites": rewrites}


def dom(domain, default, routes=None):
    return {"domain": domain, "default_service": default, "routes": routes}


def named(name, services, domains, token="token"):
    return {"desired_name": name, "session_token": token, "services": services,
            "domains": domains, "cache_routes": None}


FRONT = [svc("frontend", "http://example.com")]
EXAMPLE = [dom("example.com", "frontend")]


def upstream_headers(up):
    """The last request's headers as {lower-case name: [values]}."""
    h = {}
    for k, v in up.last_headers():
        h.setdefault(k.lower(), []).append(v)
    return h


# ==== worker ==================================================================

def test_worker_named_shape_needs_a_string_token(worker):
    """SPEC §2.3 quirk, §9: `desired_name` with `"session_token": null` does
    not fit Named, so it is Unnamed (six_char by default): desired_name is
    ignored and the name is the hash prefix 2551b2 (token preview_session)."""
    body = {"desired_name": "wanted", "session_token": None, "services": FRONT,
            "domains": EXAMPLE}
    r = wpost(worker, "/linkup/v2/sessions/preview", body)
    assert (r.status, r.text) == (200, '{"session_name":"2551b2"}')
    # name_kind absent = six_char, cache_routes and rewrites/routes optional.
    r = wpost(worker, "/linkup/v2/sessions/preview",
              {"services": [{"name": "frontend", "location": "http://example.com"}],
               "domains": [{"domain": "example.com", "default_service": "frontend"}]})
    assert r.status == 200 and re.fullmatch(r'\{"session_name":"[0-9a-f]{6}"\}', r.text)


def test_worker_unknown_fields_are_ignored_even_repeated(worker):
    """SPEC §2 "unknown fields are ignored on input" (serde): an unknown key
    may be repeated and hold any number; a repeated known field fits no shape
    that knows it, so a repeated desired_name leaves the Unnamed shape."""
    lists = ('"services":[{"name":"frontend","location":"http://example.com","x":1,"x":2}],'
             '"domains":[{"domain":"example.com","default_service":"frontend","y":[],"y":{}}]')
    body = ('{"desired_name":"dupok","session_token":"t","extra":1,"extra":2,'
            '"big":123456789012345678901234567890,' + lists + '}')
    r = wpost(worker, "/linkup/v2/sessions/preview", body)
    assert (r.status, r.text) == (200, '{"session_name":"dupok"}')
    body = '{"desired_name":"a","desired_name":"b","session_token":null,' + lists + '}'
    r = wpost(worker, "/linkup/v2/sessions/preview", body)
    assert (r.status, r.text) == (200, '{"session_name":"2551b2"}')
    body = '{"desired_name":"a","session_token":"t","session_token":"u",' + lists + '}'
    assert wpost(worker, "/linkup/v2/sessions/preview", body).status == 422


def test_worker_unknown_name_kind_is_422(worker):
    """SPEC §2.3: name_kind is "animal" or "six_char"; anything else fits no
    shape, a framework 422."""
    r = wpost(worker, "/linkup/v2/sessions/preview",
              {"name_kind": "bogus", "services": FRONT, "domains": EXAMPLE})
    assert r.status == 422
    assert r.text.startswith("Failed to deserialize the JSON body into the target type:")


@pytest.mark.parametrize("path", ["/linkup/v2/sessions/preview", "/linkup/v2/sessions/tunneled"])
def test_worker_empty_name_is_a_500_store_error(worker, path):
    """SPEC §2.5 strict_store_session, §4.3.6 step 4; for tunneled DESIGN
    §2.1 (only a name conflict is 409, other store errors 500)."""
    r = wpost(worker, path, named("", FRONT, EXAMPLE))
    assert (r.status, r.text) == (500, "Failed to store server config: Session name is empty")
    assert r.header("content-type") == "text/plain"
    assert r.header("cache-control") == "no-store"


@pytest.mark.parametrize("services,domains,detail", [
    ([], EXAMPLE, "empty config"),
    (FRONT, [], "empty config"),
    ([svc("frontend", "ftp://files.example.com")], EXAMPLE,
     "invalid url: ftp://files.example.com/"),
    ([svc("frontend", "mailto:a@example.com")], EXAMPLE, "invalid url: mailto:a@example.com"),
    # A non-special URL's host is opaque: its case is kept (WHATWG).
    ([svc("frontend", "git://Git.Example.com/Repo")], EXAMPLE,
     "invalid url: git://Git.Example.com/Repo"),
    # URLs are checked before service references (first failure wins).
    ([svc("frontend", "ftp://x")], [dom("example.com", "nope")], "invalid url: ftp://x/"),
    (FRONT, [dom("example.com", "web")], "no such service: web"),
    (FRONT, [dom("example.com", "frontend", [{"path": "^/a", "service": "api"}])],
     "no such service: api"),
])
def test_worker_session_validation_messages(worker, services, domains, detail):
    """SPEC §2.2 (checks in order, first failure wins), §4.3.6 step 1, §4.5."""
    for path in ("/linkup/v2/sessions/preview", "/linkup/v2/sessions/tunneled",
                 "/linkup/local-session", "/linkup/preview-session"):
        r = wpost(worker, path, named("val", services, domains))
        assert (r.status, r.text) == (400, f"Failed to parse server config: {detail} - Worker"), \
            path
        assert r.header("content-type") == "text/plain"
        assert r.header("cache-control") == "no-store"


@pytest.mark.parametrize("services,cache_routes", [
    ([svc("frontend", "http://")], None),
    ([svc("frontend", "not a url")], None),
    ([svc("frontend", "http://x.example.com", [{"source": "(", "target": "x"}])], None),
    (FRONT, ["("]),
])
def test_worker_bad_url_or_regex_is_a_json_rejection(worker, services, cache_routes):
    """SPEC §2.2: unparseable URLs and invalid regexes are JSON format errors,
    i.e. the framework's 422 of §4.3 (only the status is asserted, §11.19)."""
    body = named("bad", services, EXAMPLE)
    body["cache_routes"] = cache_routes
    assert wpost(worker, "/linkup/v2/sessions/preview", body).status == 422


def test_worker_localhost_is_compared_after_normalisation(worker):
    """SPEC §2 (hosts are lower-cased on input), §4.3.6 step 2, §4.3.7 step 4:
    `http://LocalHost:3000` is a localhost location."""
    body = named("lh", [svc("frontend", "http://LocalHost:3000/app")], EXAMPLE)
    r = wpost(worker, "/linkup/v2/sessions/preview", body)
    assert (r.status, r.text) == (400,
                                  "Preview session cannot contain services pointing to localhost")
    r = wpost(worker, "/linkup/v2/sessions/tunneled", body)
    assert r.status == 200
    # Re-pointed at the (unconnected) tunnel.
    r = wget(worker, "/page", [("Host", "lh.example.com")])
    assert (r.status, r.text) == (502, "Failed to fetch from target service: tunnel for session "
                                       "'lh' is not connected")


def test_worker_v1_local_session_stores_localhost_unchanged(worker):
    """SPEC §4.3.3: no tunnel is created by the v1 endpoint and locations are
    stored unchanged, so a localhost service is fetched at localhost."""
    up = lk.RecordingUpstream("127.0.0.1", body="on-localhost")
    try:
        port = up.addr[1]
        body = named("v1cow", [svc("frontend", f"http://localhost:{port}")], EXAMPLE)
        r = wpost(worker, "/linkup/local-session", body)
        assert (r.status, r.text) == (200, "v1cow")
        r = wget(worker, "/x", [("Host", "v1cow.example.com")])
        assert (r.status, r.text) == (200, "on-localhost")
        assert upstream_headers(up)["host"] == [f"localhost:{port}"]
    finally:
        up.close()


def test_worker_v1_local_session_unnamed_gets_an_animal_name(worker):
    """SPEC §4.3.3 step 2-3: Unnamed -> desired is empty -> animal name
    (§2.5: adjective-animal); the v1 answer is the bare name as text."""
    r = wpost(worker, "/linkup/local-session", {"services": FRONT, "domains": EXAMPLE})
    assert r.status == 200
    assert re.fullmatch(r"[a-z]+-[a-z]+", r.text)
    assert r.header("content-type") == "text/plain; charset=utf-8"


@pytest.mark.parametrize("version,status", [
    ("2.0.0-", 200),       # a pre-release (even empty) is the beta channel
    ("2.0.0-beta-1", 200),
    ("02.01.00", 200),     # plain unsigned integers
    ("2.1.0.0", 401),
    ("65536.0.0", 401),    # not a 16-bit number
    ("v2.1.0", 401),
    ("2..0", 401),
])
def test_worker_version_parsing_edges(worker, version, status):
    """SPEC §3.11 parsing and channel, §4.2 step 1."""
    r = wpost(worker, "/linkup/local-session", named("ver", FRONT, EXAMPLE),
              AUTH + JSON + [("x-linkup-version", version)])
    assert r.status == status, r.text
    if status == 401:
        assert r.text == "Invalid x-linkup-version header."


def test_worker_tunnel_query_field_rules(worker):
    """SPEC §4.3.5: session_name is a query field (form-decoded); a missing
    or duplicated field is the framework's 400 (serde rejects duplicates)."""
    r = wget(worker, "/linkup/tunnel?session_name=a&session_name=b", AUTH)
    assert r.status == 400
    assert r.text.startswith("Failed to deserialize query string:")
    r = wget(worker, "/linkup/tunnel?other=1", AUTH)
    assert r.status == 400
    r = wget(worker, "/linkup/tunnel?x=1&session_name=tiny+cow", AUTH)
    assert r.status == 200 and json.loads(r.body)["name"] == "linkup-tunnel-tiny cow"
    r = lk.request(worker.addrs["Worker"], "HEAD", "/linkup/tunnel?session_name=h", AUTH)
    assert (r.status, r.body) == (200, b"")
    assert r.header("content-type") == "application/json"


def test_worker_api_paths_are_exact_and_on_every_host(worker):
    """SPEC §4.2: the seven paths are intercepted on every host; any other
    path, /linkup/... included, is the unauthenticated proxy."""
    r = wget(worker, "/linkup/check", AUTH + [("Host", "anything.example.com")])
    assert (r.status, r.text) == (200, "OK")
    r = wget(worker, "/linkup/check?probe=1", AUTH)
    assert (r.status, r.text) == (200, "OK")
    for path in ("/linkup/check/", "/linkup/sessions", "/linkup/v2/sessions"):
        r = wget(worker, path)
        assert (r.status, r.text) == (422, WORKER_NO_SESSION), path
    r = lk.request(worker.addrs["Worker"], "HEAD", "/linkup/no-tunnel", AUTH)
    assert (r.status, r.body) == (422, b"")


def test_worker_405_lists_the_allowed_methods(worker):
    """SPEC §4.2: after authentication a wrong method is 405 with Allow."""
    for method in ("PUT", "DELETE", "OPTIONS", "PATCH"):
        r = lk.request(worker.addrs["Worker"], method, "/linkup/check", AUTH, body="")
        assert r.status == 405 and r.header("allow") == "GET,HEAD", method
    r = wget(worker, "/linkup/v2/sessions/preview", AUTH)
    assert r.status == 405 and r.header("allow") == "POST"


def make_worker_session(worker, name, services, domains):
    r = wpost(worker, "/linkup/v2/sessions/preview", named(name, services, domains))
    assert r.status == 200, r.text


def test_worker_header_map_last_visible_occurrence_wins(worker, upstream):
    """SPEC §3.1: a repeated header's last (visible ASCII) value is the one
    routing uses, §3.4 candidates in order."""
    make_worker_session(worker, "potato", [svc("frontend", upstream.url)], EXAMPLE)
    r = wget(worker, "/x", [("Host", "example.com"),
                            ("x-forwarded-host", "potato.example.com"),
                            ("x-forwarded-host", "nobody.example.com")])
    assert (r.status, r.text) == (422, WORKER_NO_SESSION)
    r = wget(worker, "/x", [("Host", "example.com"),
                            ("x-forwarded-host", "nobody.example.com"),
                            ("x-forwarded-host", "potato.example.com")])
    assert (r.status, r.text) == (200, "under_fe")


def test_worker_sentinel_is_looked_up_like_a_name(worker, upstream):
    """SPEC §3.2/§3.4: a host of two labels gives the sentinel DOES-NOT-EXIST,
    which is looked up like any other name (§2.5: names have no syntax)."""
    make_worker_session(worker, "DOES-NOT-EXIST", [svc("frontend", upstream.url)], EXAMPLE)
    r = wget(worker, "/x", [("Host", "example.com")])
    assert (r.status, r.text) == (200, "under_fe")


def test_worker_rewrite_templates_replace_every_match(worker, upstream):
    """SPEC §1.3 template dialect ($1a is group "1a", ${2}, $$), §3.5 step 6
    (all non-overlapping matches of the path; the query is untouched)."""
    make_worker_session(
        worker, "rw",
        [svc("frontend", upstream.url, [{"source": "/(a)(b)", "target": "/$1a-${2}x-$$"}])],
        EXAMPLE)
    r = wget(worker, "/ab/ab?q=/ab", [("Host", "rw.example.com")])
    assert r.status == 200
    assert upstream.requests[-1][1] == "/-bx-$/-bx-$?q=/ab"


def test_worker_unknown_destination_falls_back_to_routes(worker, upstream):
    """SPEC §3.5 step 2: a linkup-destination naming no service of the
    session is ignored (routes apply); §3.7: the header is kept as sent."""
    make_worker_session(worker, "dest", [svc("frontend", upstream.url)], EXAMPLE)
    r = wget(worker, "/x", [("Host", "dest.example.com"), ("linkup-destination", "nope")])
    assert (r.status, r.text) == (200, "under_fe")
    assert upstream_headers(upstream)["linkup-destination"] == ["nope"]


def test_worker_tracestate_entry_is_matched_exactly(worker, upstream):
    """DESIGN §2.3 (fixes the SPEC §3.7 substring quirk): an entry
    linkup-session=dest2 does not stop linkup-session=dest being added."""
    make_worker_session(worker, "dest", [svc("frontend", upstream.url)], EXAMPLE)
    wget(worker, "/x", [("Host", "dest.example.com"), ("tracestate", "linkup-session=dest2")])
    assert upstream_headers(upstream)["tracestate"] == [
        "linkup-session=dest2,linkup-session=dest"]
    wget(worker, "/x", [("Host", "dest.example.com"), ("tracestate", "a=1,linkup-session=dest")])
    assert upstream_headers(upstream)["tracestate"] == ["a=1,linkup-session=dest"]


# ==== local server ============================================================

def test_server_tunneled_forwards_before_validating(server, fake_worker, upstream):
    """SPEC §5.2 POST /linkup/sessions/tunneled: step 1 forwards to the
    worker, step 2 builds the session; a session the worker accepted but
    that fails validation here is 400 `... - local server`."""
    addr = server.addrs["HTTP"]
    bad = named("bad", [svc("frontend", upstream.url)], [dom("example.com", "nope")])
    r = lk.post_json(addr, "/linkup/sessions/tunneled", bad)
    assert (r.status, r.text) == (
        400, "Failed to parse server config: no such service: nope - local server")
    assert r.header("content-type") == "text/plain"
    assert [c[0] for c in fake_worker.calls] == ["/linkup/v2/sessions/tunneled"]
    assert lk.request(addr, "GET", "/linkup/sessions").json() == {"sessions": {}}
    assert lk.request(addr, "GET", "/linkup/dns").json() == {"domains": []}


def test_server_tunneled_invalid_session_through_real_worker(linkup_bin, env, tmp_path):
    """SPEC §5.2 step 1 with a real worker: the worker's 400 comes back as
    500 `Failed to request to Worker: request failed with status 400 Bad
    Request: {worker body}`."""
    w = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "w.log"), token=TOKEN)
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", w.url("Worker"), "--worker-token",
                              TOKEN, log_path=str(tmp_path / "s.log"))
    try:
        r = lk.post_json(s.addrs["HTTP"], "/linkup/sessions/tunneled",
                         named("empty", [], EXAMPLE))
        assert (r.status, r.text) == (
            500, "Failed to request to Worker: request failed with status 400 Bad Request: "
                 "Failed to parse server config: empty config - Worker")
        assert r.header("content-type") == "text/plain"
    finally:
        assert lk.stop_gracefully(s)[0] == 0
        assert w.stop() == 0


@pytest.mark.parametrize("status,reason", [(400, "Bad Request"), (413, "Payload Too Large"),
                                           (422, "Unprocessable Entity"),
                                           (503, "Service Unavailable")])
def test_server_worker_error_reason_phrases(linkup_bin, env, tmp_path, upstream, status, reason):
    """SPEC §5.2 step 1: `request failed with status {code} {reason}: {body}`
    with the canonical reason phrases of the original (Rust http crate)."""
    fw = lk.FakeWorker("127.0.0.3", mode=status, body="nope")
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", fw.url, "--worker-token", TOKEN,
                              log_path=str(tmp_path / "s.log"))
    try:
        r = lk.post_json(s.addrs["HTTP"], "/linkup/sessions/tunneled",
                         named("r", [svc("frontend", upstream.url)], EXAMPLE))
        assert (r.status, r.text) == (
            500, f"Failed to request to Worker: request failed with status {status} {reason}: nope")
        # Preview passes the worker's status and body through.
        r = lk.post_json(s.addrs["HTTP"], "/linkup/sessions/preview",
                         named("r", [svc("frontend", upstream.url)], EXAMPLE))
        assert (r.status, r.text) == (status, "nope")
    finally:
        assert lk.stop_gracefully(s)[0] == 0
        fw.close()


def test_server_worker_answer_without_a_name_is_500(linkup_bin, env, tmp_path, upstream):
    """SPEC §5.2: a worker answer that does not parse is a transport/parse
    error: 500 `Failed to request to Worker: {e}`; nothing is stored."""
    bad = lk.ScriptedUpstream(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 2\r\nConnection: close\r\n\r\n{}", "127.0.0.3")
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", bad.url + "/", "--worker-token",
                              TOKEN, log_path=str(tmp_path / "s.log"))
    try:
        addr = s.addrs["HTTP"]
        body = named("x", [svc("frontend", upstream.url)], EXAMPLE)
        for path in ("/linkup/sessions/tunneled", "/linkup/sessions/preview"):
            r = lk.post_json(addr, path, body)
            assert r.status == 500, path
            assert r.text.startswith("Failed to request to Worker: "), r.text
        assert lk.request(addr, "GET", "/linkup/sessions").json() == {"sessions": {}}
    finally:
        assert lk.stop_gracefully(s)[0] == 0
        bad.close()


def test_server_unnamed_tunneled_takes_the_worker_name(server, fake_worker, upstream):
    """SPEC §5.2 steps 3-5: the session is stored locally under the name the
    worker chose, DNS names follow it, the answer is the worker's JSON."""
    addr = server.addrs["HTTP"]
    body = {"name_kind": "animal", "session_token": "t",
            "services": [svc("frontend", upstream.url)], "domains": EXAMPLE}
    r = lk.post_json(addr, "/linkup/sessions/tunneled", body)
    assert r.status == 200
    assert r.json()["session_name"] == "fake-name"
    assert fake_worker.calls[-1][2]["name_kind"] == "animal"
    assert list(lk.request(addr, "GET", "/linkup/sessions").json()["sessions"]) == ["fake-name"]
    assert lk.request(addr, "GET", "/linkup/dns").json() == {"domains": ["fake-name.example.com"]}


def test_server_session_name_in_path_is_percent_decoded(server):
    """SPEC §5.2 GET/DELETE /linkup/sessions/{name}: the path parameter is
    percent-decoded; unknown -> 404 `Session '{name}' not found`."""
    addr = server.addrs["HTTP"]
    for method in ("GET", "DELETE"):
        r = lk.request(addr, method, "/linkup/sessions/no%20such")
        assert (r.status, r.text) == (404, "Session 'no such' not found"), method
        assert r.header("content-type") == "text/plain"


def test_server_other_linkup_paths_are_proxied(server, upstream):
    """SPEC §5.2 "anything else -> proxy (§5.3)": /linkup/... paths that are
    not admin routes (trailing slash, deeper paths) are routed like any
    request."""
    addr = server.addrs["HTTP"]
    for path in ("/linkup/sessions/", "/linkup/sessions/a/b", "/linkup/whatever"):
        r = lk.request(addr, "GET", path)
        assert (r.status, r.text) == (422, SERVER_NO_SESSION), path
    r = lk.post_json(addr, "/linkup/sessions/tunneled",
                     named("lp", [svc("frontend", upstream.url)], EXAMPLE))
    assert r.status == 200
    r = lk.request(addr, "GET", "/linkup/whatever?x=1", [("Host", "lp.example.com")])
    assert (r.status, r.text) == (200, "under_fe")
    assert upstream.requests[-1][1] == "/linkup/whatever?x=1"


def test_server_admin_answers_on_any_host(server, upstream):
    """SPEC §5.1/§5.2: the admin routes win whatever the Host header, even a
    session's host."""
    addr = server.addrs["HTTP"]
    lk.post_json(addr, "/linkup/sessions/tunneled",
                 named("anyhost", [svc("frontend", upstream.url)], EXAMPLE))
    n = len(upstream.requests)
    r = lk.request(addr, "GET", "/linkup/check", [("Host", "anyhost.example.com")])
    assert (r.status, r.text) == (200, "OK")
    r = lk.request(addr, "HEAD", "/linkup/check")
    assert (r.status, r.body) == (200, b"")
    r = lk.request(addr, "GET", "/linkup/dns", [("Host", "anyhost.example.com")])
    assert r.json() == {"domains": ["anyhost.example.com"]}
    assert len(upstream.requests) == n


def test_server_405_allow(server):
    """SPEC §5.2: wrong methods on admin routes are 405 with Allow."""
    addr = server.addrs["HTTP"]
    cases = [("PUT", "/linkup/sessions/x", "DELETE"), ("POST", "/linkup/dns", "GET"),
             ("DELETE", "/linkup/sessions", "GET"), ("GET", "/linkup/sessions/tunneled", "POST"),
             ("PUT", "/linkup/check", "GET")]
    for method, path, allowed in cases:
        r = lk.request(addr, method, path, body="" if method != "GET" else None)
        assert r.status == 405, (method, path)
        assert allowed in r.header("allow"), (method, path)


def test_server_request_url_without_host_is_localhost(server, upstream):
    """SPEC §5.3 step 1: no Host (HTTP/1.0) -> http://localhost{target}; a
    session from tracestate, but no domain matches -> 404."""
    addr = server.addrs["HTTP"]
    lk.post_json(addr, "/linkup/sessions/tunneled",
                 named("nohost", [svc("frontend", upstream.url)], EXAMPLE))
    data, _ = lk.raw_exchange(addr, b"GET /x HTTP/1.0\r\ntracestate: linkup-session=nohost\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 404"), data
    data, _ = lk.raw_exchange(addr, b"GET /x HTTP/1.0\r\ntracestate: linkup-session=nohost\r\n"
                                    b"Referer: http://example.com/\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"under_fe"), data


def test_server_header_map_last_occurrence_wins(server, upstream):
    """SPEC §3.1 on the local server: the last Referer is the one used."""
    addr = server.addrs["HTTP"]
    lk.post_json(addr, "/linkup/sessions/tunneled",
                 named("last", [svc("frontend", upstream.url)], EXAMPLE))
    r = lk.request(addr, "GET", "/", [("Host", "example.com"),
                                      ("Referer", "http://last.example.com/"),
                                      ("Referer", "http://other.example.com/")])
    assert (r.status, r.text) == (422, SERVER_NO_SESSION)
    r = lk.request(addr, "GET", "/", [("Host", "example.com"),
                                      ("Referer", "http://other.example.com/"),
                                      ("Referer", "http://last.example.com/")])
    assert (r.status, r.text) == (200, "under_fe")


def ws_handshake(addr, host, path="/ws"):
    sock = socket.create_connection(addr, timeout=10)
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    return sock


def test_server_websocket_connect_failure_is_a_bare_502(server):
    """SPEC §5.4 step 3, §5.7: a WebSocket upstream that cannot be reached
    (no HTTP answer) is 502 with the error text as the whole body and no
    Content-Type; plain HTTP to it keeps the `Failed to proxy request` text."""
    addr = server.addrs["HTTP"]
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        dead = s.getsockname()[1]
    r = lk.post_json(addr, "/linkup/sessions/tunneled",
                     named("deadws", [svc("frontend", f"http://127.0.0.2:{dead}")], EXAMPLE))
    assert r.status == 200
    with ws_handshake(addr, "deadws.example.com") as sock:
        sock.settimeout(10)
        data = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
            resp = lk.parse_responses(data)
            if resp:
                break
    resp = lk.parse_responses(data)[0]
    assert resp.status == 502
    assert resp.header("content-type") is None
    assert resp.body and not resp.body.startswith(b"Failed to proxy request")
    assert resp.header(CORS_ORIGIN) is None
    r = lk.request(addr, "GET", "/", [("Host", "deadws.example.com")])
    assert r.status == 502
    assert r.text.startswith("Failed to proxy request - are all your servers started? ")
    assert r.header("content-type") == "text/plain"


@pytest.mark.parametrize("location,stored", [
    ("http://localhost:8000", "http://localhost:8000/"),
    ("HTTP://Example.COM:80/a/../b", "http://example.com/b"),
    ("https://x.example.com:443", "https://x.example.com/"),
    ("http://x.example.com/a b?q=a b", "http://x.example.com/a%20b?q=a%20b"),
    ("http://ex%41mple.com/", "http://example.com/"),
    ("http://127.1:3000", "http://127.0.0.1:3000/"),
    ("http://0x7f.0.0.1/", "http://127.0.0.1/"),
    ("http://[::FFFF:127.0.0.1]/", "http://[::ffff:7f00:1]/"),
])
def test_server_locations_are_whatwg_normalised(server, location, stored):
    """SPEC §2: locations are WHATWG-URL normalised on input and serialised
    back normalised (lower-case scheme and host, percent-decoded domain,
    IPv4 numbers, default port dropped, empty path `/`)."""
    addr = server.addrs["HTTP"]
    r = lk.post_json(addr, "/linkup/sessions/tunneled",
                     named("norm", [svc("frontend", location)], EXAMPLE))
    assert r.status == 200, r.text
    got = lk.request(addr, "GET", "/linkup/sessions/norm").json()
    assert got["services"][0]["location"] == stored


# ==== SPEC §8.1 core vectors, black-box, through both fronts ==================
#
# Fixture CONF-A of SPEC §8 with its three services on three recording
# upstreams (frontend, backend, other-frontend), stored under one session
# name on the worker (v2 preview) or on the local server (tunneled upsert
# via the fake worker). Each vector is the SPEC's; only the locations differ.

CONF_A_NAME = "tiny-cow"


class ConfA:
    def __init__(self, kind, front, ups):
        self.kind = kind
        self.addr = front.addrs["Worker" if kind == "worker" else "HTTP"]
        self.ups = ups  # {"frontend": RecordingUpstream, ...}

    def get(self, target, headers):
        """GET target; returns (status, service name or None, path+query the
        service received, its headers as {lower name: [values]})."""
        for u in self.ups.values():
            u.requests.clear()
        r = lk.request(self.addr, "GET", target, headers)
        hit = [(n, u) for n, u in self.ups.items() if u.requests]
        assert len(hit) <= 1, hit
        if not hit:
            return r.status, None, None, {}
        name, up = hit[0]
        return r.status, name, up.requests[-1][1], upstream_headers(up)


def conf_a_body(ups):
    return named(CONF_A_NAME, [
        svc("frontend", ups["frontend"].url, [{"source": "/foo/(.*)", "target": "/bar/$1"}]),
        svc("other-frontend", ups["other-frontend"].url),
        svc("backend", ups["backend"].url + "/", [{"source": "/api/v2/(.*)", "target": "/$1"}]),
    ], [
        dom("example.com", "frontend", [{"path": "/api/v1/.*", "service": "backend"},
                                        {"path": "/api/v2/.*", "service": "backend"}]),
        dom("api.example.com", "backend"),
        dom("other-example.com", "other-frontend"),
    ], token="abcxyz")


@pytest.fixture(params=["worker", "server"])
def conf_a(request, linkup_bin, env, tmp_path):
    ups = {n: lk.RecordingUpstream("127.0.0.2", body=n)
           for n in ("frontend", "backend", "other-frontend")}
    fw = None
    if request.param == "worker":
        front = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "worker.log"),
                                       token=TOKEN)
        r = wpost(front, "/linkup/v2/sessions/preview", conf_a_body(ups))
    else:
        fw = lk.FakeWorker("127.0.0.3")
        front = lk.spawn_local_server(linkup_bin, env, "--worker-url", fw.url, "--worker-token",
                                      TOKEN, log_path=str(tmp_path / "server.log"))
        r = lk.post_json(front.addrs["HTTP"], "/linkup/sessions/tunneled", conf_a_body(ups))
    try:
        assert r.status == 200, r.text
        assert json.loads(r.body)["session_name"] == CONF_A_NAME
        yield ConfA(request.param, front, ups)
    finally:
        code = front.stop()
        for u in ups.values():
            u.close()
        if fw is not None:
            fw.close()
    assert code == 0


def test_8_1_1_session_by_subdomain_referer_origin_tracestate(conf_a):
    """SPEC §8.1.1 get_request_session_by_subdomain (§3.4)."""
    n = CONF_A_NAME
    cases = [
        [("Host", f"{n}.example.com")],
        [("Host", "example.com"), ("referer", f"http://{n}.example.com")],
        [("Host", "example.com"), ("origin", f"http://{n}.example.com")],
        [("Host", "example.com"), ("tracestate", f"some-other=xyz,linkup-session={n}")],
        [("Host", "example.com"), ("tracestate", f"linkup-session={n}")],
    ]
    for headers in cases:
        status, service, _, _ = conf_a.get("/", headers)
        assert (status, service) == (200, "frontend"), headers
    # Without any of them there is no session.
    status, service, _, _ = conf_a.get("/", [("Host", "example.com")])
    assert (status, service) == (422, None)


def test_8_1_2_additional_headers(conf_a):
    """SPEC §8.1.2 get_additional_headers (§3.7), cases (a), (c) and (d);
    (b) is the tunnel hop of test_8_1_5."""
    n = CONF_A_NAME
    host = [("Host", f"{n}.example.com")]
    # (a) nothing incoming: all four added.
    _, service, _, h = conf_a.get("/abc-xyz", host)
    assert service == "frontend"
    assert len(h["traceparent"]) == 1 and re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-00",
                                                       h["traceparent"][0])
    assert h["tracestate"] == [f"linkup-session={n}"]
    assert h["x-forwarded-host"] == [f"{n}.example.com"]
    assert h["linkup-destination"] == ["frontend"]
    # (c) traceparent, another tracestate entry and x-forwarded-host incoming.
    _, _, _, h = conf_a.get("/abc-xyz", host + [("traceparent", "anything"),
                                                ("tracestate", "other-service=32"),
                                                ("x-forwarded-host", f"{n}.example.com")])
    assert h["traceparent"] == ["anything"]
    assert h["tracestate"] == [f"other-service=32,linkup-session={n}"]
    assert h["x-forwarded-host"] == [f"{n}.example.com"]
    assert h["linkup-destination"] == ["frontend"]
    # (d) only x-forwarded-host incoming.
    _, _, _, h = conf_a.get("/abc-xyz", host + [("x-forwarded-host", f"{n}.example.com")])
    assert len(h["traceparent"][0]) == 55
    assert h["tracestate"] == [f"linkup-session={n}"]
    assert h["x-forwarded-host"] == [f"{n}.example.com"]
    # (b) all four present: none added or changed.
    sent = [("traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-00"),
            ("tracestate", f"linkup-session={n}"), ("linkup-destination", "frontend"),
            ("x-forwarded-host", f"{n}.example.com")]
    _, service, _, h = conf_a.get("/abc-xyz", [("Host", "abc.some-tunnel.com")] + sent)
    assert service == "frontend"
    for k, v in sent:
        assert h[k] == [v], k


def test_baggage_names_the_session_and_goes_out_with_tracestate(conf_a):
    """DESIGN §7: W3C baggage is accepted (the "linkup-session" member, after
    every SPEC §3.4 candidate, percent-decoded, properties dropped) and
    emitted whenever tracestate is: added, appended to an existing list, or
    left alone when it already names the session."""
    n = CONF_A_NAME
    # Accepted: no host, referer, origin or tracestate names the session.
    status, service, _, h = conf_a.get("/", [("Host", "example.com"),
                                             ("baggage", f"userId=alice, linkup-session = "
                                                         f"{n.replace('-', '%2D')};ttl=1")])
    assert (status, service) == (200, "frontend")
    assert h["tracestate"] == [f"linkup-session={n}"]
    assert h["baggage"] == [f"userId=alice, linkup-session = {n.replace('-', '%2D')};ttl=1"]
    # A member for an unknown session, or none at all, is no session.
    for bg in ("linkup-session=nobody", "userId=alice", "linkup-session=%zz"):
        status, _, _, _ = conf_a.get("/", [("Host", "example.com"), ("baggage", bg)])
        assert status == 422, bg
    # Emitted next to tracestate.
    host = [("Host", f"{n}.example.com")]
    _, _, _, h = conf_a.get("/", host)
    assert h["baggage"] == [f"linkup-session={n}"]
    _, _, _, h = conf_a.get("/", host + [("baggage", "userId=alice,isProduction=false")])
    assert h["baggage"] == [f"userId=alice,isProduction=false,linkup-session={n}"]
    # Nothing added when tracestate already carries the session (SPEC §8.1.2 (b)).
    _, _, _, h = conf_a.get("/", host + [("tracestate", f"linkup-session={n}")])
    assert "baggage" not in h
    _, _, _, h = conf_a.get("/", host + [("tracestate", f"linkup-session={n}"),
                                         ("baggage", "k=v")])
    assert h["baggage"] == ["k=v"]


@pytest.mark.parametrize("target,headers,service,path", [
    ("/?a=b", [("Host", "tiny-cow.example.com")], "frontend", "/?a=b"),
    ("/a/b/c/?a=b", [("Host", "tiny-cow.example.com")], "frontend", "/a/b/c/?a=b"),
    ("/foo/b/c/?a=b", [("Host", "tiny-cow.example.com")], "frontend", "/bar/b/c/?a=b"),
    ("/api/v1/?a=b", [("Host", "tiny-cow.example.com")], "backend", "/api/v1/?a=b"),
    ("/api/v1/?a=b", [("Host", "api.example.com"), ("referer", "http://tiny-cow.example.com/")],
     "backend", "/api/v1/?a=b"),
])
def test_8_1_4_target_url(conf_a, target, headers, service, path):
    """SPEC §8.1.4 get_target_url (§3.5, §3.6)."""
    status, got_service, got_path, _ = conf_a.get(target, headers)
    assert (status, got_service, got_path) == (200, service, path)


def test_8_1_5_rewritten_routes_are_repeatable(conf_a):
    """SPEC §8.1.5 repeatable_rewritten_routes: the rewrite happens once; the
    headers the first hop added make a second hop (a tunnel: another host,
    the rewritten path) pick the same service without rewriting again."""
    n = CONF_A_NAME
    status, service, path, h = conf_a.get("/api/v2/user", [("Host", "example.com"),
                                                           ("tracestate", f"linkup-session={n}")])
    assert (status, service, path) == (200, "backend", "/user")
    assert h["linkup-destination"] == ["backend"]
    assert h["x-forwarded-host"] == [f"{n}.example.com"]
    again = [(k, h[k][0]) for k in ("traceparent", "tracestate", "linkup-destination",
                                    "x-forwarded-host")]
    status, service, path, h2 = conf_a.get("/user", [("Host", "localhost")] + again)
    assert (status, service, path) == (200, "backend", "/user")
    for k, v in again:
        assert h2[k] == [v], k
    # The black-box form of SPEC §8.1.5.
    status, service, path, _ = conf_a.get("/user", [("Host", "localhost"),
                                                    ("linkup-destination", "backend"),
                                                    ("x-forwarded-host", f"{n}.example.com")])
    assert (status, service, path) == (200, "backend", "/user")


def test_8_1_6_iframable(conf_a):
    """SPEC §8.1.6 iframable: a page of other-example.com framed by the
    session's example.com page is found through the referer."""
    status, service, path, h = conf_a.get(
        "/", [("Host", "other-example.com"), ("referer", f"https://{CONF_A_NAME}.example.com/")])
    assert (status, service, path) == (200, "other-frontend", "/")
    assert h["x-forwarded-host"] == [f"{CONF_A_NAME}.other-example.com"]


def test_8_1_7_conf_b_round_trips_through_the_local_server(server):
    """SPEC §8.1.7 convert_session: CONF-B parses, validates and serialises
    back normalised (§2.1: locations with a trailing slash, absent rewrites
    and routes as null, regexes as their source text)."""
    addr = server.addrs["HTTP"]
    conf_b = {
        "desired_name": "conf-b", "session_token": "abcxyz",
        "services": [
            {"name": "frontend", "location": "http://localhost:8000",
             "rewrites": [{"source": "/foo/(.*)", "target": "/bar/$1"}]},
            {"name": "backend", "location": "http://localhost:8001/"},
        ],
        "domains": [
            {"domain": "example.com", "default_service": "frontend",
             "routes": [{"path": "/api/v1/.*", "service": "backend"}]},
            {"domain": "api.example.com", "default_service": "backend"},
        ],
        "cache_routes": ["/static/.*"],
    }
    r = lk.post_json(addr, "/linkup/sessions/tunneled", conf_b)
    assert r.status == 200, r.text
    services = ('[{"name":"frontend","location":"http://localhost:8000/","rewrites":'
                '[{"source":"/foo/(.*)","target":"/bar/$1"}]},'
                '{"name":"backend","location":"http://localhost:8001/","rewrites":null}]')
    domains = ('[{"domain":"example.com","default_service":"frontend","routes":'
               '[{"path":"/api/v1/.*","service":"backend"}]},'
               '{"domain":"api.example.com","default_service":"backend","routes":null}]')
    r = lk.request(addr, "GET", "/linkup/sessions/conf-b")
    assert (r.status, r.text) == (
        200, '{"session_kind":"tunneled","session_name":"conf-b","services":' + services
        + ',"domains":' + domains + '}')
    r = lk.request(addr, "GET", "/linkup/sessions")
    assert (r.status, r.text) == (
        200, '{"sessions":{"conf-b":{"kind":"tunneled","session_token":"abcxyz","services":'
        + services + ',"domains":' + domains + ',"cache_routes":["/static/.*"]}}}')


def test_8_1_10_cookie_normalisation(conf_a):
    """SPEC §8.1.10 (§3.8): two Cookie headers become one; one header with
    `; ` is unchanged; one with `, ` is re-joined with `; `."""
    host = [("Host", f"{CONF_A_NAME}.example.com")]
    for cookies, want in [([("Cookie", "a=b"), ("Cookie", "c=d")], ["a=b; c=d"]),
                          ([("Cookie", "a=b; c=d")], ["a=b; c=d"]),
                          ([("Cookie", "a=b, c=d")], ["a=b; c=d"])]:
        _, _, _, h = conf_a.get("/", host + cookies)
        assert h["cookie"] == want, cookies


@pytest.mark.parametrize("host,found", [
    ("localhost:8787", False),        # §9: http://localhost:8787/anypath -> sentinel
    ("a.b", False),                   # §9: a.b -> sentinel
    ("tiny-cow.b.c", True),           # §9: a.b.c -> a
])
def test_9_first_subdomain_vectors(conf_a, host, found):
    """SPEC §9 first_subdomain vectors, seen through session extraction."""
    status, _, _, _ = conf_a.get("/anypath", [("Host", host)])
    # tiny-cow.b.c has a session but no configured domain b.c: 404, not 422.
    assert status == (404 if found else 422)


def test_8_1_1_session_by_x_forwarded_host(conf_a):
    """SPEC §3.4 step 2 (the candidate after the URL in §8.1.1's list), §3.5
    step 3b: x-forwarded-host alone names the session and its domain picks
    the service, with or without a port (DESIGN §2.4)."""
    n = CONF_A_NAME
    for xfh, service in [(f"{n}.example.com", "frontend"), (f"{n}.example.com:8443", "frontend"),
                         (f"{n}.api.example.com", "backend"),
                         (f"{n}.other-example.com", "other-frontend")]:
        status, got, path, h = conf_a.get("/x?y=1", [("Host", "localhost"),
                                                     ("x-forwarded-host", xfh)])
        assert (status, got, path) == (200, service, "/x?y=1"), xfh
        assert h["x-forwarded-host"] == [xfh]
        assert h["tracestate"] == [f"linkup-session={n}"]


def test_9_tracestate_key_and_value_are_trimmed(conf_a):
    """SPEC §9: `tracestate: a=1, linkup-session = tiny-cow ,b=2` names the
    session tiny-cow (§3.4 step 5, key and value trimmed)."""
    status, service, path, _ = conf_a.get(
        "/?a=b", [("Host", "example.com"), ("tracestate", "a=1, linkup-session = tiny-cow ,b=2")])
    assert (status, service, path) == (200, "frontend", "/?a=b")
    # The first linkup-session entry counts, even when a later one names a session.
    two = "linkup-session=nobody,linkup-session=tiny-cow"
    status, _, _, _ = conf_a.get("/", [("Host", "example.com"), ("tracestate", two)])
    assert status == 422


def test_8_1_8_and_9_hash_names_through_the_local_server(linkup_bin, env, tmp_path):
    """SPEC §8.1.8 and §9 through the local server's POST
    /linkup/sessions/preview (§5.2: the re-serialised request is forwarded to
    the worker's v2 preview): the services' order does not change the
    six-char name 45201d, the §9 session hashes to 2551b2, and nothing is
    stored locally."""
    w = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "w.log"), token=TOKEN)
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", w.url("Worker"), "--worker-token",
                              TOKEN, log_path=str(tmp_path / "s.log"))
    try:
        addr = s.addrs["HTTP"]
        services = [svc("frontend", "https://frontend.example.com"),
                    svc("backend", "https://backend.example.com")]
        doms = [dom("example.com", "frontend", [{"path": "^/api(?:/|$)", "service": "backend"}])]
        for order in (services, services[::-1]):
            r = lk.post_json(addr, "/linkup/sessions/preview",
                             {"name_kind": "six_char", "session_token": None, "services": order,
                              "domains": doms, "cache_routes": None})
            assert (r.status, r.text) == (200, '{"session_name":"45201d"}')
            assert r.header("content-type") == "application/json"
        r = lk.post_json(addr, "/linkup/sessions/preview",
                         {"name_kind": "six_char", "session_token": None, "services": FRONT,
                          "domains": EXAMPLE, "cache_routes": None})
        assert (r.status, r.text) == (200, '{"session_name":"2551b2"}')
        assert lk.request(addr, "GET", "/linkup/sessions").text == '{"sessions":{}}'
        assert lk.request(addr, "GET", "/linkup/dns").json() == {"domains": []}
    finally:
        assert lk.stop_gracefully(s)[0] == 0
        assert w.stop() == 0


def test_8_4_websocket_with_a_library_client_and_server_direct_and_through_the_tunnel(
        linkup_bin, env, tmp_path):
    """SPEC §8.4.1 as a tester would write it with a WebSocket library on both
    ends (which negotiates permessage-deflate, so compressed frames carry
    RSV1), against the local server and along SPEC §0.2 step 4: worker ->
    built-in tunnel -> local server -> the service at localhost."""
    try:
        import asyncio
        from websockets.legacy.client import connect
        from websockets.legacy.server import serve
    except ImportError:
        pytest.skip("python3-websockets is not installed")
    w = lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / "w.log"), token=TOKEN)
    s = lk.spawn_local_server(linkup_bin, env, "--worker-url", w.url("Worker"), "--worker-token",
                              TOKEN, log_path=str(tmp_path / "s.log"))

    async def scenario():
        async def echo(ws, *_):
            async for m in ws:
                await ws.send(m)

        up = await serve(echo, "127.0.0.1", 0,
                         extra_headers={"my-special-header": "special-value"})
        port = up.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        body = named("ws-session", [svc("frontend", f"http://localhost:{port}")], EXAMPLE)
        r = await loop.run_in_executor(None, lk.post_json, s.addrs["HTTP"],
                                       "/linkup/sessions/tunneled", body)
        assert r.status == 200, r.text
        for _ in range(100):
            t = await loop.run_in_executor(None, lk.request, s.addrs["HTTP"], "GET",
                                           "/linkup/tunnel")
            if t.json()["connected"]:
                break
            await asyncio.sleep(0.1)
        headers = {"referer": "example.com", "traceparent": "xzyabc",
                   "tracestate": "linkup-session=ws-session"}
        for front in (s.addrs["HTTP"], w.addrs["Worker"]):
            async with connect(f"ws://{front[0]}:{front[1]}/ws", extra_headers=headers,
                               open_timeout=10, close_timeout=5) as ws:
                assert ws.response_headers["my-special-header"] == "special-value"
                assert ws.response_headers["access-control-allow-origin"] == "*"
                assert "permessage-deflate" in ws.response_headers["sec-websocket-extensions"]
                for msg in ("Hello, WebSocket!", "x" * 70000, bytes(range(256)) * 40):
                    await ws.send(msg)
                    assert await asyncio.wait_for(ws.recv(), 10) == msg
                await ws.close()
                assert ws.close_code == 1000
        up.close()
        await up.wait_closed()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        assert lk.stop_gracefully(s)[0] == 0
        assert w.stop() == 0
