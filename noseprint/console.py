"""What every command shares: the one error path, the two consoles, and `--json` output.

The error path: a command raises; `CatchingGroup` turns a `NoseprintError` into one red line and its
exit code, and anything else into "unexpected failure" and exit 3 (NOSEPRINT_DEBUG=1 shows the
traceback instead). Commands therefore hold no try/except of their own. Library warnings (torch's
tracer, for one) are silenced here too: a command speaks in its own lines only.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.status import Status
from typer.core import TyperGroup

from noseprint.core.errors import NoseprintError

DEBUG_ENV_VAR = "NOSEPRINT_DEBUG"
UNEXPECTED_EXIT = 3

err = Console(stderr=True)
out = Console()

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def fail(exc: BaseException) -> NoReturn:
    """One line for the user instead of a traceback (NOSEPRINT_DEBUG=1 shows it)."""
    if os.environ.get(DEBUG_ENV_VAR):
        raise exc
    if isinstance(exc, NoseprintError):  # messages are text, not markup: "noseprint[registry]" must survive
        err.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(exc.exit_code)
    err.print(f"[red]error:[/] unexpected failure: {type(exc).__name__}: {escape(str(exc))}", highlight=False)
    raise typer.Exit(UNEXPECTED_EXIT)


class CatchingGroup(TyperGroup):
    """The command group that owns the error path for every command below it."""

    def invoke(self, ctx: Any) -> Any:  # a click Context: typer 0.29 vendors click and keeps its type private
        with warnings.catch_warnings():
            if not os.environ.get(DEBUG_ENV_VAR):
                warnings.simplefilter("ignore")
            try:
                return super().invoke(ctx)
            except (typer.Exit, typer.Abort, typer.TyperException):
                raise  # exit codes the commands chose, and typer's own usage errors
            except Exception as exc:
                fail(exc)


def stepper(status: Status) -> Callable[[str], None]:
    """A progress callback that shows the current step on the spinner line."""
    return lambda message: status.update(f"[bold]{message}…")


def step_lines(message: str) -> None:
    """A progress callback that prints each step on its own line: for commands whose long steps draw their own
    progress bar (chunk proofs), which a spinner would garble."""
    err.print(f"[bold]{message}…", highlight=False)


def emit_json(value: Any) -> None:
    print(json.dumps(value, indent=2))
