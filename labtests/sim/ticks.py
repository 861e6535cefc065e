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
the plain compilation of the file's source as it is now.  Functions and lambdas
nested in a swapped function come with it (they are built from its constants
when it runs).  Not covered: modules imported after the swap, and functions
that were created before it and are reachable only from other objects (a
callback a Raft stored before the simulation started).

What cannot be swapped is said (:func:`match`, :class:`NotSwapped`), never
skipped in silence: a file edited since it was imported (a student saving
during a run, a long-lived stress worker, a shared checkout) would otherwise
run with fewer preemption points than a fresh process gives it, so the same
seed would interleave otherwise and the printed rerun command would not
reproduce the verdict.  Such a function is *stale* -- its code differs from
the file's (edited), its line no longer holds a function of its name while
the file has one elsewhere (moved: the file changed above it), or the file
cannot be read or compiled any more -- and a file with a stale function is
left alone as a whole rather than half swapped; :class:`StaleSource` is the
error that refuses such a run (line preemption raises it, :mod:`labtests.sim.preempt`).
Left alone as in any process, so not stale: two functions of one name on one
line (lambdas; their key is ambiguous), functions not compiled from the file's
text (``exec``, a decorator's wrapper from another file: not matched at all),
a file that is not source (``.pyc``, an extension), a function whose code was
given other flags after compiling (``@types.coroutine``), and a function of a
test file that pytest rewrote for its assertions (its code never equals the plain
compilation; reported, not stale).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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


def _by_key(module_code: CodeType) -> tuple[dict[Key, CodeType], set[Key]]:
    """Every function's code in the module by (qualname, first line), and the keys
    that name more than one (two lambdas on one line: dropped, they cannot be told apart)."""
    found: dict[Key, CodeType] = {}
    twice: set[Key] = set()
    for code in _nested(module_code):
        key = (code.co_qualname, code.co_firstlineno)
        if key in found:
            twice.add(key)
        found[key] = code
    for key in twice:
        del found[key]
    return found, twice


class Rewritten:
    """One source file compiled twice: as it is (to check) and with ticks (to run)."""

    def __init__(self, filename: str, source: str) -> None:
        tree = ast.parse(source, filename)
        self.plain, self.ambiguous = _by_key(_compile(tree, filename))
        self.names = {name for name, _ in self.plain} | {name for name, _ in self.ambiguous}
        ticked = _AddTicks().visit(ast.parse(source, filename))
        ast.fix_missing_locations(ticked)
        self.ticked, _ = _by_key(_compile(ticked, filename))


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


# -- matching them with the file as it is now -------------------------------------------

EDITED = "edited since it was loaded"
MOVED = "no longer at this line: the file changed above it"
UNREADABLE = "the file cannot be read or compiled now"
FREEVARS = "its ticked code has other free variables"  # never seen; not a staleness
AMBIGUOUS = "another function of that name starts on the same line"
NO_SOURCE = "not loaded from a source file"
ASSERT_REWRITTEN = "compiled by pytest's assertion rewriting, not from the plain source"
# Same code, other flags: set after compiling, in any process (``@types.coroutine`` marks
# a generator CO_ITERABLE_COROUTINE by replacing its code, as asyncio's own helpers are).
FLAGS_SET = "its code's flags were set after compiling (e.g. @types.coroutine)"


@dataclass(frozen=True)
class NotSwapped:
    """A function (or a whole file) that keeps its own code, and why.

    ``stale``: a fresh process would swap it (the file changed on disk since this
    process loaded it), so a run without it is not the run its seed makes there.
    """

    filename: str
    why: str
    stale: bool
    qualname: str = ""
    line: int = 0

    def __str__(self) -> str:
        where = f"{self.filename}:{self.line} {self.qualname}" if self.qualname else self.filename
        return f"{where} ({self.why})"


@dataclass
class Matched:
    """What :meth:`Swapped.install` would do: each function's ticked code, or why not."""

    swap: list[tuple[FunctionType, CodeType]] = field(default_factory=list)
    left: list[NotSwapped] = field(default_factory=list)

    @property
    def stale(self) -> list[NotSwapped]:
        """The functions (and files) that changed on disk since they were loaded."""
        return [n for n in self.left if n.stale]


def _assertion_rewritten(module: ModuleType) -> bool:
    """Imported through pytest's assertion rewriting (a test file, a conftest)."""
    loader = getattr(getattr(module, "__spec__", None), "loader", None)
    return type(loader).__name__ == "AssertionRewritingHook"


def _match_file(module: ModuleType, filename: str, out: Matched) -> None:
    functions = functions_of(module, filename)
    if not functions:
        return
    if not filename.endswith(".py"):
        out.left.append(NotSwapped(filename, NO_SOURCE, stale=False))
        return
    versions = rewritten(filename)
    if versions is None:
        out.left.append(NotSwapped(filename, UNREADABLE, stale=True))
        return
    by_pytest = _assertion_rewritten(module)
    swap: list[tuple[FunctionType, CodeType]] = []
    left: list[NotSwapped] = []
    for fn in functions:
        code = fn.__code__
        qualname, line = code.co_qualname, code.co_firstlineno
        key = (qualname, line)
        plain, ticked = versions.plain.get(key), versions.ticked.get(key)
        why, stale = "", False
        if key in versions.ambiguous:
            why = AMBIGUOUS
        elif plain is None:
            if qualname not in versions.names:
                continue  # not compiled from the file's text (exec): not the file's to tick
            why, stale = MOVED, True
        elif plain != code:
            if plain.replace(co_flags=code.co_flags) == code:
                why = FLAGS_SET
            else:
                why, stale = (ASSERT_REWRITTEN, False) if by_pytest else (EDITED, True)
        elif ticked is None or ticked.co_freevars != code.co_freevars:
            why = FREEVARS
        else:
            swap.append((fn, ticked))
            continue
        left.append(NotSwapped(filename, why, stale, qualname, line))
    out.left.extend(sorted(left, key=lambda n: n.line))  # in the file's order
    if any(n.stale for n in left):
        return  # an edited file is left alone rather than half swapped
    out.swap.extend(swap)


def match(modules: list[ModuleType]) -> Matched:
    """Match the functions of ``modules`` with their files as they are now (see the
    module's docstring, Matching): the one walk behind :meth:`Swapped.install` and
    every check that a run's preemption points are a fresh process's."""
    out = Matched()
    for module in modules:
        filename = getattr(module, "__file__", None)
        if isinstance(filename, str) and filename:
            _match_file(module, filename, out)
    return out


SHOWN = 5  # stale functions named in a StaleSource message; the rest are counted
RERUN_FRESH = ("rerun once the files are final (a process that loaded them earlier, such as "
               "a stress worker, must be restarted)")


def stale_message(stale: list[NotSwapped], what_to_do: str = RERUN_FRESH) -> str:
    """The words for a run refused because the source changed since it was loaded: one
    line (the reason a verdict line shows), then the stale functions."""
    more = f"\n  ... and {len(stale) - SHOWN} more" if len(stale) > SHOWN else ""
    return ("the implementation's source changed on disk after this process loaded it, so "
            "line preemption cannot give it the points a fresh process gives it (the seed "
            f"would interleave otherwise): {what_to_do}\n"
            + "\n".join(f"  {n}" for n in stale[:SHOWN]) + more)


class StaleSource(RuntimeError):
    """A run with line preemption refused: some function in scope is stale (:class:`NotSwapped`)."""

    def __init__(self, stale: list[NotSwapped], what_to_do: str = RERUN_FRESH) -> None:
        super().__init__(stale_message(stale, what_to_do))
        self.stale = stale


class Swapped:
    """The functions given ticked code, to put their own code back with :meth:`undo`."""

    def __init__(self) -> None:
        self.saved: list[tuple[FunctionType, CodeType]] = []

    def install(self, modules: list[ModuleType] | Matched,
                tick: Callable[[], bool]) -> list[NotSwapped]:
        """Give ticked code to what :func:`match` found swappable (``modules``, or their
        match already made); return what keeps its own code, and why."""
        matched = modules if isinstance(modules, Matched) else match(modules)
        memo: dict[CodeType, CodeType] = {}
        for fn, ticked in matched.swap:
            self.saved.append((fn, fn.__code__))
            fn.__code__ = bind(ticked, tick, memo)
        return matched.left

    def undo(self) -> None:
        while self.saved:
            fn, code = self.saved.pop()
            fn.__code__ = code

    def __len__(self) -> int:
        return len(self.saved)
