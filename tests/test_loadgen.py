"""tools/loadgen.py and tools/bench_bridge.py work and their counts add up: the MQTT codec on
split and merged reads, and a small run of the whole bench (20 charge points, 100 authorize
requests against one real bridge, the Hubject simulator and Mosquitto -- amqtt without it):
every request answered exactly once, by Hubject's decision, and seen once in the bridge's log
and once at the simulator."""

from __future__ import annotations

import asyncio
import json

import pytest

from tools import loadgen as L
from tools.bench_bridge import Bench, figures


def test_varint_boundaries():
    for n, enc in ((0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
                   (16384, b"\x80\x80\x01"), (2097152, b"\x80\x80\x80\x01")):
        assert L._varint(n) == enc


def test_split_packets_across_reads():
    big = b"x" * 300  # a two-byte remaining length
    stream = (L.publish_packet("a/b", b"hi", 1, False, 7) + L.puback_packet(9)
              + L.publish_packet("mpevse/CP0001/down/authorize", big, 0))
    buf = bytearray()
    got = []
    for i in range(len(stream)):  # one byte per read: every split point
        buf += stream[i:i + 1]
        got += L.split_packets(buf)
    assert not buf
    assert [k for k, _, _ in got] == [L.PUBLISH, L.PUBACK, L.PUBLISH]
    assert L.parse_publish(got[0][1], got[0][2]) == ("a/b", b"hi", 1, 7)
    assert got[1][2] == b"\x00\x09"
    assert L.parse_publish(got[2][1], got[2][2]) == ("mpevse/CP0001/down/authorize", big, 0, 0)
    buf = bytearray(stream)  # all at once
    assert len(L.split_packets(buf)) == 3 and not buf


def test_percentile_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert L.percentile(values, 50) == 50.0 and L.percentile(values, 99) == 99.0
    assert L.percentile([3.0], 99) == 3.0 and L.percentile([], 50) is None


def test_figures_join_by_session():
    step = L.StepResult(2, 1.0, sent=2, answered=2, answered_in_window=2)
    step.latencies_ms = [5.0, 9.0]
    step.session_latency_ms = {"s1": 5.0, "s2": 9.0}
    lines = [{"SessionID": "s1", "latency_ms": 3.0, "bridge_ms": 0.5},
             {"SessionID": "s2", "latency_ms": 4.0, "wait_ms": 1.0, "bridge_ms": 1.5}]
    f = figures(step, lines, [2], {"bridge": 0.004, "broker": 0.0, "hubject": 0.0,
                                   "loadgen": 0.0})
    assert f["added_p50"] == 2.0 and f["added_p99"] == 4.0
    assert f["bridge_p99"] == 1.5 and f["cpu_per_1000"]["bridge"] == 2.0
    assert f["broken"] is None


@pytest.mark.slow
def test_small_run_every_request_answered_once(tmp_path):
    async def scenario(bench):
        took = await bench.gen.connect()
        assert len(bench.gen.conns) == 20 and took < 10
        (ready,) = bench.start_bridges(1)
        assert ready["charge_points"] == 20  # every retained birth known
        bench.reset_hubject()
        f = await bench.measure(100, 1.0)
        calls = bench.hubject_calls("AuthorizeStart")
        bench.stop_bridges()
        await bench.gen.close()
        return f, calls

    with Bench(tmp_path, cps=20, ttl_ms=5000) as bench:
        f, calls = asyncio.run(scenario(bench))
    summary = json.dumps(f)
    assert f["sent"] == 100 and f["answered"] == 100, summary
    assert f["missing"] == 0 and f["duplicates"] == 0 and f["unknown"] == 0, summary
    assert f["stale"] == 0, summary
    assert f["late"] == 0 and f["codes"] == {"000": 100}, summary
    assert f["log_lines"] == 100 and calls == 100, summary
    assert f["e2e_p50"] is not None and f["bridge_p99"] is not None
    assert f["cpu_per_1000"]["bridge"] > 0
