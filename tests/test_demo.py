"""`make demo` (python -m host_sim demo): the whole chain runs and says what happened; exit 0."""

import subprocess
import sys

import pytest

from host_sim.runner import ROOT

pytestmark = pytest.mark.slow


def test_the_demo_runs_the_whole_chain_and_exits_0(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "host_sim", "demo"], cwd=ROOT, text=True,
                          capture_output=True, timeout=240)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-2000:]
    for seen in ("hub AuthorizeStart DE*SIM*E0001*1 -> HTTP 200 Authorized 000",
                 '"code": "102"', "hub AuthorizeRemoteStart DE*SIM*E0001*2 -> HTTP 200 True 000",
                 "acknowledgement: 602", "hub AuthorizeRemoteStop DE*SIM*E0001*2 -> HTTP 200 "
                 "True 000", "hub ChargeDetailRecord DE*SIM*E0001*2", "hub PushEvseData",
                 "Demo complete", "The bridge's log of OICP calls"):
        assert seen in out, seen
    log = out.rsplit("per call): ", 1)[1].strip()
    with open(log) as f:
        lines = f.read()
    assert "eRoamingAuthorizeStart" in lines and "04A1B2C3D4E5F6" not in lines  # UID masked
