"""Draw the lookups of two real runs of mp.py over time, as an SVG picture.

    python3 .ci/timeline.py docs/timeline.svg [--delay SECONDS]

The first run is the post's: ten lookups of DELAY seconds (2 by default). In
the second, steve's lookup raises halfway, adam's never answers, and
`--timeout` is 1.5 delays. Each runs `python3 mp.py` in a copy of the kit whose
pets.py holds Scripted pet names (lookups.py): every lookup says when it
begins, and its connection closes when its worker process ends. A bar runs
from one to the other; a tick marks when mp.py named a failure on stderr.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from html import escape
from pathlib import Path

CI = Path(__file__).resolve().parent
sys.path.insert(0, str(CI))
import lookups

KIT = CI.parent
sys.path.insert(0, str(KIT))
from pets import pet_maps

NAMES = {person: entry["pet_name"] for person, entry in pet_maps.items()}
COLOURS = {"answered": "#4c78a8", "raised": "#e45756", "timed out": "#f2a541"}


def run(folder, board, scripts, *options):
    """Run mp.py once: {person: (began, ended, outcome, named)}, and the run's end."""
    (folder / "pets.py").write_text(lookups.pets_source(board, NAMES, scripts))
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "mp.py", "--delay", "0", *options],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    named = {}  # person: (when mp.py named the failure, what it named)

    def read_stderr():
        for line in process.stderr:
            person, kind = line.split(": ")[1:3]
            named[person] = (time.monotonic() - started, kind)

    reader = threading.Thread(target=read_stderr)
    reader.start()
    process.wait()
    ended = time.monotonic() - started
    reader.join()
    board.gone()
    bars = {}
    for person in NAMES:
        began = board.said[person]["hello"][0] - started
        when, kind = named.get(person, (None, None))
        outcome = {"RuntimeError": "raised", "TimeoutError": "timed out"}
        bars[person] = (
            began,
            board.ended[person] - started,
            outcome.get(kind, "answered"),
            when,
        )
    board.said.clear()
    board.ended.clear()
    return bars, ended


def panel(title, bars, ended, top, scale):
    """The SVG for one run: a row per person, a bar per lookup."""
    parts = [f'<text x="10" y="{top + 16}" class="title">{escape(title)}</text>']
    for row, (person, (began, finished, outcome, named)) in enumerate(bars.items()):
        y = top + 30 + row * 22
        parts.append(f'<text x="90" y="{y + 13}" class="name">{person}</text>')
        x, width = 100 + began * scale, max((finished - began) * scale, 1)
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y}" width="{width:.1f}" height="16" '
            f'fill="{COLOURS[outcome]}"><title>{person}: {outcome}, '
            f"{began:.2f} to {finished:.2f} s</title></rect>"
        )
        if named is not None:
            tick = 100 + named * scale
            parts.append(
                f'<line x1="{tick:.1f}" y1="{y - 2}" x2="{tick:.1f}" '
                f'y2="{y + 18}" class="named"/>'
            )
    end = 100 + ended * scale
    bottom = top + 30 + len(bars) * 22
    parts.append(
        f'<line x1="{end:.1f}" y1="{top + 24}" x2="{end:.1f}" y2="{bottom}" '
        'class="end"/>'
    )
    parts.append(
        f'<text x="{end + 4:.1f}" y="{top + 36}" class="note">'
        f"mp.py ends, {ended:.2f} s</text>"
    )
    return parts, bottom


def axis(top, longest, scale):
    """Seconds along the bottom."""
    right = 100 + longest * scale
    parts = [f'<line x1="100" y1="{top}" x2="{right:.1f}" y2="{top}" class="axis"/>']
    step = 0.5 if longest < 4 else 1
    tick = 0.0
    while tick <= longest + 1e-9:
        x = 100 + tick * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + 5}" class="axis"/>'
        )
        parts.append(f'<text x="{x:.1f}" y="{top + 18}" class="tick">{tick:g} s</text>')
        tick += step
    return parts


def draw(runs, delay):
    """The whole picture, from [(title, bars, ended), ...]."""
    longest = max(ended for _, _, ended in runs) + 0.3
    scale = 560 / longest
    parts, top = [], 0
    for title, bars, ended in runs:
        drawn, top = panel(title, bars, ended, top, scale)
        parts += drawn
        top += 20
    parts += axis(top, longest, scale)
    legend = top + 40
    for n, (outcome, colour) in enumerate(COLOURS.items()):
        x = 100 + n * 150
        parts.append(
            f'<rect x="{x}" y="{legend - 11}" width="14" height="14" '
            f'fill="{colour}"/><text x="{x + 20}" y="{legend}" class="note">'
            f"{outcome}</text>"
        )
    parts.append(
        f'<line x1="550" y1="{legend - 12}" x2="550" y2="{legend + 4}" '
        'class="named"/><text x="556" y="{legend}" class="note">'
        "mp.py names it</text>".replace("{legend}", str(legend))
    )
    height = legend + 16
    style = (
        "text{font-family:sans-serif;font-size:12px;fill:#222}"
        ".title{font-weight:bold;font-size:13px}.name{text-anchor:end}"
        ".tick{text-anchor:middle;font-size:11px}.note{font-size:11px}"
        ".axis{stroke:#555}.end{stroke:#222;stroke-dasharray:4 3}"
        ".named{stroke:#111;stroke-width:3}"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="760" height="{height}" '
        f'viewBox="0 0 760 {height}"><title>mp.py: ten lookups of {delay:g} s, '
        f"over time</title><style>{style}</style>"
        f'<rect width="760" height="{height}" fill="white"/>'
        + "".join(parts)
        + "</svg>\n"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("svg", type=Path, help="where to write the picture")
    parser.add_argument("--delay", type=float, default=2.0, help="default: 2")
    args = parser.parse_args()
    delay = args.delay
    board = lookups.Switchboard(limit=30 + 10 * delay)
    timeout = f"--timeout {1.5 * delay:g}"
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        shutil.copy(KIT / "mp.py", folder)
        shutil.copy(CI / "lookups.py", folder)
        wait = f"wait {delay:g}"
        post, post_end = run(folder, board, dict.fromkeys(NAMES, wait))
        scripts = {
            **dict.fromkeys(NAMES, wait),
            "steve": f"wait {delay / 2:g}; raise",
            "adam": "hang",
        }
        failing, failing_end = run(folder, board, scripts, *timeout.split())
    board.close()
    runs = [
        (f"python3 mp.py: ten lookups of {delay:g} s, all at once", post, post_end),
        (
            f"python3 mp.py {timeout}: steve's lookup raises, adam's hangs",
            failing,
            failing_end,
        ),
    ]
    args.svg.parent.mkdir(parents=True, exist_ok=True)
    args.svg.write_text(draw(runs, delay), encoding="utf-8")
    named = ", ".join(
        f"{person} named at {bar[3]:.2f} s" for person, bar in failing.items() if bar[3]
    )
    print(
        f"{args.svg}: the post's run took {post_end:.2f} s; the other "
        f"{failing_end:.2f} s, {named}"
    )


if __name__ == "__main__":
    main()
