"""Print control labels (mode, quantity, location, return reason, clear) as an HTML sheet of Code 128 barcodes.

Usage: python firmware_config/labels/make_labels.py [--locations A-01-1,A-01-2] [--out sheet.html]
Needs python-barcode (`pip install -e ".[labels]"`); the format is in README.md next to this file.
"""

from __future__ import annotations

import argparse
import html
import io
from pathlib import Path

from barcode import Code128
from barcode.writer import SVGWriter

MODES = ("RECEIVE", "PUTAWAY", "PICK", "MOVE", "COUNT", "RETURN")
RETURN_REASONS = ("DAMAGED", "DEFECTIVE", "WRONG_ITEM", "UNWANTED", "EXPIRED")
QUANTITIES = (0, 1, 2, 3, 4, 5, 6, 10, 12, 20, 24, 50, 100)


def svg(text: str) -> str:
    """One Code 128 barcode as inline SVG, with its text printed under it."""
    buf = io.BytesIO()
    Code128(text, writer=SVGWriter()).write(buf, {"module_height": 12.0, "font_size": 8, "text_distance": 4})
    body = buf.getvalue().decode()
    return body[body.index("<svg"):]


def sheet(locations: list[str], title: str) -> str:
    """The label sheet as a standalone HTML page (print at 100 %, A4 or Letter)."""
    groups = [("Modes", [f"MODE:{m}" for m in MODES] + ["CLEAR"]),
              ("Quantities (for the next item)", [f"QTY:{q}" for q in QUANTITIES]),
              ("Return reasons (return mode)", [f"RET:{r}" for r in RETURN_REASONS])]
    if locations:
        groups.append(("Locations", [f"LOC:{loc}" for loc in locations]))
    parts = [f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif} .l{display:inline-block;margin:4mm;text-align:center;"
             "border:1px dashed #999;padding:2mm} h2{page-break-before:auto}</style>",
             f"<h1>{html.escape(title)}</h1>"]
    for heading, texts in groups:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        parts += [f"<div class=l>{svg(t)}<br><b>{html.escape(t)}</b></div>" for t in texts]
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", default="DOCK,A-01-1,A-01-2,A-03-2,B-01-1",
                        help="comma-separated bin names for LOC: labels")
    parser.add_argument("--out", default=str(Path(__file__).with_name("label-sheet.html")))
    args = parser.parse_args()
    locations = [loc.strip() for loc in args.locations.split(",") if loc.strip()]
    Path(args.out).write_text(sheet(locations, "Scanner control labels"))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
