"""tools.build: the image is folded, compiled, incremental, and keeps nothing stale."""

import os

from tools.build import build


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


WALK_ROM = """
import binascii, json, os, vfs
with open({image!r}, "rb") as f:
    vfs.mount(vfs.VfsRom(f.read()), "/rom")
files = {{}}
def walk(d):
    for entry in os.ilistdir(d):
        p = d + "/" + entry[0]
        if entry[1] == 0x4000:
            walk(p)
        else:
            with open(p, "rb") as f:
                files[p[5:]] = binascii.hexlify(f.read()).decode()
walk("/rom")
print(json.dumps(files))
"""


def test_romfs_image_holds_exactly_the_compiled_packages(tmp_path):
    """MicroPython's own VfsRom reads back every firmware/, hal/ and umqtt/ (tools/deps.py)
    .mpy, byte for byte, and nothing else (no folded sources, no tests, no launcher)."""
    import json

    from tests.mpy import run_mp
    from tools.build import IMAGE

    out = str(tmp_path)
    build(out)
    res = run_mp(["-c", WALK_ROM.format(image=os.path.join(out, IMAGE))], heap="1024k")
    assert res.returncode == 0, res.stderr
    in_rom = {k: bytes.fromhex(v) for k, v in json.loads(res.stdout).items()}
    expected = {}
    for pkg in ("firmware", "hal", "umqtt"):
        for folder, _dirs, files in os.walk(os.path.join(out, pkg)):
            for name in files:
                path = os.path.join(folder, name)
                with open(path, "rb") as f:
                    expected[os.path.relpath(path, out)] = f.read()
    assert "firmware/controller.mpy" in expected and "umqtt/simple.mpy" in expected
    assert in_rom == expected
    with open(os.path.join(out, IMAGE), "rb") as f:
        first = f.read()
    build(out)  # unchanged tree: the same bytes, file not rewritten
    with open(os.path.join(out, IMAGE), "rb") as f:
        assert f.read() == first
