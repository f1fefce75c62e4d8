"""Markdown table (paper Table 6 columns) from `speech-anim evaluate` reports, with the paper's GRID row.

    python scripts/evaluation_tables.py "model=gen_s1.json" "static=static_s1.json" "real=real_s1.json"

Each argument is LABEL=REPORT.json; rows keep the order given. The model card's tables are printed
by `scripts/evaluate_model.sh`, which calls this.
"""

import json
import math
import sys

from speech_anim.metrics.evaluate import TABLE_COLUMNS

# Vougioukas et al. 2019, Table 6, GRID row of their full model (blink figures: real GRID video, §5).
PAPER_GRID = {"psnr": 27.10, "ssim": 0.818, "cpbd": 0.268}
PAPER_REAL_BLINKS = {"blinks_per_second": 0.39, "blink_duration": 0.41}


def cell(value) -> str:
    if value is None or value == "nan" or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value in ("inf", "-inf"):
        return "∞" if value == "inf" else "−∞"
    return f"{value:.3f}"


def table(rows: list[tuple[str, dict]]) -> str:
    names = [name for name, _ in TABLE_COLUMNS]
    titles = [title for _, title in TABLE_COLUMNS]
    out = ["| | clips | " + " | ".join(titles) + " | in sync (±1) |", "|---" * (len(titles) + 3) + "|"]
    for label, report in rows:
        summary = report["summary"]
        cells = [cell(summary.get(name)) for name in names]
        out.append(f"| {label} | {len(report['clips'])} | " + " | ".join(cells) + f" | {cell(summary.get('av_in_sync'))} |")
    paper = [cell(PAPER_GRID.get(n)) if n in PAPER_GRID else (f"{PAPER_REAL_BLINKS[n]} (real)" if n in PAPER_REAL_BLINKS else "")
             for n in names]
    out.append("| paper, GRID | | " + " | ".join(paper) + " | |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    rows = []
    for arg in argv:
        label, sep, path = arg.partition("=")
        if not sep:
            print(f"evaluation_tables: error: {arg!r} is not LABEL=REPORT.json", file=sys.stderr)
            return 2
        with open(path) as f:
            rows.append((label, json.load(f)))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
