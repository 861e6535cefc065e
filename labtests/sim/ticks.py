"""Give the functions of some source files a call to a tick function before each statement.

Why not ``sys.settrace``: while a trace function is set, CPython 3.11 runs every
frame of the thread unspecialised ("tracing mode"), the harness's and the
standard library's included, and calls the global tracer on each new frame;
that more than doubled the cost of a ``--sim --race`` run.  Instead, the
functions of the files in scope are recompiled from their source with a call
inserted before each statement, and the new code objects are put into the
functions already loaded (``fn.__code__``), for the duration of a simulation;
code outside those files runs untouched at full speed.

The rewrite (:class:`_AddTicks`), line numbers kept (the tick call carries its
statement's position, so tracebacks, stacks and race reports are unchanged):

* ``tick()`` before every statement of every function and class body (not the
  module's own statements, which ran at import; not a docstring, ``global`` or
  ``nonlocal``);
* a ``while`` condition becomes ``tick() and cond`` (re-checked on every
  iteration, as the line tracer saw the ``while`` line each time; that tick
  stands for the statement's own), unless it is a true constant (``while
  True:`` has no condition to re-check: the statement gets its one tick);
* a comprehension gets ``if tick()`` as its first condition on each ``for``
  (one point per iteration, as a backward jump was a line event);
* a lambda's body becomes ``tick() and body``.

``tick()`` returns True, so ``tick() and x`` is ``x``.  The call is compiled as a
call on a unique string constant, replaced by the tick function itself in the
code objects' constants (:func:`bind`): a constant load and a Python call per
statement, nothing added to the module's namespace.

Matching: each function reachable from a module (its globals, classes and
their methods, properties, static and class methods, closures of those,
``__wrapped__``) whose code came from the file is matched by
``(co_qualname, co_firstlineno)`` and swapped only if its current code equals
the plain compilation of the file's source as it is now -- so a file edited
since it was imported is left alone rather than half swapped.  Functions and
lambdas nested in a swapped function come with it (they are built from its
constants when it runs).  Not covered: modules imported after the swap, and
functions that were created before it and are reachable only from other
objects (a callback a Raft stored before the simulation started).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import warnings
from collections.abc import Callable, Iterator
from types import CodeType, FunctionType, ModuleType
from typing import Any

SENTINEL = "\x00raftlab: preemption tick\x00"

Key = tuple[str, int]


# -- the rewrite ------------------------------------------------------------------------


def _tick_call(at: ast.AST) -> ast.Call:
    call = ast.Call(func=ast.Constant(value=SENTINEL), args=[], keywords=[])
    ast.copy_location(call, at)
    ast.copy_location(call.func, at)
    return call


def _is_docstring(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


class _AddTicks(ast.NodeTransformer):
    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        if isinstance(node, ast.Module):
            return node  # the module's own statements ran at import
        doc_ok = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        for name, value in ast.iter_fields(node):
            if not (isinstance(value, list) and value and isinstance(value[0], ast.stmt)):
                continue
            out: list[ast.stmt] = []
            for i, stmt in enumerate(value):
                skip = (isinstance(stmt, (ast.Global, ast.Nonlocal))
                        or getattr(stmt, "raftlab_ticked_test", False)  # its test's tick
                        or (doc_ok and name == "body" and i == 0 and _is_docstring(stmt)))
                if not skip:
                    out.append(ast.copy_location(ast.Expr(value=_tick_call(stmt)), stmt))
                out.append(stmt)
            setattr(node, name, out)
        return node

    def visit_While(self, node: ast.While) -> ast.AST:  # noqa: N802 - NodeTransformer's name
        self.generic_visit(node)
        test = node.test
        if not (isinstance(test, ast.Constant) and test.value):
            node.test = ast.copy_location(
                ast.BoolOp(op=ast.And(), values=[_tick_call(test), test]), test)
            node.raftlab_ticked_test = True  # type: ignore[attr-defined]
        return node

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:  # noqa: N802
        self.generic_visit(node)
        body = node.body
        node.body = ast.copy_location(
            ast.BoolOp(op=ast.And(), values=[_tick_call(body), body]), body)
        return node

    def visit_comprehension(self, node: ast.comprehension) -> ast.AST:
        self.generic_visit(node)
        node.ifs.insert(0, _tick_call(node.iter))
        return node


def _compile(tree: ast.Module, filename: str) -> CodeType:
    with warnings.catch_warnings():
        # "'str' object is not callable": the sentinel call, rebound by bind()
        warnings.simplefilter("ignore", SyntaxWarning)
        return compile(tree, filename, "exec", dont_inherit=True)


def _nested(code: CodeType) -> Iterator[CodeType]:
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield const
            yield from _nested(const)


def _by_key(module_code: CodeType) -> dict[Key, CodeType]:
    """Every function's code in the module by (qualname, first line); ambiguous keys dropped."""
    found: dict[Key, CodeType] = {}
    twice: set[Key] = set()
    for code in _nested(module_code):
        key = (code.co_qualname, code.co_firstlineno)
        if key in found:
            twice.add(key)
        found[key] = code
    for key in twice:
        del found[key]
    return found


class Rewritten:
    """One source file compiled twice: as it is (to check) and with ticks (to run)."""

    def __init__(self, filename: str, source: str) -> None:
        tree = ast.parse(source, filename)
        self.plain = _by_key(_compile(tree, filename))
        ticked = _AddTicks().visit(ast.parse(source, filename))
        ast.fix_missing_locations(ticked)
        self.ticked = _by_key(_compile(ticked, filename))


_CACHE: dict[tuple[str, int, int], Rewritten | None] = {}


def rewritten(filename: str) -> Rewritten | None:
    """The file's two compilations (cached per file version), or None if unreadable."""
    try:
        st = os.stat(filename)
    except OSError:
        return None
    key = (filename, st.st_mtime_ns, st.st_size)
    if key not in _CACHE:
        try:
            with open(filename, "rb") as f:
                source = importlib.util.decode_source(f.read())
            _CACHE[key] = Rewritten(filename, source)
        except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
            _CACHE[key] = None
    return _CACHE[key]


def bind(code: CodeType, tick: Callable[[], bool], memo: dict[CodeType, CodeType]) -> CodeType:
    """``code`` with the sentinel constant replaced by ``tick``, in nested code too."""
    done = memo.get(code)
    if done is None:
        consts = tuple(
            tick if type(c) is str and c == SENTINEL
            else bind(c, tick, memo) if isinstance(c, CodeType) else c
            for c in code.co_consts)
        done = memo[code] = code.replace(co_consts=consts)
    return done


# -- finding the loaded functions ----------------------------------------------------------


def functions_of(module: ModuleType, filename: str) -> list[FunctionType]:
    """The functions whose code is in ``filename`` reachable from ``module``'s namespace."""
    found: list[FunctionType] = []
    seen: set[int] = set()
    todo: list[Any] = list(vars(module).values())
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, FunctionType):
            if obj.__code__.co_filename != filename:
                continue
            found.append(obj)
            for cell in obj.__closure__ or ():
                try:
                    todo.append(cell.cell_contents)
                except ValueError:  # an empty cell
                    pass
            wrapped = getattr(obj, "__wrapped__", None)
            if wrapped is not None:
                todo.append(wrapped)
        elif isinstance(obj, type):
            if getattr(obj, "__module__", None) == module.__name__:
                todo.extend(vars(obj).values())
        elif isinstance(obj, (staticmethod, classmethod)):
            todo.append(obj.__func__)
        elif isinstance(obj, property):
            todo.extend(f for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
    return found


class Swapped:
    """The functions given ticked code, to put their own code back with :meth:`undo`."""

    def __init__(self) -> None:
        self.saved: list[tuple[FunctionType, CodeType]] = []

    def install(self, modules: list[ModuleType], tick: Callable[[], bool]) -> None:
        memo: dict[CodeType, CodeType] = {}
        for module in modules:
            filename = getattr(module, "__file__", None)
            if not filename:
                continue
            versions = rewritten(filename)
            if versions is None:
                continue
            for fn in functions_of(module, filename):
                code = fn.__code__
                key = (code.co_qualname, code.co_firstlineno)
                plain, ticked = versions.plain.get(key), versions.ticked.get(key)
                if plain is None or ticked is None or plain != code:
                    continue  # not from this version of the file: leave it alone
                if ticked.co_freevars != code.co_freevars:
                    continue
                self.saved.append((fn, code))
                fn.__code__ = bind(ticked, tick, memo)

    def undo(self) -> None:
        while self.saved:
            fn, code = self.saved.pop()
            fn.__code__ = code

    def __len__(self) -> int:
        return len(self.saved)
