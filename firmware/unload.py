"""Drop boot-only modules (configuration, board wiring, the meter table) after start-up.

A module stays alive while `sys.modules` or its parent package refers to it, or while any live
object refers to one of its functions or classes (a function holds its module's globals). So the
run-time objects must come from other modules; `forget` removes the first two references, and
the next `gc.collect()` frees the code.
"""

import sys


def forget(*names):
    """Remove each named module from sys.modules and from its parent package; -> how many
    were loaded. Names that are not loaded are skipped (it is safe to call twice)."""
    dropped = 0
    for name in names:
        if sys.modules.pop(name, None) is None:
            continue
        dropped += 1
        dot = name.rfind(".")
        if dot > 0:
            parent = sys.modules.get(name[:dot])
            attr = name[dot + 1:]
            if parent is not None and attr in parent.__dict__:
                delattr(parent, attr)
    return dropped
