"""tools.constfold: the build folds named constants into their readers without changing meaning.

The whole device-side suite (tests/mp under MicroPython) runs on folded code; these tests pin the
rules: what is folded, what never is (shadowed names, shared big values), that imports and
definitions made dead disappear, and that line numbers survive.
"""

import ast

from hypothesis import given
from hypothesis import strategies as st

from tools.constfold import FoldError, constant_table, fold_tree, module_name

EVENTS = '''"""kinds"""
EV_PILOT = "pilot"
EV_LONGER_NAME = "a rather long event kind"
DUTY = 50
NEG = -DUTY
KINDS = (EV_PILOT, "x")
'''

USER = '''from firmware import events as E
from firmware.events import (
    DUTY,
    NEG,
)


def f(kind):
    if kind == E.EV_PILOT:
        return DUTY.bit_length(), NEG ** 2
    return E.KINDS
'''


def _lines(text):
    return text.count("\n")


def test_module_names():
    assert module_name("hal/boards/x.py") == "hal.boards.x"
    assert module_name("firmware/__init__.py") == "firmware"


def test_cross_module_fold_keeps_lines_and_drops_dead_imports_and_definitions():
    out = fold_tree({"firmware/events.py": EVENTS, "firmware/user.py": USER})
    user = out["firmware/user.py"]
    assert _lines(user) == _lines(USER)
    assert "if kind == 'pilot':" in user
    assert "return (50).bit_length(), (-50) ** 2" in user
    assert "return ('pilot', 'x')" in user  # one reader of the tuple: folded
    assert "import" not in user  # every imported name was folded
    ns = {}
    exec(compile(user, "user", "exec"), ns)
    assert ns["f"]("pilot") == (6, 2500) and ns["f"]("x") == ("pilot", "x")
    events = out["firmware/events.py"]
    assert _lines(events) == _lines(EVENTS)
    # nobody reads them any more: gone from the image (the long one was never read)
    for name in ("EV_PILOT", "DUTY", "NEG", "KINDS", "EV_LONGER_NAME"):
        assert name not in events


def test_big_values_shared_by_two_modules_stay_named():
    a = 'from firmware import events as E\nx = E.EV_LONGER_NAME\n'
    b = 'from firmware.events import EV_LONGER_NAME\n\n\ndef g():\n    return EV_LONGER_NAME\n'
    out = fold_tree({"firmware/events.py": EVENTS, "firmware/a.py": a, "firmware/b.py": b})
    assert out["firmware/a.py"] == a and out["firmware/b.py"] == b
    assert 'EV_LONGER_NAME = "a rather long event kind"' in out["firmware/events.py"]


def test_shadowed_names_are_not_folded():
    src = '''DUTY = 5


def f(DUTY):
    return DUTY


def g():
    return [DUTY for DUTY in range(3)], DUTY
'''
    out = fold_tree({"hal/m.py": src})["hal/m.py"]
    # the name is bound inside this file, so it is never folded here
    assert out == src


def test_reassigned_or_computed_names_are_not_constants():
    src = 'A = 1\nA = 2\nB = [1]\nC = len("x")\nD = 1.0 / 0.5\nINF = 1e999\n'
    table = constant_table({"hal.m": ast.parse(src)})
    assert table["hal.m"] == {"D": 2.0}


def test_reexports_and_other_imports_stay():
    mod = 'from hal.pilot import Pilot, CP_DIVIDER  # noqa: F401 (re-exported)\nimport json\n'
    pilot = 'CP_DIVIDER = 3\n\n\nclass Pilot:\n    pass\n'
    out = fold_tree({"hal/pilot.py": pilot, "hal/mod.py": mod})
    assert out["hal/mod.py"] == mod  # never read here before the fold: not the fold's to drop
    assert "CP_DIVIDER = 3" in out["hal/pilot.py"]  # still imported by name somewhere


def test_a_module_read_dynamically_keeps_its_definitions():
    test = 'from firmware import events as E\n\n\ndef t():\n    return getattr(E, "DUTY"), E.DUTY\n'
    out = fold_tree({"firmware/events.py": EVENTS}, {"tests/mp/t.py": test})
    assert "return getattr(E, \"DUTY\"), (50)" in out["tests/mp/t.py"]
    assert "DUTY = 50" in out["firmware/events.py"]


def test_lazy_imports_inside_functions_are_folded_and_emptied():
    src = 'def f():\n    from firmware.events import DUTY\n    return DUTY\n'
    out = fold_tree({"firmware/events.py": EVENTS, "firmware/f.py": src})["firmware/f.py"]
    assert out == 'def f():\n    pass\n    return (50)\n'


def test_a_statement_sharing_its_line_is_refused():
    src = 'from firmware.events import DUTY; X = DUTY\n\n\ndef f():\n    return X\n'
    try:
        fold_tree({"firmware/events.py": EVENTS, "firmware/f.py": src})
    except FoldError as e:
        assert "line 1" in str(e)
    else:
        raise AssertionError("no FoldError")


SIMPLE = st.one_of(
    st.integers(-(2 ** 40), 2 ** 40), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30), st.binary(max_size=30),
)


@given(st.lists(st.one_of(SIMPLE, st.tuples(SIMPLE, SIMPLE)), min_size=1, max_size=6))
def test_folded_reader_computes_what_the_original_did(values):
    defs = "".join("K%d = %r\n" % (i, v) for i, v in enumerate(values))
    reader = "from hal import consts as C\n\n\ndef f():\n    return [%s]\n" % ", ".join(
        "C.K%d" % i for i in range(len(values)))
    out = fold_tree({"hal/consts.py": defs, "hal/reader.py": reader})["hal/reader.py"]
    ns = {}
    exec(compile(out, "reader", "exec"), ns)  # no import left: runs without hal.consts
    got = ns["f"]()
    assert len(got) == len(values)
    for g, v in zip(got, values, strict=True):
        assert g == v and type(g) is type(v)
