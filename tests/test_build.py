"""host_sim.build: the image is folded, compiled, incremental, and keeps nothing stale."""

import os

from host_sim.build import build


def test_build_is_incremental_and_prunes_what_a_deleted_module_left(tmp_path):
    out = str(tmp_path)
    compiled, _ = build(out)
    assert "firmware/controller.mpy" in compiled
    assert os.path.exists(os.path.join(out, ".src", "firmware", "controller.py"))
    assert os.path.exists(os.path.join(out, "tests", "mp", "test_charging.py"))
    stale = ["firmware/gone.mpy", ".src/firmware/gone.py", "tests/mp/test_gone.py"]
    for rel in stale:
        with open(os.path.join(out, rel), "w") as f:
            f.write("x")
    compiled, removed = build(out)
    assert compiled == []  # nothing changed: nothing recompiled
    assert sorted(removed) == sorted(stale)
    assert not any(os.path.exists(os.path.join(out, rel)) for rel in stale)
