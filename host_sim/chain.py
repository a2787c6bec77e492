"""The whole chain on one machine: broker, Hubject simulator, OICP bridge, simulated charge point.

    with Chain(workdir, interpreter="micropython") as chain:
        chain.sim.command_line("plug 1")
        result = chain.remote_start("DE*SIM*E0001*1", "04A1B2C3", provider="DE-ABC")
        chain.oicp_calls()  # what Hubject's side saw

Processes (each started and stopped here, on loopback, every wait bounded, readiness by each
process's JSON `ready` line, never by a sleep):
- the broker: the embedded amqtt (host_sim.broker) unless `broker=` gives a running one (the
  tests pass Mosquitto with per-device users and the shipped ACL: `broker_users` then names the
  bridge's and the charge point's credentials);
- the Hubject simulator (host_sim.hubject) over HTTPS with mutual TLS, its control API on
  plain HTTP;
- the bridge (tools.bridge) with the example site file (tools/bridge/site.example.json: the
  EVSE data Hubject's map needs) and the operator's CDR store: mutual TLS toward Hubject
  (client certificate `cpo_client`,
  trusting the chain file of root and intermediate CA) and for the endpoints Hubject calls
  (server certificate `cpo_server`, requiring Hubject's client certificate `hubject_client`);
- the charge point: host_sim.runner.Simulation with `--broker`, on CPython or MicroPython.
All certificates are made for the run by host_sim.pki (nothing secret is committed).

The Simulation is pumped by the caller's thread (host_sim.runner); a control call that makes
Hubject call the bridge (remote start/stop) runs in a worker thread while this thread keeps
pumping the simulated devices, so the charge point answers as it would in the field.
"""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

from host_sim import pki
from host_sim.broker import free_port
from host_sim.runner import ROOT, Simulation

OPERATOR_ID = "DE*SIM"  # the simulator's EvseIDs are DE*SIM*E0001*<n> (host_sim.runner)
SITE_FILE = os.path.join(ROOT, "tools", "bridge", "site.example.json")  # Hubject's EVSE data
CP_ID = "SIM01"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
CONTROL_TIMEOUT_S = 20.0  # a remote start is answered by the bridge within 10 s


class ChainError(Exception):
    """A process of the chain did not start, died, or a control call failed."""


class Process:
    """A child process whose stdout is JSON lines; every line is kept (and copied to `log`)."""

    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.lines = []
        self._cond = threading.Condition()
        self._log = open(log_path, "a", encoding="utf-8")
        self._err_path = log_path + ".stderr"
        err = open(self._err_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                         stderr=err, cwd=ROOT, env=env, text=True, bufsize=1)
        finally:
            err.close()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.proc.stdout:
            self._log.write(line)
            self._log.flush()
            line = line.strip()
            try:
                obj = json.loads(line)
            except ValueError:
                obj = {"text": line}
            with self._cond:
                self.lines.append(obj if isinstance(obj, dict) else {"value": obj})
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pred, timeout_s, start=0):
        """The first line (dict) from index `start` on for which pred(line) holds; ChainError
        on time-out or if the process exits first."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            i = start
            while True:
                while i < len(self.lines):
                    if pred(self.lines[i]):
                        return self.lines[i]
                    i += 1
                if self.proc.poll() is not None and not self._thread.is_alive():
                    raise ChainError("{} exited with {} before it was ready; stderr: {}".format(
                        self.name, self.proc.returncode, self.stderr_tail()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChainError("{}: no expected line within {} s; stderr: {}".format(
                        self.name, timeout_s, self.stderr_tail()))
                self._cond.wait(min(left, 0.2))

    def ready(self, timeout_s=READY_TIMEOUT_S):
        return self.wait_for(lambda d: d.get("event") == "ready", timeout_s)

    def stderr_tail(self, n=1500):
        try:
            with open(self._err_path, "rb") as f:
                return f.read()[-n:].decode("utf-8", "replace")
        except OSError as e:
            return "(no stderr: {})".format(e)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT_S)
        self._thread.join(STOP_TIMEOUT_S)
        self._log.close()


def _python(module, *args):
    return [sys.executable, "-m", module] + [str(a) for a in args]


class Chain:
    """The running chain (context manager). Attributes once started: `sim` (the Simulation),
    `hubject_control` (URL), `bridge_url` (the endpoints Hubject calls, https), `broker_url`,
    `bridge` / `hubject` / `broker` (Process), `oicp_log` (the bridge's log of OICP calls, one
    JSON line per call), `pki` (the generated certificate paths), `cdr_store` (the operator's
    own CDRs, JSON lines: sessions that are no Hubject business), `dead_letters`."""

    def __init__(self, workdir, interpreter="micropython", evses=2, cards=None, broker=None,
                 broker_users=None, local_cards=(), sim_config=None, bridge_args=()):
        self.workdir = os.path.abspath(workdir)
        self.interpreter = interpreter
        self.evses = evses
        self.cards = cards
        self._broker_arg = broker
        self.broker_users = broker_users or {}
        self.local_cards = local_cards
        self.sim_config = sim_config or {"connection_timeout_s": 60}
        self.bridge_args = list(bridge_args)
        self.sim = None
        self.broker = self.hubject = self.bridge = None
        self.broker_url = self.broker_ca = None

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    # -- life cycle ---------------------------------------------------------------------
    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        self.pki = pki.make_pki(os.path.join(self.workdir, "pki"))
        self.oicp_log = os.path.join(self.workdir, "bridge.log")
        if self._broker_arg is None:
            self.broker = Process("broker", _python("host_sim.broker", "--listen",
                                                    "127.0.0.1:0"),
                                  os.path.join(self.workdir, "broker.log"))
            self.broker_url = self.broker.ready()["url"]
        else:
            self.broker_url = self._broker_arg.url
            self.broker_ca = self._broker_arg.ca
        ca = self.pki["ca"]
        hubject_port = free_port()
        bridge_port = free_port()
        self.bridge_url = "https://127.0.0.1:{}/api/oicp".format(bridge_port)
        hub_cert, hub_key = self.pki["hubject_server"]
        hc_cert, hc_key = self.pki["hubject_client"]
        args = ["--listen", "127.0.0.1:{}".format(hubject_port),
                "--tls-cert", hub_cert, "--tls-key", hub_key, "--client-ca", ca,
                "--control", "127.0.0.1:0", "--cpo-url", self.bridge_url,
                "--cpo-cert", hc_cert, "--cpo-key", hc_key, "--cpo-ca", ca,
                "--log", os.path.join(self.workdir, "hubject-calls.log")]
        if self.cards is not None:
            cards_file = os.path.join(self.workdir, "cards.json")
            with open(cards_file, "w") as f:
                json.dump({"cards": self.cards}, f)
            args += ["--cards", cards_file]
        self.hubject = Process("hubject", _python("host_sim.hubject", *args),
                               os.path.join(self.workdir, "hubject.log"))
        ready = self.hubject.ready()
        self.hubject_url = ready["listen"]
        self.hubject_control = ready["control"]
        cc_cert, cc_key = self.pki["cpo_client"]
        cs_cert, cs_key = self.pki["cpo_server"]
        self.cdr_store = os.path.join(self.workdir, "operator-cdrs.jsonl")
        self.dead_letters = os.path.join(self.workdir, "dead-letters.jsonl")
        bargs = ["--broker", self.broker_url, "--operator-id", OPERATOR_ID,
                 "--site", SITE_FILE, "--cdr-store", self.cdr_store,
                 "--dead-letter", self.dead_letters,
                 "--hubject-url", self.hubject_url, "--client-cert", cc_cert,
                 "--client-key", cc_key, "--hubject-ca", ca,
                 "--listen", "127.0.0.1:{}".format(bridge_port),
                 "--server-cert", cs_cert, "--server-key", cs_key, "--client-ca", ca,
                 "--instance-id", "bridge-1"]
        if self.broker_ca:
            bargs += ["--broker-ca", self.broker_ca]
        if "bridge" in self.broker_users:
            bargs += ["--broker-user", "bridge", "--broker-password",
                      self.broker_users["bridge"]]
        self._bridge_argv = _python("tools.bridge", *(bargs + self.bridge_args))
        self.bridge = Process("bridge", self._bridge_argv, self.oicp_log)
        self.bridge.ready()
        self.sim = Simulation(
            interpreter=self.interpreter, evses=self.evses, local_cards=self.local_cards,
            config=self.sim_config, broker=self.broker_url, cp_id=CP_ID,
            broker_ca=self.broker_ca, broker_user=CP_ID if CP_ID in self.broker_users else None,
            broker_password=self.broker_users.get(CP_ID))
        self.sim.start()
        self.wait_event(lambda e: e["ev"] == "uplink" and e.get("connected"), 20.0)

    def close(self):
        if self.sim is not None:
            self.sim.close()
        for p in (self.bridge, self.hubject, self.broker):
            if p is not None:
                p.stop()

    def restart_bridge(self, kill=True):
        """Kill (SIGKILL: no goodbye) or stop the bridge, then start it again with the same
        flags and wait for its ready line; the simulation is pumped meanwhile."""
        if kill:
            self.bridge.proc.kill()
        self.bridge.stop()
        self.bridge = Process("bridge", self._bridge_argv, self.oicp_log)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not any(d.get("event") == "ready" for d in self.bridge.lines):
            if time.monotonic() > deadline or self.bridge.proc.poll() is not None:
                raise ChainError("the restarted bridge did not get ready: "
                                 + self.bridge.stderr_tail())
            self.sim.pump(0.05)

    # -- the charge point -----------------------------------------------------------------
    def wait_event(self, pred, timeout_s, start=0):
        """Pump the simulation until an event (from index `start`) satisfies pred."""
        deadline = time.monotonic() + timeout_s
        i = start
        while True:
            while i < len(self.sim.events):
                if pred(self.sim.events[i]):
                    return self.sim.events[i]
                i += 1
            if time.monotonic() > deadline:
                raise ChainError("no such charge point event within {} s".format(timeout_s))
            self.sim.pump(0.02)

    def until(self, probe, timeout_s, what):
        """Pump the simulation until probe() returns something true (returned); ChainError
        naming `what` and the last events after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = probe()
            if found:
                return found
            if time.monotonic() > deadline:
                raise ChainError("{} not within {} s; last events: {}".format(
                    what, timeout_s, self.sim.events[-12:]))
            self.sim.pump(0.02)

    def event(self, ev, start=0, **fields):
        """A probe for until(): the first charge point event `ev` from index `start` whose
        fields equal `fields`, else None."""
        def probe():
            for e in self.sim.events[start:]:
                if e["ev"] == ev and all(e.get(k) == v for k, v in fields.items()):
                    return e
            return None
        return probe

    # -- Hubject's side -------------------------------------------------------------------
    def control(self, method, path, body=None, timeout_s=CONTROL_TIMEOUT_S):
        """A call to the Hubject simulator's control API; the JSON answer. The simulation is
        pumped meanwhile (the call may wait for the charge point)."""
        result = {}

        def call():
            data = None if body is None else json.dumps(body).encode()
            req = urllib.request.Request(self.hubject_control + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=timeout_s) as r:
                    result["value"] = json.loads(r.read() or b"null")
            except (urllib.error.URLError, OSError, ValueError) as e:
                result["error"] = e

        t = threading.Thread(target=call, daemon=True)
        t.start()
        deadline = time.monotonic() + timeout_s + 1.0
        while t.is_alive() and time.monotonic() < deadline:
            if self.sim is not None:
                self.sim.pump(0.02)
            else:
                t.join(0.02)
        if t.is_alive():
            raise ChainError("control {} {}: no answer within {} s".format(method, path,
                                                                           timeout_s))
        if "error" in result:
            raise ChainError("control {} {}: {}".format(method, path, result["error"]))
        return result["value"]

    def remote_start(self, evse_id, uid, provider="DE-ABC", session_id=None):
        body = {"ProviderID": provider, "EvseID": evse_id, "UID": uid}
        if session_id:
            body["SessionID"] = session_id
        return self.control("POST", "/remote-start", body)

    def remote_stop(self, evse_id, session_id, provider="DE-ABC"):
        return self.control("POST", "/remote-stop", {"ProviderID": provider,
                                                      "EvseID": evse_id,
                                                      "SessionID": session_id})

    def oicp_calls(self, since=0):
        """The calls Hubject's side saw (host_sim.hubject's records)."""
        return self.control("GET", "/calls?since={}".format(since))["calls"]

    def bridge_lines(self, operation=None):
        """The bridge's log lines of OICP calls (`event` "oicp"), optionally of one operation
        (OICP's name, e.g. "eRoamingAuthorizeStart")."""
        return [d for d in self.bridge.lines
                if d.get("event") == "oicp" and (operation is None
                                                 or d.get("operation") == operation)]
