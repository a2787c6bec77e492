"""Benchmark the OICP bridge under load (issue 13, Measure): prints figures, asserts nothing.

    python -m tools.bench_bridge [--cps 1000] [--rates 250,500,1000,1500] [--duration 10]
        [--instances 1,2] [--cdr-rate 500] [--hubject-latency-ms 0] [--profile PREFIX]

On loopback, each its own process: Mosquitto configured from tools/mosquitto (shipped ACL,
a password per charge point; the embedded amqtt broker, anonymous, when Mosquitto is missing:
the output says which), the Hubject simulator over mutual TLS (host_sim.hubject, PKI from
host_sim.pki, every load-generator card Authorized via POST /cards, its call log to a file),
and the bridge (`python -m tools.bridge`, one instance, then two in one `--share-group`), with
raised budgets (`--budget AuthorizeStart=...`: Hubject's AUP allows 200/min, the bridge would
otherwise answer 320 from the 201st request on). The load generator (tools/loadgen.py) runs in
this process: `--cps` charge points, one MQTT connection each.

Per target rate (authorize requests per second, sent for `--duration` seconds) it prints:
- achieved: answers received within the sending window per second; missing / duplicate
  answers (each request must be answered exactly once);
- e2e p50/p99: at the charge point, request published -> answer parsed (ms);
- added p50/p99: e2e minus the Hubject round trip the bridge logged for that request (joined
  by SessionID): what the broker, the bridge and the load generator's loop add (ms);
- bridge_ms p50/p99: the bridge's own time per AuthorizeStart from its log line (MQTT message
  in -> answer published, less the Hubject round trip and budget waits);
- CPU seconds per 1000 requests of the bridge process(es) (/proc/<pid>/stat utime+stime),
  and of the broker, the Hubject simulator and the load generator for comparison.
A rate "breaks" when added p99 > 20 ms, or fewer than 95 % of the target were answered in the
window, or any request went unanswered.

CDRs per second with 10 % of Hubject's answers failing: only when the bridge forwards CDRs
(tools/bridge/durable.py committed); else "n/a". `--profile PREFIX` runs the single bridge and
the Hubject simulator under a CPU-time cProfile and prints their top functions.

Units: seconds, milliseconds where named `_ms`, rates per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

from host_sim import pki as PKI
from tests import brokers
from tools.loadgen import LoadGen, StepResult, percentile

REPO = Path(__file__).resolve().parent.parent
OPERATOR = "DE*SIM"
BUDGET_PER_MIN = 1_200_000  # 20 000/s per operation: far above any rate tried here
START_TIMEOUT_S = 30.0
ADDED_P99_GOAL_MS = 20.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
DURABLE = "tools/bridge/durable.py"
# `python -c PROFILED OUT MODULE ARGS...`: run MODULE as __main__ under cProfile counting CPU
# time (time.process_time), not wall time: on 2 shared cores a wall-clock profile charges
# the time a process sat preempted to whatever call it was in (a socket send that woke the
# broker, typically). The stats are written when the module exits (SIGTERM ends both the
# bridge and the simulator normally).
PROFILED = ("import cProfile, runpy, sys, time\n"
            "out, mod = sys.argv[1], sys.argv[2]\n"
            "sys.argv = [mod] + sys.argv[3:]\n"
            "prof = cProfile.Profile(time.process_time)\n"
            "prof.enable()\n"
            "try:\n"
            "    runpy.run_module(mod, run_name='__main__', alter_sys=True)\n"
            "finally:\n"
            "    prof.disable()\n"
            "    prof.dump_stats(out)\n")


def python_argv(module: str, profile: str | None = None) -> list[str]:
    """The command line running `python -m module`, under the CPU-time profiler when
    `profile` names the stats file."""
    if profile:
        return [sys.executable, "-c", PROFILED, profile, module]
    return [sys.executable, "-m", module]


def durable_committed() -> bool:
    """True once tools/bridge/durable.py (CDR forwarding) is in the git history."""
    done = subprocess.run(["git", "log", "--oneline", "-1", "--", DURABLE], cwd=REPO,
                          capture_output=True, text=True, timeout=30, check=False)
    return bool(done.stdout.strip())


def raise_nofile(need: int) -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to `need` (at most the hard limit); the broker
    and the bridges inherit it. Returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        new = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def cpu_s(pid: int | None) -> float:
    """utime + stime of process `pid` in seconds (/proc/<pid>/stat fields 14 and 15)."""
    if pid is None:
        return 0.0
    try:
        text = Path("/proc/{}/stat".format(pid)).read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _post(url: str, body: dict, timeout_s: float = 30.0) -> dict:
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def _get(url: str, timeout_s: float = 30.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp:
        return json.loads(resp.read())


class Proc:
    """A child process whose stdout goes to a file; `wait_json(pred)` polls that file."""

    def __init__(self, name: str, argv: list[str], folder: Path):
        self.name = name
        self.out = folder / (name + ".out")
        self.err = folder / (name + ".err")
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL,
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.pid = self.proc.pid

    def lines(self, offset: int = 0) -> list[dict]:
        """The JSON lines of its stdout from byte `offset` on (others skipped)."""
        out = []
        with open(self.out, "rb") as f:
            f.seek(offset)
            for raw in f:
                try:
                    out.append(json.loads(raw))
                except ValueError:
                    continue
        return out

    def size(self) -> int:
        return self.out.stat().st_size

    def wait_json(self, pred, timeout_s: float = START_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            for rec in self.lines():
                if pred(rec):
                    return rec
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("{}: no ready line (exit {}); stderr:\n{}".format(
                    self.name, self.proc.poll(), self.err.read_text()[-2000:]))
            time.sleep(0.05)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)


class Bench:
    """Broker + Hubject simulator + load generator; bridges come and go (`start_bridges`).
    Use as `with Bench(folder, cps) as b:` then `await b.gen.connect()` in a loop."""

    def __init__(self, folder: Path, cps: int = 1000, ttl_ms: int = 10000,
                 profile_hubject: str | None = None):
        self.folder = Path(folder)
        self.profile_hubject = profile_hubject
        self.cps = cps
        self.ttl_ms = ttl_ms
        self.stack = ExitStack()
        self.bridges: list[Proc] = []
        self.broker_kind = ""
        self.nofile = (0, 0)

    def __enter__(self) -> Bench:
        try:
            self._start()
        except BaseException:
            self.stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop_bridges()
        self.stack.close()

    def _start(self) -> None:
        self.nofile = raise_nofile(2 * self.cps + 256)
        self.pki = PKI.make_pki(str(self.folder / "pki"), operator_id=OPERATOR)
        use_mosquitto = brokers.mosquitto_available()
        password_format = "pw-{cp}" if use_mosquitto else None
        self.gen = LoadGen("mqtt://127.0.0.1:1", self.cps, OPERATOR, password_format,
                           self.ttl_ms)
        if use_mosquitto:
            users = {brokers.BACKEND: "bridge-secret", **self.gen.users()}
            self.broker = self.stack.enter_context(
                brokers.mosquitto(self.folder, users=users))
            self.broker_kind = ("Mosquitto (tools/mosquitto conf and ACL, {} users; "
                                "max_connections default: unlimited)".format(len(users)))
        else:
            self.broker = self.stack.enter_context(brokers.amqtt_broker(self.folder))
            self.broker_kind = "amqtt (embedded, anonymous: Mosquitto not installed)"
        self.gen.host, self.gen.port = self.broker.host, self.broker.port
        chain, key = self.pki["hubject_server"]
        self.hub_log = self.folder / "hubject-calls.jsonl"
        self.hubject = Proc("hubject", python_argv("host_sim.hubject", self.profile_hubject) + [
            "--listen", "127.0.0.1:0",
            "--tls-cert", chain, "--tls-key", key, "--client-ca", self.pki["ca"],
            "--log", str(self.hub_log)], self.folder)
        self.stack.callback(self.hubject.stop)
        ready = self.hubject.wait_json(lambda r: r.get("event") == "ready")
        self.hub_url, self.control = ready["listen"], ready["control"]
        _post(self.control + "/cards", {"cards": self.gen.cards()})
        self.hubject_latency_ms = 0

    def set_hubject_latency(self, ms: int) -> None:
        """Hubject answers after `ms` (the simulator's POST /latency; a reset clears it)."""
        self.hubject_latency_ms = ms
        if ms:
            _post(self.control + "/latency", {"ms": ms})

    def bridge_argv(self, instance: str, share_group: str | None) -> list[str]:
        chain, key = self.pki["cpo_client"]
        schain, skey = self.pki["cpo_server"]
        argv = ["--broker", self.broker.url, "--operator-id", OPERATOR,
                "--hubject-url", self.hub_url,
                "--client-cert", chain, "--client-key", key, "--hubject-ca", self.pki["ca"],
                "--listen", "127.0.0.1:0", "--server-cert", schain, "--server-key", skey,
                "--client-ca", self.pki["ca"], "--instance-id", instance,
                "--hubject-timeout-ms", "8000"]
        for op in ("AuthorizeStart", "AuthorizeStop", "ChargeDetailRecord",
                   "ChargingNotifications", "PushEvseStatus", "PushEvseData"):
            argv += ["--budget", "{}={}/min".format(op, BUDGET_PER_MIN)]
        if self.broker.users:
            argv += ["--broker-user", brokers.BACKEND,
                     "--broker-password", self.broker.password(brokers.BACKEND)]
        if share_group:
            argv += ["--share-group", share_group]
        return argv

    def start_bridges(self, n: int, profile: str | None = None) -> list[dict]:
        """n bridge processes (in one share group when n > 1); their ready lines."""
        group = "bench" if n > 1 else None
        readies = []
        for i in range(n):
            name = "bridge{}-{}".format(n, i + 1)
            argv = python_argv("tools.bridge", profile if i == 0 else None)
            p = Proc(name, argv + self.bridge_argv(name, group), self.folder)
            self.bridges.append(p)
            readies.append(p.wait_json(lambda r: r.get("event") == "ready"))
        return readies

    def stop_bridges(self) -> None:
        for p in self.bridges:
            p.stop()
        self.bridges = []

    def pids(self) -> dict[str, list[int]]:
        return {"bridge": [p.pid for p in self.bridges], "broker": [self.broker.pid],
                "hubject": [self.hubject.pid], "loadgen": [os.getpid()]}

    def cpu(self) -> dict[str, float]:
        return {k: sum(cpu_s(p) for p in v) for k, v in self.pids().items()}

    def hubject_calls(self, operation: str) -> int:
        """Calls of `operation` the simulator recorded since its last reset."""
        calls = _get(self.control + "/calls?since=0")["calls"]
        return sum(1 for c in calls if c.get("operation") == operation)

    async def settle(self, quiet_s: float = 1.0, limit_s: float = 30.0) -> float:
        """Wait until the bridges' logs have been quiet for `quiet_s` (a backlog left by an
        overloaded step drained), at most `limit_s`; returns the seconds waited."""
        t0 = time.monotonic()
        last = [p.size() for p in self.bridges]
        still = time.monotonic()
        while time.monotonic() - t0 < limit_s:
            await asyncio.sleep(0.25)
            now = [p.size() for p in self.bridges]
            if now != last:
                last, still = now, time.monotonic()
            elif time.monotonic() - still >= quiet_s:
                break
        return time.monotonic() - t0

    def reset_hubject(self) -> None:
        """Forget calls and sessions: the simulator keeps every call in memory otherwise."""
        _post(self.control + "/reset", {"sessions": True})
        self.set_hubject_latency(self.hubject_latency_ms)

    async def measure(self, rate: float, duration_s: float, **kw) -> dict:
        """One step: the load at `rate`, its figures (see the module docstring)."""
        offsets = [p.size() for p in self.bridges]
        cpu0 = self.cpu()
        t0 = time.monotonic()
        step = await self.gen.run(rate, duration_s, **kw)
        wall = time.monotonic() - t0
        cpu1 = self.cpu()
        await asyncio.sleep(0.2)  # the last log lines
        lines = []
        per_instance = []
        for p, off in zip(self.bridges, offsets, strict=True):
            mine = [r for r in p.lines(off) if r.get("event") == "oicp"
                    and r.get("operation") == "eRoamingAuthorizeStart"]
            per_instance.append(len(mine))
            lines += mine
        return figures(step, lines, per_instance,
                       {k: cpu1[k] - cpu0[k] for k in cpu0}, wall)


def figures(step: StepResult, lines: list[dict], per_instance: list[int],
            cpu: dict[str, float], wall_s: float | None = None) -> dict:
    """The printed figures of one step from the load generator's result and the bridge's log
    lines for it (latencies ms, CPU s per 1000 requests, cores busy over `wall_s`: the
    sending window and the drain)."""
    bridge_ms = sorted(r["bridge_ms"] for r in lines if isinstance(r.get("bridge_ms"),
                                                                   (int, float)))
    wire_ms = sorted(r["latency_ms"] for r in lines if isinstance(r.get("latency_ms"),
                                                                  (int, float)))
    added = []
    for r in lines:
        e2e = step.session_latency_ms.get(r.get("SessionID"))
        if e2e is not None and isinstance(r.get("latency_ms"), (int, float)):
            added.append(e2e - r["latency_ms"] - (r.get("wait_ms") or 0.0))
    added.sort()
    per_k = 1000.0 / step.sent if step.sent else 0.0
    out = {
        "target": step.target_rate, "sent": step.sent, "answered": step.answered,
        "achieved": round(step.achieved_rate, 1), "missing": step.missing,
        "duplicates": step.duplicates, "unknown": step.unknown, "late": step.late,
        "stale": step.stale,
        "codes": step.codes, "log_lines": len(lines), "per_instance": per_instance,
        "e2e_p50": step.p(50), "e2e_p99": step.p(99),
        "added_p50": percentile(added, 50), "added_p99": percentile(added, 99),
        "bridge_p50": percentile(bridge_ms, 50), "bridge_p99": percentile(bridge_ms, 99),
        "hubject_p50": percentile(wire_ms, 50), "hubject_p99": percentile(wire_ms, 99),
        "cpu_per_1000": {k: round(v * per_k, 3) for k, v in cpu.items()},
        "cpu_share": {k: round(v / (wall_s or step.duration_s), 2) for k, v in cpu.items()},
    }
    out["broken"] = breaks(out)
    return out


def breaks(f: dict) -> str | None:
    """Why this step misses the goal, or None."""
    if f["missing"] or f["duplicates"]:
        return "{} unanswered, {} duplicate".format(f["missing"], f["duplicates"])
    if f["achieved"] < 0.95 * f["target"]:
        return "achieved {:.0f}/s < 95 % of {:.0f}/s".format(f["achieved"], f["target"])
    if f["added_p99"] is None or f["added_p99"] > ADDED_P99_GOAL_MS:
        return "added p99 {} ms > {:.0f} ms".format(_ms(f["added_p99"]).strip(),
                                                     ADDED_P99_GOAL_MS)
    return None


def _ms(v) -> str:
    return "  n/a" if v is None else "{:5.1f}".format(v)


def print_step(f: dict) -> None:
    cpu = f["cpu_per_1000"]
    print("  {:5.0f}/s  achieved {:6.1f}/s  sent {} answered {} missing {} dup {}  "
          "e2e p50/p99 {}/{} ms  added {}/{} ms  bridge_ms {}/{} ms  hubject {}/{} ms"
          .format(f["target"], f["achieved"], f["sent"], f["answered"], f["missing"],
                  f["duplicates"], _ms(f["e2e_p50"]), _ms(f["e2e_p99"]), _ms(f["added_p50"]),
                  _ms(f["added_p99"]), _ms(f["bridge_p50"]), _ms(f["bridge_p99"]),
                  _ms(f["hubject_p50"]), _ms(f["hubject_p99"])))
    print("         CPU s/1000 req: bridge {bridge:.2f}  broker {broker:.2f}  hubject "
          "{hubject:.2f}  loadgen {loadgen:.2f}".format(**cpu)
          + "   (cores busy: " + " ".join("{} {}".format(k, v)
                                           for k, v in f["cpu_share"].items()) + ")")
    extra = []
    if set(f["codes"]) - {"000"}:
        extra.append("codes {}".format(f["codes"]))
    if f.get("stale"):
        extra.append("{} answers to an earlier rate's requests".format(f["stale"]))
    if len(f["per_instance"]) > 1:
        extra.append("per instance {}".format(f["per_instance"]))
    if f["log_lines"] != f["answered"]:
        extra.append("bridge log lines {} != answered {}".format(f["log_lines"], f["answered"]))
    if f["broken"]:
        extra.append("BREAKS: " + f["broken"])
    if extra:
        print("         " + "; ".join(extra))


async def ramp(bench: Bench, instances: int, rates: list[float], duration_s: float,
               profile: str | None) -> list[dict]:
    readies = bench.start_bridges(instances, profile)
    print("\n{} bridge instance{}{}: ready, {} charge points known".format(
        instances, "s" if instances > 1 else "", " (--share-group bench)" if instances > 1
        else "", [r.get("charge_points") for r in readies]), flush=True)
    await bench.measure(100, 2.0)  # warm-up: TLS connections to Hubject, caches
    results = []
    for rate in rates:
        await bench.settle()
        bench.reset_hubject()
        f = await bench.measure(rate, duration_s)
        print_step(f)
        sys.stdout.flush()
        results.append(f)
    bench.stop_bridges()
    first = next((f for f in results if f["broken"]), None)
    ok = [f["target"] for f in results if not f["broken"]]
    print("  -> {}".format("goal met up to {:.0f}/s".format(max(ok)) if ok else
                          "goal met at no rate tried")
          + ("; breaks at {:.0f}/s ({})".format(first["target"], first["broken"])
             if first else "; no break up to {:.0f}/s".format(rates[-1])), flush=True)
    return results


async def cdr_phase(bench: Bench, instances: int, cdr_rate: float, duration_s: float,
                    fail_every: int = 10) -> dict:
    """CDRs at `cdr_rate`/s for `duration_s` through `instances` bridges, one Hubject CDR
    answer in `fail_every` an HTTP 500 (POST /faults before every `fail_every`-th CDR; the
    bridge retries those with back-off). Sessions first: authorize requests at 300/s give the
    Hubject SessionIDs the CDRs name. Prints CDRs acknowledged per second (first CDR sent ->
    last down/ack), ack latency, the bridge CPU per 1000 CDRs and the fault share Hubject saw."""
    bench.start_bridges(instances)
    bench.reset_hubject()
    bench.gen.sessions.clear()
    need = int(cdr_rate * duration_s) + 1
    await bench.measure(300, need / 300 + 0.5)
    loop = asyncio.get_running_loop()
    faults = bench.control + "/faults"

    def inject(n: int) -> None:
        if n % fail_every == fail_every - 1:
            loop.run_in_executor(None, _post, faults, {
                "operation": "ChargeDetailRecord", "mode": "http_500", "count": 1})

    cpu0 = bench.cpu()
    step = await bench.gen.run(0, duration_s, cdr_rate=cdr_rate, on_cdr=inject,
                               drain_s=60.0)
    cpu1 = bench.cpu()
    calls = [c for c in _get(bench.control + "/calls?since=0")["calls"]
             if c.get("operation") == "ChargeDetailRecord"]
    failed = sum(1 for c in calls if c.get("fault"))
    bench.stop_bridges()
    per_k = 1000.0 / step.cdr_acked if step.cdr_acked else 0.0
    f = {"instances": instances, "target": cdr_rate, "sent": step.cdr_sent,
         "acked": step.cdr_acked, "window_s": round(step.cdr_window_s, 2),
         "per_s": round(step.cdr_acked / step.cdr_window_s, 1) if step.cdr_window_s else 0.0,
         "in_window_per_s": round(step.cdr_acked_in_window / duration_s, 1),
         "ack_p50": percentile(step.cdr_ack_latencies_ms, 50),
         "ack_p99": percentile(step.cdr_ack_latencies_ms, 99),
         "hubject_calls": len(calls), "hubject_failed": failed,
         "bridge_cpu_per_1000": round((cpu1["bridge"] - cpu0["bridge"]) * per_k, 2),
         "hubject_cpu_per_1000": round((cpu1["hubject"] - cpu0["hubject"]) * per_k, 2)}
    print("  CDRs, {} instance{}: target {:.0f}/s, sent {} acked {} ({}/s while sending; all "
          "in {} s = {}/s, the retries' back-off included); ack p50/p99 {}/{} ms; Hubject CDR "
          "calls {} of which failed {} ({:.1f} %); CPU s/1000 CDRs: bridge {} hubject {}".format(
              instances, "s" if instances > 1 else "", cdr_rate, f["sent"], f["acked"],
              f["in_window_per_s"], f["window_s"], f["per_s"], _ms(f["ack_p50"]),
              _ms(f["ack_p99"]),
              f["hubject_calls"], failed, 100.0 * failed / len(calls) if calls else 0.0,
              f["bridge_cpu_per_1000"], f["hubject_cpu_per_1000"]), flush=True)
    return f


def print_profile(what: str, path: str, top: int = 30) -> None:
    print("\nCPU-time profile of {} (whole run; tottime = the function's own CPU time):".format(
        what))
    stats = pstats.Stats(path)
    stats.sort_stats("tottime").print_stats(top)


async def run(args) -> int:
    rates = [float(r) for r in args.rates.split(",")]
    instance_counts = [int(n) for n in args.instances.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    prof_bridge = prof_hub = None
    if args.profile:
        prof_bridge, prof_hub = args.profile + ".bridge", args.profile + ".hubject"
    with Bench(folder, args.cps, args.ttl_ms, prof_hub) as bench:
        print("bench_bridge: {} charge points; broker: {}".format(args.cps, bench.broker_kind))
        print("fd limit (soft, hard): {}; bridge budgets raised to {}/min per operation "
              "(Hubject's AUP: AuthorizeStart 200/min)".format(bench.nofile, BUDGET_PER_MIN))
        print("machine: {} cores, load average {} at start (shared with other work)".format(
            os.cpu_count(), " ".join("{:.2f}".format(x) for x in os.getloadavg())))
        if args.hubject_latency_ms:
            bench.set_hubject_latency(args.hubject_latency_ms)
            print("Hubject simulator answers after {} ms (POST /latency): a real Hubject's "
                  "round trip".format(args.hubject_latency_ms))
        took = await bench.gen.connect()
        print("{} charge points connected, born and subscribed in {:.1f} s; {} s per rate, "
              "ttl_ms {}".format(len(bench.gen.conns), took, args.duration, args.ttl_ms),
              flush=True)
        for n in instance_counts:
            await ramp(bench, n, rates, args.duration, prof_bridge if n == 1 else None)
            if prof_bridge and n == 1:
                print_profile("bridge instance 1", prof_bridge)
        print()
        if not args.cdr_rate:
            print("CDRs: not measured (--cdr-rate 0)")
        elif durable_committed():
            print("CDRs/s with 10 % of Hubject's CDR answers failing (HTTP 500, retried by the "
                  "bridge with back-off):")
            for n in instance_counts:
                await cdr_phase(bench, n, args.cdr_rate, args.duration)
        else:
            print("CDRs/s with 10 % Hubject failures: n/a: CDR forwarding not in this bridge "
                  "yet (no commit of tools/bridge/durable.py)")
        lost = bench.gen.lost_connections()
        if lost:
            print("WARNING: {} charge point connections were lost".format(lost))
        await bench.gen.close()
    if prof_hub:
        print_profile("the Hubject simulator", prof_hub)
    print("files: {}".format(folder))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench_bridge",
                                description=__doc__.split("\n")[0])
    p.add_argument("--cps", type=int, default=1000, help="simulated charge points")
    p.add_argument("--rates", default="250,500,1000,1500", help="target rates, per second")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per rate")
    p.add_argument("--instances", default="1,2", help="bridge instance counts to run")
    p.add_argument("--cdr-rate", type=float, default=500.0, help="CDRs per second offered")
    p.add_argument("--hubject-latency-ms", type=int, default=0,
                   help="the simulator's answer delay, ms (default 0: at once)")
    p.add_argument("--ttl-ms", type=int, default=10000, help="each request's ttl_ms")
    p.add_argument("--profile", metavar="PREFIX",
                   help="CPU-time profiles of the single bridge and the Hubject simulator into "
                        "PREFIX.bridge and PREFIX.hubject, printed at the end")
    args = p.parse_args(argv)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
