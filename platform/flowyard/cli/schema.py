"""flowyard schema"""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..schema_gen import flow_schema


def register(sub: Any) -> None:
    p = sub.add_parser("schema", help="print the JSON Schema of flow files")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    print(json.dumps(flow_schema(), indent=2))
    return 0
