"""Two workers sharing one store (SQLite file or Redis, DESIGN §3) and many
clients racing for one new session name with different tokens (SPEC §2.5,
DESIGN §2.1): exactly one is told the name is theirs, and the stored session
is that one's. The check and the write are one atomic step of the store
(`put_if`), not a read followed by a write."""
import json
import shutil
import threading

import pytest

import lk
from test_faults import _start_redis

CLIENTS = 8
ROUNDS = 20


def _upsert(addr, path, name, token):
    body = lk.session_body(name, {"frontend": "http://127.0.0.1:9"},
                           [("example.com", "frontend", None)], token)
    headers = [("Authorization", "Bearer token123"), ("Content-Type", "application/json"),
               ("x-linkup-version", "99.0.0")]
    return lk.request(addr, "POST", path, headers, json.dumps(body), timeout=20)


def _race(workers, path, name):
    """CLIENTS threads, alternating between the workers, upsert name with
    tokens tok0..; returns {token index: (status, body)}."""
    results = {}
    go = threading.Barrier(CLIENTS)

    def client(i):
        go.wait(10)
        r = _upsert(workers[i % len(workers)].addrs["Worker"], path, name, f"tok{i}")
        results[i] = (r.status, r.text)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
@pytest.mark.parametrize("path", ["/linkup/v2/sessions/preview", "/linkup/v2/sessions/tunneled"])
def test_one_winner_per_name_across_workers(linkup_bin, env, tmp_path, kind, path):
    redis = None
    if kind == "redis":
        if not shutil.which("redis-server"):
            pytest.skip("redis-server is not installed")
        port = lk.free_port()
        redis = _start_redis(port)
        store = f"redis://127.0.0.1:{port}/2"
    else:
        store = f"sqlite:{tmp_path / 'shared.db'}"
    workers = [lk.spawn_worker_logged(linkup_bin, env, str(tmp_path / f"w{i}.log"), store=store)
               for i in range(2)]
    try:
        for round_ in range(ROUNDS):
            name = f"race-{round_}"
            results = _race(workers, path, name)
            assert len(results) == CLIENTS, results
            won = [i for i, (status, _) in results.items() if status == 200]
            lost = [i for i, (status, _) in results.items() if status != 200]
            assert len(won) == 1, (round_, results)
            assert all(results[i] == (409, "Conflict") for i in lost), (round_, results)
            # The winner's session is the stored one: its token may upsert again,
            # any other gets 409.
            assert _upsert(workers[0].addrs["Worker"], path, name, f"tok{won[0]}").status == 200
            assert _upsert(workers[1].addrs["Worker"], path, name, f"tok{lost[0]}").status == 409
    finally:
        for w in workers:
            assert lk.stop_gracefully(w)[0] == 0, open(w.log_path).read()[-2000:]
        if redis is not None:
            redis.terminate()
            redis.wait(10)
