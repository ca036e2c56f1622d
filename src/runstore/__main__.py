"""``python -m runstore`` and the ``runstore`` console script."""

from __future__ import annotations

import sys


def main() -> None:
    """Run the command line."""
    try:
        from .cli import cli
    except ImportError as exc:  # a broken install: say what to do, not a traceback
        if exc.name not in ("click", "rich"):
            raise
        print(f"runstore: the command line needs {exc.name}, a dependency of runstore; "
              f"reinstall it with: pip install --force-reinstall runstore", file=sys.stderr)
        raise SystemExit(1) from None
    cli(prog_name="runstore")


if __name__ == "__main__":
    main()
