"""Fold module-level constants into the code that uses them, before mpy-cross compiles it.

MicroPython keeps every module-level name as a dict entry plus an interned name for the life of
the program, and `other_module.NAME` costs a lookup each time. Its own `const()` only folds
integers inside one module. On a 64-bit unix port our ~270 named constants (event kinds, status
codes, register numbers, ...) cost ~15 KB of heap and ~300 qstrs, so the build folds them the way
a C compiler folds `#define`s: the source keeps its names, the deployed bytecode has literals.

What is a constant: a top-level `NAME = <expr>` in a `firmware/` or `hal/` module, NAME in
UPPER_CASE (leading `_` allowed), assigned exactly once in its module, whose value is built from
literals (str, bytes, int, float, bool, None, tuples of those), other constants, `const(...)`
and arithmetic. A use is `NAME` in the defining module, a name imported with
`from pkg.mod import NAME`, or `alias.NAME` where `alias` is an imported module. Names bound
anywhere else in a file (an argument, a local, a loop variable) are never folded in that file.

Strings of up to 10 characters are interned by MicroPython anyway, so they and all numbers are
folded everywhere. A longer string, bytes or a tuple would become one heap object per module that
holds a copy, so it is folded only when a single module uses it.

After folding, imports that only fetched folded constants are removed, and a definition nobody
reads any more is removed from its module; a module read dynamically (`getattr(mod, name)`)
keeps all of its definitions. Every edit keeps line numbers (tracebacks stay true): a removed
statement becomes `pass` or blank lines.

    fold_tree(sources) -> {path: folded_text}   # sources: {path: text}, path like "hal/x.py"
"""

import ast
import re

CONSTANT_NAME = re.compile(r"^_?[A-Z][A-Z0-9_]*$")
PACKAGES = ("firmware", "hal")
INTERNED_MAX = 10  # MicroPython's parser interns string literals up to this length
_SIMPLE = (str, bytes, int, float, bool, type(None))


class FoldError(Exception):
    """A source file the fold cannot handle safely (the message names file and line)."""


def module_name(path):
    """"hal/boards/x.py" -> "hal.boards.x" ("pkg/__init__.py" -> "pkg")."""
    mod = path[:-3].replace("\\", "/").replace("/", ".")
    return mod[:-9] if mod.endswith(".__init__") else mod


def _is_ours(mod):
    return mod is not None and mod.split(".")[0] in PACKAGES


# -- which names a file binds, imports and reads -------------------------------------------
class _Bindings(ast.NodeVisitor):
    """Every name bound inside a function, class or comprehension of a file (arguments,
    assignments, loop and `except` variables, `global` names). Imports are not counted: a
    constant imported inside a function is folded like one imported at the top."""

    def __init__(self):
        self.local = set()
        self.depth = 0

    def _bind(self, name):
        if self.depth:
            self.local.add(name)

    def visit_FunctionDef(self, node):
        for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs:
            self.local.add(a.arg)
        for a in (node.args.vararg, node.args.kwarg):
            if a is not None:
                self.local.add(a.arg)
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    def visit_Name(self, node):
        if not isinstance(node.ctx, ast.Load):
            self._bind(node.id)

    def visit_Global(self, node):
        self.local.update(node.names)

    visit_Nonlocal = visit_Global

    def visit_ExceptHandler(self, node):
        if node.name:
            self.local.add(node.name)
        self.generic_visit(node)

    def visit_comprehension(self, node):
        self.depth += 1
        self.visit(node.target)
        self.depth -= 1
        self.visit(node.iter)
        for cond in node.ifs:
            self.visit(cond)


def _imports(tree, modules):
    """(module aliases {alias: module}, imported names {name: (module, attr)}) of a file,
    wherever its import statements are; `modules` are the module names the fold knows."""
    aliases, names = {}, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name in modules:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _is_ours(node.module):
            for a in node.names:
                sub = node.module + "." + a.name
                if sub in modules:
                    aliases[a.asname or a.name] = sub
                else:
                    names[a.asname or a.name] = (node.module, a.name)
    return aliases, names


# -- the constant table --------------------------------------------------------------------
def _eval(node, env):
    """The value of a constant expression, or raise _NotConstant."""
    if isinstance(node, ast.Constant) and isinstance(node.value, _SIMPLE):
        if isinstance(node.value, float) and node.value - node.value != 0:
            raise _NotConstant()  # inf / nan have no literal
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_eval(e, env) for e in node.elts)
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        key = node.value.id + "." + node.attr
        if key in env:
            return env[key]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "const" \
            and len(node.args) == 1 and not node.keywords:
        return _eval(node.args[0], env)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Invert, ast.UAdd)):
        v = _eval(node.operand, env)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return {ast.USub: lambda x: -x, ast.Invert: lambda x: ~x,
                    ast.UAdd: lambda x: x}[type(node.op)](v)
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, env), _eval(node.right, env)
        op = _BINOPS.get(type(node.op))
        if op is not None and type(a) is type(b) and not isinstance(a, bool):
            if isinstance(a, (int, float)) or (type(node.op) is ast.Add):
                return op(a, b)
    raise _NotConstant()


class _NotConstant(Exception):
    pass


_BINOPS = {
    ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
    ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b,
    ast.LShift: lambda a, b: a << b, ast.RShift: lambda a, b: a >> b,
    ast.BitOr: lambda a, b: a | b, ast.BitAnd: lambda a, b: a & b, ast.BitXor: lambda a, b: a ^ b,
    ast.Div: lambda a, b: a / b,
}


def _candidates(tree):
    """Top-level single-target assignments to UPPER names that happen exactly once."""
    counts = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            counts[node.id] = counts.get(node.id, 0) + 1
    out = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if CONSTANT_NAME.match(name) and counts.get(name) == 1:
                out.append((name, node))
    return out


def constant_table(trees):
    """{module: {name: value}} over every firmware/hal module (imports between them resolved
    by iterating until nothing changes)."""
    table = {mod: {} for mod in trees}
    changed = True
    while changed:
        changed = False
        for mod, tree in trees.items():
            aliases, names = _imports(tree, table)
            env = {}
            for alias, other in aliases.items():
                for k, v in table.get(other, {}).items():
                    env[alias + "." + k] = v
            for local, (other, attr) in names.items():
                if attr in table.get(other, {}):
                    env[local] = table[other][attr]
            env.update(table[mod])
            for name, node in _candidates(tree):
                if name in table[mod]:
                    continue
                try:
                    value = _eval(node.value, env)
                except (_NotConstant, ArithmeticError, TypeError, ValueError):
                    continue
                table[mod][name] = value
                env[name] = value
                changed = True
    return table


# -- folding one file ----------------------------------------------------------------------
def _literal(value):
    """Source text for a value; numbers in parentheses so `(5).bit_length()` and `-(-1)` parse."""
    text = repr(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "(" + text + ")"
    return text


def _big(value):
    return isinstance(value, tuple) or (isinstance(value, (str, bytes))
                                        and len(value) > INTERNED_MAX)


def _uses(tree, mod, table):
    """[(node, (module, name))] of every constant read in a file."""
    aliases, names = _imports(tree, table)
    binder = _Bindings()
    binder.visit(tree)
    own = table.get(mod, {})
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) \
                and isinstance(node.value, ast.Name) and node.value.id in aliases \
                and node.value.id not in binder.local:
            other = aliases[node.value.id]
            if node.attr in table.get(other, {}):
                found.append((node, (other, node.attr)))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) \
                and node.id not in binder.local:
            if node.id in names:
                other, attr = names[node.id]
                if attr in table.get(other, {}):
                    found.append((node, (other, attr)))
            elif node.id in own:
                found.append((node, (mod, node.id)))
    return found


def _edit(lines, edits):
    """Apply (line, start, end, text) edits (0-based line, byte columns) right to left."""
    for line, start, end, text in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        b = lines[line]
        lines[line] = b[:start] + text.encode() + b[end:]


def _blank_statement(lines, node, replacement=b"pass"):
    """Replace a whole statement by `replacement` on its first line and blank lines after it."""
    first, last = node.lineno - 1, node.end_lineno - 1
    indent = lines[first][:node.col_offset]
    rest = lines[last][node.end_col_offset:].strip()
    if indent.strip() or (rest and not rest.startswith(b"#")):
        raise FoldError("line %d: the statement shares its line" % node.lineno)
    lines[first] = indent + replacement + b"\n"
    for i in range(first + 1, last + 1):
        lines[i] = b"\n"


def _loaded_names(tree):
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _drop_dead_imports(text, used_before, path):
    """Remove the imports (of our modules) whose name the fold made unused: read before the
    fold, read nowhere after it. Re-exports (never read in the file) stay."""
    tree = ast.parse(text, path)
    used = _loaded_names(tree)
    dead = used_before - used
    lines = text.encode().splitlines(keepends=True)
    changed = False
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _is_ours(node.module):
            keep = [a for a in node.names if (a.asname or a.name) not in dead]
            if len(keep) == len(node.names):
                continue
            stmt = b"pass" if not keep else ("from %s import %s" % (node.module, ", ".join(
                a.name + (" as " + a.asname if a.asname else "") for a in keep))).encode()
            _blank_statement(lines, node, stmt)
            changed = True
        elif isinstance(node, ast.Import) and len(node.names) == 1 and node.names[0].asname \
                and _is_ours(node.names[0].name) and node.names[0].asname in dead:
            _blank_statement(lines, node)
            changed = True
    return b"".join(lines).decode() if changed else text


def fold_tree(sources, extra=()):
    """Fold the constants of every firmware/hal file in `sources` ({path: text}) into all of
    `sources` and `extra` (more {path: text}, e.g. tests that run on the device image, whose
    own constants are not collected). Returns {path: folded text} for both."""
    everything = dict(sources)
    everything.update(extra)
    parsed = {p: ast.parse(t, p) for p, t in everything.items()}
    table = constant_table({module_name(p): parsed[p] for p in sources
                            if _is_ours(module_name(p))})
    uses = {p: _uses(parsed[p], module_name(p), table) for p in everything}
    # a big value is folded only where one module (the definer included) reads it
    readers = {}
    for path, found in uses.items():
        for _node, key in found:
            readers.setdefault(key, set()).add(path)
    foldable = {key for key in readers
                if not _big(table[key[0]][key[1]]) or len(readers[key]) == 1}
    dynamic = _dynamic_modules(parsed, table)
    out = {}
    for path, text in everything.items():
        lines = text.encode().splitlines(keepends=True)
        edits = []
        for node, key in uses[path]:
            if key not in foldable:
                continue
            if node.lineno != node.end_lineno:
                raise FoldError("%s:%d: a constant spans lines" % (path, node.lineno))
            edits.append((node.lineno - 1, node.col_offset, node.end_col_offset,
                          _literal(table[key[0]][key[1]])))
        _edit(lines, edits)
        folded = b"".join(lines).decode()
        out[path] = _drop_dead_imports(folded, _loaded_names(parsed[path]), path) \
            if edits else folded
    return _drop_dead_definitions(out, table, dynamic)


def _dynamic_modules(parsed, modules):
    """Modules some file reads with getattr(alias, ...): they keep every definition."""
    out = set()
    for tree in parsed.values():
        mods, _names = _imports(tree, modules)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                    and node.func.id in ("getattr", "hasattr", "dir") and node.args \
                    and isinstance(node.args[0], ast.Name) and node.args[0].id in mods:
                out.add(mods[node.args[0].id])
    return out


def _drop_dead_definitions(texts, table, dynamic):
    """Remove constant definitions that no file reads any more (after folding)."""
    parsed = {p: ast.parse(t, p) for p, t in texts.items()}
    still = set()
    for path, tree in parsed.items():
        for _node, key in _uses(tree, module_name(path), table):
            still.add(key)
        _aliases, names = _imports(tree, table)
        still.update(names.values())  # still imported by name: keep it
    out = dict(texts)
    for path, tree in parsed.items():
        mod = module_name(path)
        if mod not in table or mod in dynamic:
            continue
        lines = texts[path].encode().splitlines(keepends=True)
        changed = False
        for name, node in _candidates(tree):
            if name in table[mod] and (mod, name) not in still:
                _blank_statement(lines, node)
                changed = True
        if changed:
            out[path] = b"".join(lines).decode()
    return out
