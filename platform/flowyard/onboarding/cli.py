"""Command line for onboarding and git review: `flowyard render`, `flowyard onboard`,
`flowyard fmt`, `flowyard diff`. The work is done by library modules (templates,
onboarding, fmt, semdiff, impact) that the UI uses too; this module only parses
arguments and prints."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import DefinitionError, FlowyardError
from ..secrets import redactor


def register(sub: Any) -> None:
    p = sub.add_parser("render", help="print the flow an instance expands to")
    p.add_argument("instance", type=Path, metavar="INSTANCE")
    p.set_defaults(handler=handle_render)

    p = sub.add_parser("onboard", help="write a new instance of a template, validated")
    p.add_argument("template", metavar="TEMPLATE", help="a template file, or a template name found in flows/templates/")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="a parameter value (repeat)")
    p.add_argument("--values", type=Path, metavar="FILE", help="a YAML or JSON file of values (--set wins)")
    p.add_argument("--name", help="instance name (default: the name the template gives its flow)")
    p.add_argument("--dir", type=Path, metavar="DIR", help="folder of the new instance (default: the folder holding templates/)")
    p.add_argument("--dry-run", action="store_true", help="print the instance and the rendered flow, write nothing")
    p.add_argument("--list", action="store_true", help="list the template's parameters and exit")
    p.set_defaults(handler=handle_onboard)

    p = sub.add_parser("fmt", help="normalise the layout of YAML definition files (stable for git)")
    p.add_argument("paths", nargs="*", type=Path, default=[Path("flows")], metavar="PATH")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when a file is not formatted")
    p.set_defaults(handler=handle_fmt)

    p = sub.add_parser("diff", help="semantic diff of two flow versions, or rendered diff of template changes")
    p.add_argument("files", nargs="*", metavar="A B", help="two flow or instance files (A may be REV:path)")
    p.add_argument("--rendered", nargs="?", const="HEAD", default=None, metavar="GIT-REV", help="how every instance's rendered flow changes since GIT-REV (default HEAD)")
    p.add_argument("--paths", nargs="*", type=Path, default=None, metavar="PATH", help="with --rendered: where to look for instances (default: flows examples)")
    p.add_argument("--no-tests", action="store_true", help="with --rendered: do not run the instances' tests")
    p.add_argument("--text", action="store_true", help="also print a line diff of the rendered YAML")
    p.add_argument("--git", action="store_true", help="act as git's external diff driver (git passes 7 arguments)")
    p.set_defaults(handler=handle_diff)


def _print_issues(exc: DefinitionError) -> None:
    for issue in exc.issues:
        print(redactor.redact(str(issue)), file=sys.stderr)


def handle_render(args: argparse.Namespace) -> int:
    from .render import render_instance, render_instance_flows
    from .template import load_instance_file

    if not args.instance.is_file():
        print(f"flowyard render: {args.instance}: no such file", file=sys.stderr)
        return 2
    try:
        instance = load_instance_file(args.instance)
        flows = [render_instance(instance)] if instance.flow is not None else render_instance_flows(instance)
        for rendered in flows:
            if rendered.ok:
                rendered.flow()
    except DefinitionError as exc:
        _print_issues(exc)
        return 1
    for rendered in flows:
        if not rendered.ok:
            _print_issues(DefinitionError(rendered.issues))
            return 1
    for index, rendered in enumerate(flows):
        for issue in rendered.issues:
            print(redactor.redact(str(issue)), file=sys.stderr)
        if len(flows) > 1:  # several YAML documents, one per flow
            sys.stdout.write(("---\n" if index else "") + f"# flow {index + 1} of {len(flows)}: {rendered.name}\n")
        sys.stdout.write(rendered.text)
    return 0


def handle_onboard(args: argparse.Namespace) -> int:
    from .onboard import main as onboard_main

    return onboard_main(args)


def handle_fmt(args: argparse.Namespace) -> int:
    from ..fmt import main as fmt_main

    return fmt_main(args.paths, check=args.check)


def handle_diff(args: argparse.Namespace) -> int:
    try:
        if args.rendered is not None:
            from .impact import main as impact_main

            if args.files:
                print("flowyard diff --rendered takes a git revision, not files", file=sys.stderr)
                return 2
            return impact_main(args.rendered, args.paths, run_tests=not args.no_tests, text=args.text)
        from ..semdiff import git_external
        from ..semdiff import main as semdiff_main

        if args.git:
            return git_external(list(args.files))
        if len(args.files) != 2:
            print("flowyard diff: give two files (A B), or --rendered [GIT-REV]", file=sys.stderr)
            return 2
        return semdiff_main(args.files[0], args.files[1], text=args.text)
    except DefinitionError as exc:
        _print_issues(exc)
        return 2
    except FlowyardError as exc:
        print(redactor.redact(f"flowyard diff: {exc}"), file=sys.stderr)
        return 2
