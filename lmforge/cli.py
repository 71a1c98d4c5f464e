"""`lmforge`: one command, its subcommands grouped by stage of the pipeline.

The subcommands live in lmforge/commands/, one module per group of stages; each declares its
commands' arguments beside the handler that runs them. Each handler builds the stage's config
and calls the module that does the work (the work itself never lives in the command line's
code). Heavy imports (torch) happen inside the handlers so that `--help` answers at once.
This module builds the top parser from the groups in the order of the pipeline, lists the
commands stage by stage in `lmforge --help`, and runs the one asked for.

Errors in what the user gave (an `InputError`) are printed as one line naming the file,
line and field, and the command exits with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
import warnings

from . import __version__
from .commands import align, baselines, data, evaluate, pretrain, represent, run, use
from .commands.run import RUN_STAGES
from .errors import InputError

__all__ = ["RUN_STAGES", "build_parser", "main"]

GROUPS = (data, pretrain, baselines, align, evaluate, represent, use, run)  # the pipeline's order, and `lmforge --help`'s


class _Group:
    """The top parser's subcommands as one group's `add_arguments` sees them: `add_parser` registers
    a command with argparse and keeps its one-line help for the listing by stage, so that each
    command's help is written once (argparse's own flat list of the commands is not shown)."""

    def __init__(self, subparsers, title: str):
        self._subparsers = subparsers
        self.title = title
        self.commands: list[tuple[str, str]] = []

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        self.commands.append((name, kwargs.pop("help")))
        return self._subparsers.add_parser(name, **kwargs)


def _listing(groups: list[_Group], width: int) -> str:
    """The commands stage by stage: a numbered heading for each group, then its commands and their help."""
    column = 4 + max(len(name) for g in groups for name, _ in g.commands)
    lines = ["commands, stage by stage in the order of the pipeline:"]
    for number, group in enumerate(groups, 1):
        lines += ["", f"{number} {group.title}"]
        for name, text in group.commands:
            text = text.replace("%%", "%")  # argparse's escape, which its own list would undo
            lines += textwrap.wrap(text, width, initial_indent=f"  {name}".ljust(column), subsequent_indent=" " * column)
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmforge",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the listing by stage is laid out by _listing
        epilog="Run 'lmforge COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"lmforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, help="one of the commands above")
    groups = []
    for module in GROUPS:
        groups.append(_Group(sub, module.TITLE))
        module.add_arguments(groups[-1], argparse.ArgumentDefaultsHelpFormatter)
    width = shutil.get_terminal_size().columns - 2  # as argparse's help formatter measures it
    parser.description = "Build and align a language model end to end.\n\n" + _listing(groups, max(width, 40))
    return parser


def _split_recipe(args) -> None:
    """`lmforge prepare key=value` (no recipe): the first positional is an override, not a file."""
    recipe = getattr(args, "recipe", None)
    if recipe is not None and "=" in recipe and not recipe.endswith((".yaml", ".yml")):
        args.overrides = [recipe, *args.overrides]
        args.recipe = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line parsed; exits with status 2 and argparse's message on a bad one."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse fills a trailing KEY=VALUE list only before the first option; overrides written
    # after options (`lmforge rl recipe.yaml --algorithm rloo rollout.group_size=4`) join it
    late = [a for a in extra if "=" in a and not a.startswith("-")]
    if extra != late or (late and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if late:
        args.overrides = [*args.overrides, *late]
    _split_recipe(args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prog = " ".join(["lmforge", args.command, getattr(args, "action", "") or ""]).strip()
    default_format = warnings.formatwarning
    warnings.formatwarning = lambda msg, cat, *a, **k: f"{prog}: warning: {msg}\n"
    try:
        return args.func(args)
    except InputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # unreadable files, full disks: the system's words, with the file
        where = f"{e.filename}: " if e.filename else ""
        print(f"{prog}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = default_format
