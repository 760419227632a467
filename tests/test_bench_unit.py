"""`make bench`'s pure helpers: statistics, target verdicts, wrk and HTTP parsing, profile summaries.

No timing is asserted here: the bench itself measures; these tests only keep its arithmetic honest.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "bench"))

from instructions import instructions_of, per_request
from loadgen import build_request, parse_wrk, response_length
from report import Target, library_of, median, percentile, summarize_profile, targets_table
from run import import_times, load_ratios, without_database, without_nan
from template_timings import spread_sample

pytestmark = pytest.mark.fast

WRK_OUTPUT = """\
Running 5s test @ http://127.0.0.1:8000/api/v1/info
  1 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.05ms  312.45us   9.87ms   91.23%
    Req/Sec     9.61k   402.11    10.12k    84.00%
  Latency Distribution
     50%  980.00us
     75%    1.10ms
     90%    1.31ms
     99%    2.15ms
  47812 requests in 5.00s, 9.89MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 3
Requests/sec:   9561.83
Transfer/sec:      1.98MB
"""


def test_percentile_interpolates_and_median_ignores_missing_values() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 5.0
    assert percentile(values, 0.99) == pytest.approx(4.96)
    assert math.isnan(percentile([], 0.5))
    assert median([3.0, math.nan, 1.0, 2.0]) == 2.0
    assert math.isnan(median([math.nan]))
    with pytest.raises(ValueError, match=r"within 0\.\.1"):
        percentile(values, 99)


def test_target_verdicts_say_pass_or_by_how_much() -> None:
    ratio = Target("throughput", 0.80, 0.85, "at_least", "x")
    assert not ratio.passed
    assert ratio.shortfall == pytest.approx(0.05)
    assert ratio.verdict == "short by 0.05x (6% of the target)"
    overhead = Target("cpu", 12.0, 18.0, "at_most", "us", limit_text="bare + 18 us")
    assert overhead.passed
    assert overhead.verdict == "pass"
    assert overhead.target_text() == "<= bare + 18 us"
    late = Target("cold start", 80.0, 50.0, "at_most", "ms")
    assert late.verdict == "short by 30.0 ms (60% of the target)"


def test_a_skipped_or_missing_measurement_is_never_a_pass() -> None:
    skipped = Target("redis", 0.5, 1.2, "at_most", "x", skipped="Redis unreachable")
    assert not skipped.passed
    assert skipped.verdict == "skipped: Redis unreachable"
    missing = Target("render", math.nan, 1.0, "at_most", "s")
    assert not missing.passed
    assert missing.verdict == "not measured"
    assert missing.as_json()["measured"] is None
    table = targets_table([skipped, missing]).markdown()
    assert "| redis | - | <= 1.20x | skipped: Redis unreachable |" in table


def test_parse_wrk_reads_rate_latencies_and_errors() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result["requests"] == 47812
    assert result["rps"] == pytest.approx(9561.83)
    assert result["errors"] == 3 + 3
    assert result["p50_ms"] == pytest.approx(0.98)
    assert result["p99_ms"] == pytest.approx(2.15)
    assert result["max_ms"] == pytest.approx(9.87)
    with pytest.raises(ValueError, match="unexpected wrk output"):
        parse_wrk("wrk: connection refused")


def test_response_length_finds_complete_responses_only() -> None:
    response = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\ncontent-type: text/plain\r\n\r\nabcd"
    assert response_length(response) == (200, len(response))
    assert response_length(response[:-1]) is None
    assert response_length(response + b"HTTP/1.1 200") == (200, len(response))
    chunked = b"HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
    assert response_length(chunked) == (429, len(chunked))
    assert response_length(chunked[:-2]) is None
    assert build_request("127.0.0.1", 8000, "/x").startswith(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n")


def test_ratios_are_taken_per_round_then_their_median() -> None:
    def app(rps: float, cpu: float, p99: float) -> dict[str, float]:
        return {"rps": rps, "server_cpu_us_per_request": cpu, "p99_ms": p99}

    rounds = [
        {"bare": app(100, 10, 1.0), "hardened": app(90, 11, 1.5), "library": app(10, 100, 9.0)},
        {"bare": app(50, 20, 2.0), "hardened": app(40, 25, 2.2), "library": app(5, 200, 9.0)},
        {"bare": app(100, 10, 1.0), "hardened": app(85, 12, 1.1), "library": app(10, 100, 9.0)},
    ]
    ratios = load_ratios(rounds)
    assert ratios["hardened_over_bare_rps"] == pytest.approx(0.85)
    assert ratios["hardened_over_bare_cpu"] == pytest.approx(10 / 12)
    assert ratios["hardened_cpu_us_over_bare"] == pytest.approx(2.0)
    assert ratios["hardened_over_library_rps"] == pytest.approx(8.5)
    assert ratios["hardened_p99_ms_over_bare"] == pytest.approx(0.2)


def test_profile_summary_groups_self_time_by_library_and_service_module() -> None:
    site = "/venv/lib/python3.11/site-packages"
    service = "/build/bench/service/src/acme_service/middleware/access_log.py"
    root = ("run", "/usr/lib/python3.11/asyncio/runners.py")
    samples = [
        ([root, ("send", f"{site}/uvicorn/protocols/http/httptools_impl.py")], 3.0),
        ([root, ("__call__", service)], 1.0),
    ]
    summary = summarize_profile(samples)
    assert "75.0%  uvicorn" in summary
    assert "25.0%  acme_service.middleware.access_log" in summary
    assert "send (uvicorn/protocols/http/httptools_impl.py)" in summary
    assert library_of("/usr/lib/python3.11/asyncio/runners.py") == "stdlib asyncio"
    assert summarize_profile([]) == "no samples"


def test_import_times_sum_self_time_per_top_level_package() -> None:
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       120 |        120 |   sqlalchemy.util\n"
        "import time:        80 |        200 | sqlalchemy\n"
        "import time:        40 |         40 | structlog\n"
        "unrelated line\n"
    )
    assert import_times(stderr) == {"sqlalchemy": 200.0, "structlog": 40.0}


def test_helpers_keep_results_json_strict_and_samples_spread() -> None:
    assert without_nan({"a": [1.0, math.nan], "b": (math.nan,)}) == {"a": [1.0, None], "b": [None]}
    assert spread_sample(list(range(10)), 5) == [0, 2, 4, 6, 8]
    assert spread_sample([1, 2], 5) == [1, 2]


def test_instruction_totals_are_read_from_callgrinds_exit_report() -> None:
    output = (
        "==123== Events    : Ir\n==123== Collected : 16113015399\n==123==\n"
        "==123== I   refs:      16,113,015,399\n"
    )
    assert instructions_of(output) == 16_113_015_399
    assert instructions_of("==9== I   refs:      3,860,985,101\n") == 3_860_985_101
    with pytest.raises(ValueError, match="no instruction total"):
        instructions_of("valgrind: command not found")


def test_instructions_per_request_subtract_the_run_without_requests() -> None:
    assert per_request(16_113_015_399, 15_587_536_109, 1000) == pytest.approx(525_479.29)
    with pytest.raises(ValueError):
        per_request(1, 0, 0)


def test_without_database_reports_the_variants_start_and_memory_over_bare() -> None:
    cold = {
        "median_seconds": {"bare": 0.354, "hardened": 0.691, "hardened_no_database": 0.512},
        "rss_idle_mb": {"bare": 40.0, "hardened": 61.5, "hardened_no_database": 47.25},
    }
    assert without_database(cold) == "cold start bare + 158 ms, RSS at start bare + 7.2 MB"
    failed = {**cold, "median_seconds": {**cold["median_seconds"], "hardened_no_database": math.nan}}
    assert without_database(failed) == ""
    assert without_database({"median_seconds": {"bare": 0.3, "hardened": 0.6}, "rss_idle_mb": {}}) == ""
