"""The bounded Jinja sandbox prompts are rendered in.

Jinja's own sandbox keeps a template from reaching Python's internals, but not from running for
ever or filling memory: ``range`` is capped per call (so two nested loops make 10^10 steps),
``'x' * 10**10`` and ``'x'.ljust(10**10)`` allocate what they are asked to, and output inside loops
grows without end. One row's template here has a budget:

- **steps**: every loop of a row (each ``{% for %}`` is compiled to count its steps, whatever
  it iterates: a ``range``, a column, a string) shares one count of ``MAX_STEPS``;
- **size**: repetition (``*``), powers (``**``), and any method call given a count above
  ``MAX_CHARS`` are refused, and a row's output stops at ``MAX_CHARS`` characters;
- **time**: ``MAX_SECONDS`` a row, checked every few loop steps and at every method call, in
  any thread. (No ``SIGALRM``: a process has one, and a test runner or the caller may own it.)
  The event loop is blocked while a row renders, so this bound is also what keeps Ctrl-C and
  SIGTERM answered.

A row over its budget raises ``RowError``: it becomes a ``render`` error row, the run goes on.
It does not know about rows or columns; ``render`` does.
"""

from __future__ import annotations

import operator
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

from batchllm.errors import RowError

MAX_STEPS = 1_000_000
MAX_CHARS = 64 * 1024 * 1024
MAX_SECONDS = 2.0
#: the largest exponent ``**`` computes (a bigger one is a CPU bomb that no signal interrupts)
MAX_EXPONENT = 4096
_CHECK_EVERY = 64
#: the global every compiled loop iterates through
_STEP = "__batchllm_step"


class _Budget(threading.local):
    """What the row being rendered on this thread may still spend."""

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.deadline = float("inf")

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise RowError(f"the template ran longer than {MAX_SECONDS:g} s on this row")


class BoundedEnvironment(SandboxedEnvironment):
    """A ``SandboxedEnvironment`` whose templates render within a per-row budget."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._budget = _Budget()
        self.globals["range"] = self._range
        self.globals[_STEP] = self._steps

    def bounded(self, parsed: nodes.Template) -> jinja2.Template:
        """Compile a parsed template with every loop counting its steps."""
        for loop in parsed.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.Name(_STEP, "load"), [loop.iter], [], None, None)
        code = self.compile(parsed)
        return self.template_class.from_code(self, code, self.make_globals(None), None)

    @contextmanager
    def row_budget(self) -> Iterator[None]:
        """Renders inside share one row's budget (its system and user templates)."""
        budget = self._budget
        budget.steps = MAX_STEPS
        budget.deadline = time.monotonic() + MAX_SECONDS
        yield

    def render(self, template: jinja2.Template, context: dict[str, Any]) -> str:
        """Render ``template`` over ``context`` (inside ``row_budget``)."""
        return _join(template.root_render_func(template.new_context(context, shared=True)))

    def call_binop(self, context: jinja2.runtime.Context, op: str, left: Any, right: Any) -> Any:
        if op == "*":
            _check_repeat(left, right)
            _check_repeat(right, left)
            return operator.mul(left, right)
        huge = isinstance(right, int) and right > MAX_EXPONENT
        if huge and isinstance(left, int) and abs(left) > 1:
            raise RowError(f"the template computes a power too large ({left} ** {right})")
        return super().call_binop(context, op, left, right)

    def call(
        __self,
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        __self._budget.check_time()
        for value in (*args, *kwargs.values()):
            if isinstance(value, int) and not isinstance(value, bool) and value > MAX_CHARS:
                raise RowError(f"the template asks a call for {value:,} of something: too many")
        return super().call(__context, __obj, *args, **kwargs)

    def _range(self, *args: int) -> range:
        items = range(*args)
        if len(items) > MAX_STEPS:
            raise RowError(f"the template asks for a range of {len(items):,} items: too many")
        return items

    def _steps(self, items: Any) -> Iterator[Any]:
        """``items`` iterated one step of the row's budget at a time."""
        budget = self._budget
        for item in items:
            budget.steps -= 1
            if budget.steps % _CHECK_EVERY == 0:
                if budget.steps < 0:
                    raise RowError(
                        f"the template's loops take more than {MAX_STEPS:,} steps on this row"
                    )
                budget.check_time()
            yield item


def _check_repeat(sequence: Any, count: Any) -> None:
    if not isinstance(sequence, str | bytes | list | tuple) or not isinstance(count, int):
        return
    if len(sequence) * count > MAX_CHARS:
        raise RowError(
            f"the template repeats a value into {len(sequence) * count:,} items: too large"
        )


def _join(chunks: Iterator[str]) -> str:
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_CHARS:
            raise RowError(f"the template's output passed {MAX_CHARS:,} characters on this row")
        out.append(chunk)
    return "".join(out)
