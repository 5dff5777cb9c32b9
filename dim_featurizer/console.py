"""What the console scripts share: parsers that show defaults, and errors as one line on stderr.

Every error a user can cause (a missing or damaged file, a bad option, weights that do not load, a
missing optional dependency) ends a command with one line on stderr, ``prog: what is wrong``, and a
non-zero exit status, never a traceback. Anything else is a bug, and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from dim_featurizer.errors import WeightsError, one_line

#: The exceptions a user can cause; a console script reports them in one line.
USER_ERRORS = (OSError, ValueError, KeyError, EOFError, ImportError, WeightsError)


class ScriptHelp(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Help for a script whose description is its docstring: the text kept as written, every default shown."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose help shows every default and whose usage errors are one line."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:
        """Exit 2 with ``prog: error: message (see prog --help)`` as the only line on stderr."""
        self.exit(2, f"{self.prog}: error: {one_line(ValueError(message))} (see {self.prog} --help)\n")


def report_errors(prog: str, run: Callable[[], object]) -> int:
    """The exit status of ``run()``: its return value when that is an int, else 0; a user error instead prints
    ``prog: message`` on stderr and returns 1."""
    try:
        status = run()
        return status if isinstance(status, int) else 0
    except USER_ERRORS as e:
        text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e) or type(e).__name__
        print(f"{prog}: {' '.join(text.split())}", file=sys.stderr)
        return 1
