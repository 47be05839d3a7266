"""``staffetta trace QUEUEID``: the journey of one message, from the services' JSON logs.

    staffetta trace 2Q3H80HFDV2LQ3NJJ --logs /var/log/staffetta/
    kubectl logs -l app.kubernetes.io/part-of=staffetta --prefix --tail=-1 | staffetta trace ID

Reads the files and folders (recursively) named by ``--logs``, or standard input.
Exit status 1 when no line mentions the queue id.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from services.tracing.journey import follow, parse, render


def add_command(commands: Any) -> None:
    """Register ``trace`` on the ``staffetta`` subcommand parser."""
    parser = commands.add_parser(
        "trace",
        help="show the journey of one message from the services' JSON logs",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("queue_id", metavar="QUEUEID", help="the id from '250 ... queued as ID'")
    parser.add_argument(
        "--logs",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="log files or folders (default: standard input)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the matching log lines as JSON, in time order"
    )


def read_lines(paths: list[Path] | None, stdin: TextIO) -> Iterator[str]:
    if not paths:
        yield from stdin
        return
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            with file.open(encoding="utf-8", errors="replace") as handle:
                yield from handle


def run(args: argparse.Namespace, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    missing = [str(path) for path in args.logs or [] if not path.exists()]
    if missing:
        print(f"staffetta trace: no such file or folder: {', '.join(missing)}", file=sys.stderr)
        return 2
    entries = parse(read_lines(args.logs, stdin))
    journey = follow(entries, args.queue_id)
    if not journey:
        print(f"staffetta trace: no log line mentions {args.queue_id}", file=sys.stderr)
        return 1
    if args.json:
        lines = [json.dumps(entry.fields, ensure_ascii=False) for entry in journey]
    else:
        lines = render(entries, args.queue_id)
    try:
        for line in lines:
            stdout.write(line + "\n")
        stdout.flush()
    except BrokenPipeError:
        # `staffetta trace ID | head`: the reader left early, which is no error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
