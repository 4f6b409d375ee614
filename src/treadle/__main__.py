"""The ``treadle`` command: dispatches to the tour, the crawler, the demo site and ``ps``.

Each subcommand lives in its own package and is imported only when asked for, so
``treadle --help`` stays fast and a missing optional extra only affects its command.
"""

from __future__ import annotations

import importlib
import os
import sys

# The optional extra each command's third-party imports come from.
EXTRAS = {"crawl": "crawl", "demo-site": "crawl"}

# subcommand -> (module, its function taking argv and returning the exit status, description)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "crawl": ("treadle.crawl.cli", "main", "crawl web sites (try: treadle crawl --demo)"),
    "demo-site": ("treadle.crawl.cli", "demo_site_main", "serve the generated demo site"),
    "tour": ("treadle.tour.cli", "main", "retrace the talk: from blocking sockets to coroutines"),
    "ps": ("treadle.introspect.client", "ps_main", "a running program's tasks, as a table"),
    "pstree": ("treadle.introspect.client", "pstree_main", "the same as a tree of await chains"),
}

USAGE = "usage: treadle COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(
    f"  {name:<12} {description}" for name, (_, _, description) in COMMANDS.items()
) + "\n\nRun 'treadle COMMAND --help' for a command's options."


def main(argv: list[str] | None = None) -> int:
    """Run ``treadle COMMAND ...``; the exit status."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] == "--version":
        from treadle import __version__

        print(f"treadle {__version__}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"treadle: unknown command {args[0]!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    module_name, function_name, _ = command
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        extra = EXTRAS.get(args[0])
        if extra is None or (exc.name or "").startswith("treadle"):
            raise
        print(
            f"treadle {args[0]}: needs the {exc.name!r} package, which comes with the "
            f"{extra!r} extra: pip install 'treadle[{extra}]'",
            file=sys.stderr,
        )
        return 1
    try:
        result: int = getattr(module, function_name)(args[1:])
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (``treadle crawl ... | head``): stop quietly, as other
        # command-line tools do. Point stdout at devnull so the exit flush can't fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE
    return result


if __name__ == "__main__":
    sys.exit(main())
