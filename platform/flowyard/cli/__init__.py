"""The `flowyard` command. Each sub-command is a module with `register(subparsers)`,
registered under the `flowyard.commands` entry points (a package adds its own there);
exit codes: 0 success, 1 something invalid or failed, 2 a bad command or flow."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence
from importlib.metadata import entry_points

from ..errors import FlowyardError
from ..secrets import RedactingFilter, redactor

COMMANDS_GROUP = "flowyard.commands"  # entry points: modules with register(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowyard", description="Integration flows declared in YAML.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for entry in sorted(entry_points(group=COMMANDS_GROUP), key=lambda e: e.name):
        entry.load().register(sub)
    return parser


def quiet_third_party_deprecations() -> None:
    """Deprecation notices of the libraries Flowyard uses (asyncssh's "DSA is deprecated"
    from cryptography, at every start) are for Flowyard's developers, not its users:
    they stay out of the terminal unless Python's own -W or PYTHONWARNINGS asks."""
    if sys.warnoptions:
        return
    others = r"^(?!flowyard)"
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=others)
    # cryptography's CryptographyDeprecationWarning is a UserWarning
    warnings.filterwarnings("ignore", message=r"(?s).*\bdeprecated\b", category=UserWarning, module=others)


def main(argv: Sequence[str] | None = None) -> int:
    quiet_third_party_deprecations()
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, handlers=[handler], format="%(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.handler(args)
    except FlowyardError as exc:
        print(redactor.redact(f"flowyard: {exc}"), file=sys.stderr)
        return 2
    except OSError as exc:
        print(redactor.redact(f"flowyard: {exc.strerror or exc}: {exc.filename or ''}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: say so plainly; -v shows the traceback
        if args.verbose:
            raise
        print(redactor.redact(f"flowyard: internal error: {type(exc).__name__}: {exc} (run with -v for details)"), file=sys.stderr)
        return 2
    return code


def run() -> None:
    sys.exit(main())
