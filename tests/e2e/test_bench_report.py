"""bench/report.py: a results directory rendered as markdown, and runs whose
wrk latency figures cannot be right left out of the latency medians."""
import pathlib
import subprocess
import sys

REPORT = pathlib.Path(__file__).resolve().parents[2] / "bench" / "report.py"
HEAD = ("rep\tworkload\ttarget\trps\tp50_us\tp90_us\tp99_us\tmax_us\tMiBps\terrors\t"
        "cpu_us_per_req\trss_load_kB\tforeign_pct\tmean_us\treqs\tsecs\n")


def row(rep, target, p99, mean_us, reqs=40000, w="small-c1"):
    return (f"{rep}\t{w}\t{target}\t10000\t85\t120\t{p99}\t5000\t-\t0\t45.0\tNA\t0\t"
            f"{mean_us}\t{reqs}\t4.000\n")


def render(tmp_path, lines):
    (tmp_path / "runs.tsv").write_text(HEAD + "".join(lines))
    r = subprocess.run([sys.executable, str(REPORT), str(tmp_path)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


def cell(out, target):
    for line in out.splitlines():
        if line.startswith(f"| small-c1 | {target} |"):
            return [c.strip() for c in line.split("|")[1:-1]]
    raise AssertionError(f"no row for {target}:\n{out}")


def test_a_run_with_impossible_latencies_is_left_out(tmp_path):
    # 40,000 requests on one connection in 4 s: a mean of 1,350 µs would need 54 s.
    out = render(tmp_path, [
        row(1, "direct", 150, 50), row(1, "nginx", 300, 100), row(1, "server", 60000, 1350),
        row(2, "direct", 160, 50), row(2, "nginx", 320, 100), row(2, "server", 330, 100),
        row(3, "direct", 170, 50), row(3, "nginx", 340, 100), row(3, "server", 350, 100),
    ])
    assert cell(out, "server")[6] == "340 †1"  # median of 330 and 350
    assert cell(out, "nginx")[6] == "320"
    assert "† runs left out of that cell's latency medians (1 in all)" in out
    assert "| p99 vs nginx, small-c1 | 1.06× ✅ |" in out


def test_ordinary_runs_are_all_kept(tmp_path):
    # 1.25× of the bound, as wrk's direct runs reach: kept.
    out = render(tmp_path, [row(1, "direct", 150, 125), row(1, "server", 400, 100),
                            row(2, "direct", 150, 125), row(2, "server", 500, 100)])
    assert cell(out, "server")[6] == "450"
    assert "†" not in out


def h2_row(rep, target, rps):
    # h2load has no percentiles: p50/p90/p99/max are NA.
    return (f"{rep}\th2-small-c64\t{target}\t{rps}\tNA\tNA\tNA\tNA\t-\t0\t45.0\tNA\t0\t"
            f"1900.0\t{rps * 5}\t5.000\n")


def test_http2_cells_and_their_ratio(tmp_path):
    out = render(tmp_path, [h2_row(1, "nginx", 20000), h2_row(1, "server", 30000),
                            h2_row(1, "worker", 25000)])
    assert ("| HTTP/2 prior knowledge req/s vs nginx (1 KiB, 8 conns × 8 streams) | 1.50× | "
            "1.25× | (no bar) |") in out
    rows = [line for line in out.splitlines() if line.startswith("| h2-small-c64 | ")]
    assert [r.split("|")[2].strip() for r in rows] == ["nginx", "server", "worker"]


def rps_row(rep, target, rps, w="small-c1"):
    return (f"{rep}\t{w}\t{target}\t{rps}\t85\t120\t300\t5000\t-\t0\t45.0\tNA\t0\t"
            f"100\t{rps * 4}\t4.000\n")


def test_one_more_nginx_hop_is_the_tunnel_reference(tmp_path):
    # Paired per rep: nginx2/nginx 0.70 and 0.60 -> median 0.65; tunnel/nginx2 0.95 and 1.05.
    out = render(tmp_path, [
        rps_row(1, "nginx", 10000), rps_row(1, "nginx2", 7000), rps_row(1, "worker", 10000),
        rps_row(1, "tunnel", 6650),
        rps_row(2, "nginx", 10000), rps_row(2, "nginx2", 6000), rps_row(2, "worker", 10000),
        rps_row(2, "tunnel", 6300),
    ])
    assert ("| reference: one more nginx hop (nginx → nginx vs nginx; the tunnel path against "
            "those two nginx in brackets) | – | small-c1 0.65× (tunnel 1.00× of it) | (no bar) |") in out
    assert "| tunnel path vs direct worker path | – | small-c1 0.65× ❌ | ≥ 0.7× |" in out
    assert cell(out, "nginx2")[12] == "0.65 (0.60–0.70)"   # /base is nginx
    order = [line.split("|")[2].strip() for line in out.splitlines() if line.startswith("| small-c1 | ")]
    assert order == ["nginx", "nginx2", "worker", "tunnel"]


def test_no_reference_row_without_nginx2(tmp_path):
    out = render(tmp_path, [rps_row(1, "nginx", 10000), rps_row(1, "worker", 10000)])
    assert "one more nginx hop" not in out


def test_wakeups_per_request_column(tmp_path):
    # runs.tsv of an older run has no wakeups_per_req: the cell shows "-".
    old = render(tmp_path, [rps_row(1, "worker", 10000)])
    assert cell(old, "worker")[9] == "-"
    head = HEAD.rstrip("\n") + "\twakeups_per_req\n"
    (tmp_path / "runs.tsv").write_text(head + "".join(
        rps_row(rep, t, 10000).rstrip("\n") + "\t%s\n" % k
        for rep, t, k in ((1, "worker", "2.01"), (2, "worker", "1.99"), (3, "worker", "2.10"),
                          (1, "tunnel", "4.02"))))
    r = subprocess.run([sys.executable, str(REPORT), str(tmp_path)], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "| wake-ups/req |" in r.stdout
    assert cell(r.stdout, "worker")[9] == "2.01"   # median of three reps
    assert cell(r.stdout, "tunnel")[9] == "4.02"
