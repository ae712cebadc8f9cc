"""What the three command lines share: exit codes, the error line, NaN-safe floats, Ctrl-C, ``--version``.

``cxr-edge`` (:mod:`cxr_edge.cli`), ``python -m train`` (:mod:`train.cli`) and
``python -m convert`` (:mod:`convert.cli`) each parse their own options and call their own
library; they fail the same way, so a script that runs all three reads one set of codes:

  0  done
  1  done, with findings: unreadable or rejected inputs, a variant flagged by parity
  2  usage error (Click's own code: a bad option, a missing path)
  3  bad input or a fatal failure, said in one line: ``<prog>: error: <why>``
  130  interrupted (Ctrl-C)

Only Click is imported: ``--help`` of every command stays fast.
"""

from __future__ import annotations

import contextlib
import math
import sys
from typing import Callable, Iterator, NoReturn

import click

from cxr_edge import __version__

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_FATAL = 3
EXIT_INTERRUPTED = 130


class FloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses NaN, which passes every bound check (all comparisons
    with NaN are false) and would silently turn a threshold into "never flag"."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


class Float(click.types.FloatParamType):
    """A float option without bounds that refuses NaN as :class:`FloatRange` does."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if math.isnan(number):
            self.fail(f"{value!r} is not a number", param, ctx)
        return number


def example(*lines: str) -> str:
    """The block that ends every command's help: one or more command lines to copy."""
    return "\b\nExample:\n" + "\n".join(f"  {line}" for line in lines)


def fail(prog: str, message: str, code: int = EXIT_FATAL) -> NoReturn:
    """Print ``<prog>: error: <message>`` on stderr and exit with ``code``."""
    click.echo(f"{prog}: error: {message}", err=True)
    sys.exit(code)


@contextlib.contextmanager
def interruptible(prog: str, message: str = "interrupted") -> Iterator[None]:
    """Ctrl-C: one line (``message``: what is kept and how to go on) and exit 130, no traceback."""
    try:
        yield
    except KeyboardInterrupt as exc:
        fail(prog, str(exc) or message, EXIT_INTERRUPTED)


def version_option(prog: str) -> Callable:
    """``--version``/``-V``: the package version (one version for the three command lines)."""
    return click.version_option(__version__, "--version", "-V", prog_name=prog)


def interruptible_class(base: type[click.Command], prog: str) -> type[click.Command]:
    """``base`` (a Click command or group class) whose commands exit 130 on Ctrl-C via :func:`interruptible`
    (Click's own handling prints "Aborted!" and exits 1)."""

    class Interruptible(base):  # type: ignore[valid-type, misc]
        def invoke(self, ctx: click.Context):
            with interruptible(prog):
                return super().invoke(ctx)

    return Interruptible
