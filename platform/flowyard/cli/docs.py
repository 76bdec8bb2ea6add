"""flowyard docs: the option reference, generated from the option models."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("docs", help="print (or write) the option reference generated from the models")
    p.add_argument("--output", type=Path, help="write to this file instead of printing")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from ..schema_gen import reference_markdown  # every step and connector: not for `flowyard --help`

    text = reference_markdown()
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0
