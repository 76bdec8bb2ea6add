"""What xml.xslt's worker process costs on a normal small transform (issue 17 item 3).

Each transform of `xml.xslt` goes to a worker process that is killed past `time_limit`.
This prints, for a ~1.3 KB purchase order turned into a receipt by a small stylesheet:

- in process: the hardened parse and the compiled stylesheet in this process (what the
  step did before), per transform;
- isolated: the same through `flowyard.xml.isolated.IsolatedXslt` (a pipe round trip to
  a kept worker), per transform;
- the worker's start (a new interpreter, lxml and the stylesheet compiled), paid on the
  first message and after each kill.

Rounds alternate between the two so background load hits them alike; the figures are
medians of the rounds.

    .venv/bin/python bench/xslt_isolation.py [--rounds 7] [--transforms 2000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from lxml import etree

from flowyard.xml.isolated import IsolatedXslt, Stylesheet
from flowyard.xml.security import XmlLimits, parse_document

STYLESHEET = """<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/"><receipt po="{/order/@id}">
    <xsl:for-each select="//line"><item sku="{@sku}" qty="{@qty}"/></xsl:for-each>
  </receipt></xsl:template>
</xsl:stylesheet>
"""
DOCUMENT = b'<order id="PO-1">' + b"".join(b'<line sku="S%d" qty="%d"/>' % (n, n) for n in range(50)) + b"</order>"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--transforms", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "receipt.xsl"
        path.write_text(STYLESHEET, encoding="utf-8")
        limits = XmlLimits()
        compiled = etree.XSLT(etree.parse(str(path)))
        stylesheet = Stylesheet(str(path), folder, limits, ())
        starts = []
        for _ in range(3):
            isolated = IsolatedXslt(stylesheet, 30.0)
            began = time.perf_counter()
            isolated.transform(DOCUMENT)
            starts.append(time.perf_counter() - began)
            isolated.close()
        isolated = IsolatedXslt(stylesheet, 30.0)
        assert isolated.transform(DOCUMENT) == bytes(compiled(parse_document(DOCUMENT, limits)))

        def in_process() -> None:
            bytes(compiled(parse_document(DOCUMENT, limits)))

        def through_worker() -> None:
            isolated.transform(DOCUMENT)

        times: dict[str, list[float]] = {"in process": [], "isolated": []}
        for _ in range(args.rounds):
            for name, run in (("in process", in_process), ("isolated", through_worker)):
                began = time.perf_counter()
                for _ in range(args.transforms):
                    run()
                times[name].append((time.perf_counter() - began) / args.transforms * 1e6)
        isolated.close()
    print(f"document {len(DOCUMENT):,} bytes, {args.rounds} rounds of {args.transforms} transforms, "
          f"load average {os.getloadavg()[0]:.1f}")
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"  {name:<11} {median:8.0f} us per transform   (rounds: {', '.join(f'{v:.0f}' for v in times[name])})")
    print(f"  the worker costs {medians['isolated'] - medians['in process']:.0f} us per transform "
          f"({medians['isolated'] / medians['in process']:.2f}x)")
    print(f"  a worker's start (first message, or after a kill): median {statistics.median(starts) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
