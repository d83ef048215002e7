"""``proximadb wal dump`` and ``proximadb wal verify``: offline, read-only WAL inspection.

The logic lives in :mod:`proximadb.tools.wal_inspect`; this module parses the
options and prints. Neither command takes the data directory's lock or writes
anything, so both work while a daemon runs.

Exit codes: ``dump`` 0 (even when it shows damage: it reports), 1 when the
data directory or the collection does not exist, 2 on a usage error.
``verify`` 0 clean, 3 torn tail only (recoverable: the next open cuts it),
4 corruption, 1 and 2 as for dump.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from proximadb.cli.common import COLLECTION_OPT, DATA_DIR_ARG, resolve_data_dir
from proximadb.storage.operations import DeleteOp, InsertOp, UpdateOp
from proximadb.tools import wal_inspect
from proximadb.tools.wal_inspect import FileStart, FrameFilter, FrameRecord, Problem, WalSummary, WalTarget

_SHOWN_IDS = 5
_LONG_ID = 40


def _scan(data_dir: Path | None, collection: str | None) -> wal_inspect.DataDirScan:
    try:
        scan = wal_inspect.find_targets(resolve_data_dir(data_dir), collection)
    except wal_inspect.InspectError as exc:
        raise click.ClickException(str(exc)) from None
    for note in scan.notes:
        click.echo(f"note: {note}", err=True)
    return scan


@click.group("wal")
def wal() -> None:
    """Inspect write-ahead logs offline (read-only: safe while a daemon runs).

    DATA_DIR defaults to the data directory `proximadb serve` uses
    (PROXIMADB_DATA_DIR, then data_dir in the PROXIMADB_CONFIG file, then
    ~/.local/share/proximadb). It may also be one collection's directory or a
    WAL directory.
    """


# ---------------------------------------------------------------- dump


_DUMP_HELP = """Print every frame of the write-ahead log(s), damaged or not.

For each frame: sequence, offset, op type, schema version, strategy (from the
file header), compression, stored and raw body size, number of records and
their ids (the first few in text, all in jsonl); with --full also vectors,
metadata and timestamps. A damaged frame is shown as DAMAGED with its file,
offset and reason, and the dump resynchronises on the next valid frame,
saying how many bytes it skipped. A torn tail at the end of the last file is
shown as "torn tail: N bytes at offset X". Damage is always shown, whatever
the filters; --from-seq/--to-seq skip files outside the range unread.

\b
jsonl: one JSON object per line, with a "type" key:
  "frame"   collection, collection_uuid, file, offset, seq, op (insert|
            delete|update), op_code, upsert (inserts; else null),
            schema_version, strategy (avro|binary), compression (lz4|none),
            stored_size, raw_size, records, ids; with --full also vectors,
            metadata, replace, timestamps (lists aligned with ids; null
            where the op has none)
  "damaged", "torn_tail", "seq_gap", "bad_header", "missing", "vanished",
  "unreadable"
            collection, collection_uuid, file, offset, seq (or null),
            reason, bytes (bytes not readable as frames), resume_offset
            (where reading went on in the file, or null)
A frame whose checksum matches but whose body does not decode is a
"damaged" record with its seq.

\b
Exit codes: 0 the dump ran (even if it shows damage: use `wal verify`),
1 the data directory or collection does not exist, 2 usage error.
"""


@wal.command("dump", help=_DUMP_HELP)
@DATA_DIR_ARG
@COLLECTION_OPT
@click.option("--from-seq", type=click.IntRange(min=0), metavar="N", help="Only frames with seq >= N.")
@click.option("--to-seq", type=click.IntRange(min=0), metavar="M", help="Only frames with seq <= M.")
@click.option("--op", "ops", type=click.Choice(["insert", "delete", "update"]), multiple=True,
              help="Only frames of this op type (repeatable). Upserts are inserts.")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True,
              help="Aligned text, or one JSON object per line.")
@click.option("--limit", type=click.IntRange(min=1), metavar="K", help="Stop after K frames.")
@click.option("--full", is_flag=True, help="Also print vectors, metadata and timestamps.")
def dump(data_dir: Path | None, collection: str | None, from_seq: int | None, to_seq: int | None,
         ops: tuple[str, ...], fmt: str, limit: int | None, full: bool) -> None:
    scan = _scan(data_dir, collection)
    selection = FrameFilter(from_seq, to_seq, frozenset(wal_inspect.OP_CODES[o] for o in ops) if ops else None)
    out = sys.stdout
    try:
        if fmt == "jsonl":
            _dump_jsonl(out, scan.targets, selection, limit, full)
        else:
            _dump_text(out, scan, selection, limit, full)
        out.flush()
    except BrokenPipeError:  # `proximadb wal dump | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)


def _limited(targets: list[WalTarget], selection: FrameFilter, limit: int | None) -> Iterator[Any]:
    shown = 0
    for event in wal_inspect.iter_targets(targets, selection):
        if isinstance(event, FrameRecord):
            if limit is not None and shown >= limit:
                return
            shown += 1
        yield event


def _dump_jsonl(out: TextIO, targets: list[WalTarget], selection: FrameFilter, limit: int | None,
                full: bool) -> None:
    for event in _limited(targets, selection, limit):
        if isinstance(event, FrameRecord):
            record = wal_inspect.frame_json(event, full)
        elif isinstance(event, Problem):
            record = wal_inspect.problem_json(event)
        else:
            continue
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


# text layout: one row per frame under a header row per file
_COLUMNS = (("SEQ", 10, ">"), ("OFFSET", 10, ">"), ("OP", 6, "<"), ("STRATEGY", 8, "<"), ("COMP", 4, "<"),
            ("VER", 3, ">"), ("STORED", 9, ">"), ("RAW", 9, ">"), ("RECS", 6, ">"), ("IDS", 0, "<"))
_INDENT = "    "


def _row(values: list[str]) -> str:
    cells = [f"{value:{align}{width}}" for value, (_, width, align) in zip(values, _COLUMNS, strict=True)]
    return (_INDENT + "  ".join(cells)).rstrip()


def _show_id(id_: str) -> str:
    shown = id_ if id_ and id_.isprintable() and not any(c in id_ for c in ", \"") else json.dumps(id_)
    return shown if len(shown) <= _LONG_ID else shown[: _LONG_ID - 1] + "…"


def _ids_text(ids: list[str]) -> str:
    text = ", ".join(_show_id(i) for i in ids[:_SHOWN_IDS])
    if len(ids) > _SHOWN_IDS:
        text += f", … (+{len(ids) - _SHOWN_IDS} more)"
    return text


def _when(us: int) -> str:
    try:
        return dt.datetime.fromtimestamp(us / 1e6, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, OSError, ValueError):
        return f"{us}µs"


def _frame_lines(frame: FrameRecord, full: bool) -> list[str]:
    problem = wal_inspect.frame_problem(frame)
    if problem is not None:
        return [_problem_line(problem)]
    ids = frame.ids
    op = "upsert" if frame.upsert else frame.op_name
    if frame.op is None:
        recs, shown = "?", "(not decoded: the file header is unreadable)"
    else:
        recs, shown = str(len(ids or [])), _ids_text(ids or [])
    lines = [_row([str(frame.seq), str(frame.offset), op, frame.strategy or "?", frame.compression,
                   str(frame.schema_version), str(frame.stored_size), str(frame.raw_size), recs, shown])]
    if full and frame.op is not None:
        lines.extend(_full_lines(frame))
    return lines


def _full_lines(frame: FrameRecord) -> list[str]:
    pad = _INDENT * 3
    op = frame.op
    lines: list[str] = []
    if isinstance(op, InsertOp):
        for i, id_ in enumerate(op.ids):
            vector = ", ".join(f"{float(x):.7g}" for x in op.vectors[i])
            lines.append(f"{pad}{_show_id(id_)}  time {_when(int(op.timestamps[i]))}  "
                         f"metadata {json.dumps(op.metadata[i], ensure_ascii=False)}")
            lines.append(f"{pad}{_INDENT}vector [{vector}]")
    elif isinstance(op, UpdateOp):
        for patch in op.updates:
            how = "replace" if patch.replace else "merge"
            lines.append(f"{pad}{_show_id(patch.id)}  time {_when(int(op.timestamp))}  {how} "
                         f"{json.dumps(patch.metadata, ensure_ascii=False)}")
    elif isinstance(op, DeleteOp):
        lines.append(f"{pad}ids: {', '.join(_show_id(i) for i in op.ids)}")
    return lines


def _problem_line(problem: Problem) -> str:
    where = f"{problem.path.name} offset {problem.offset}"
    if problem.kind == "torn_tail":
        return f"{_INDENT}torn tail: {problem.bytes} bytes at offset {problem.offset} of {problem.path.name} " \
               f"({problem.reason}; recoverable: the next open cuts it)"
    if problem.kind == "damaged":
        seq = f" seq {problem.seq}" if problem.seq is not None else ""
        return f"{_INDENT}DAMAGED  {where}{seq}: {problem.reason}"
    label = {"seq_gap": "SEQ GAP", "bad_header": "BAD HEADER", "unreadable": "UNREADABLE"}.get(problem.kind)
    if label is None:  # notes: missing, vanished
        return f"{_INDENT}note: {problem.path.name}: {problem.reason}"
    return f"{_INDENT}{label}  {where}: {problem.reason}"


def _target_heading(target: WalTarget) -> str:
    if target.name is not None:
        who = f"collection {target.name} ({target.uuid})"
    elif target.uuid is not None:
        who = f"collection {target.uuid} (not in the catalog)"
    else:
        who = "WAL"
    checkpoint = f"  checkpoint seq {target.checkpoint_seq}" if target.checkpoint_seq is not None else ""
    return f"{who}  {target.wal_dir}{checkpoint}"


def _dump_text(out: TextIO, scan: wal_inspect.DataDirScan, selection: FrameFilter, limit: int | None,
               full: bool) -> None:
    if not scan.targets:
        out.write(f"no collections in {scan.root}\n")
        return
    current: WalTarget | None = None
    frames = 0
    for event in _limited(scan.targets, selection, limit):
        if event.target is not current:
            current = event.target
            out.write(("\n" if frames or current is not scan.targets[0] else "") + _target_heading(current) + "\n")
        if isinstance(event, FileStart):
            version = f"format v{event.version}" if event.version is not None else "header unreadable"
            out.write(f"  {event.path.name}  {event.strategy or '?'}  {version}  first seq {event.first_seq}  "
                      f"{event.size} bytes\n")
            out.write(_row([c[0] for c in _COLUMNS]) + "\n")
        elif isinstance(event, FrameRecord):
            frames += 1
            out.write("\n".join(_frame_lines(event, full)) + "\n")
        else:
            out.write(_problem_line(event) + "\n")
    if limit is not None and frames >= limit:
        out.write(f"(stopped after {limit} frames: --limit)\n")


# ---------------------------------------------------------------- verify


_VERIFY_HELP = """Check every WAL file header, frame checksum, frame boundary and seq continuity.

Also checks that every checksummed frame body decodes, and that the log
starts no later than the collection's manifest checkpoint + 1. Prints one
line per collection (files, frames, bytes, first and last seq, verdict) with
the problems found below it, then a total line.

\b
Exit codes (the worst collection wins):
  0  clean      every header, checksum, boundary and seq is right
  3  torn tail  only a frame cut short at the end of the last file;
                recoverable: the next open (or `proximadb serve`) cuts it
  4  corrupt    damage recovery refuses: a bad frame followed by a valid
                one or in an earlier file, a bad file header, a seq gap,
                a frame body that does not decode
  1  the data directory or collection does not exist
  2  usage error
"""

_VERDICT_TEXT = {
    wal_inspect.VERDICT_CLEAN: "clean",
    wal_inspect.VERDICT_TORN: "TORN TAIL (recoverable)",
    wal_inspect.VERDICT_CORRUPT: "CORRUPT",
}


@wal.command("verify", help=_VERIFY_HELP)
@DATA_DIR_ARG
@COLLECTION_OPT
def verify(data_dir: Path | None, collection: str | None) -> None:
    scan = _scan(data_dir, collection)
    if not scan.targets:
        click.echo(f"no collections in {scan.root}")
        raise SystemExit(wal_inspect.EXIT_CLEAN)
    labels = [t.label for t in scan.targets]
    name_width = max(len("COLLECTION"), *(len(label) for label in labels))
    head = (f"{'COLLECTION':<{name_width}}  {'FILES':>5}  {'FRAMES':>8}  {'BYTES':>12}  {'FIRST':>10}  "
            f"{'LAST':>10}  VERDICT")
    click.echo(head)
    summaries: list[WalSummary] = []
    for target in scan.targets:
        summary = wal_inspect.verify_wal(target)
        summaries.append(summary)
        first = "-" if summary.first_seq is None else str(summary.first_seq)
        last = "-" if summary.last_seq is None else str(summary.last_seq)
        verdict = _VERDICT_TEXT[summary.verdict]
        if summary.verdict == wal_inspect.VERDICT_CORRUPT:
            count = sum(p.severity == wal_inspect.SEVERITY_CORRUPT for p in summary.problems)
            verdict += f" ({count} problem{'s' if count != 1 else ''})"
        click.echo(f"{target.label:<{name_width}}  {summary.files:>5}  {summary.frames:>8}  {summary.bytes:>12}  "
                   f"{first:>10}  {last:>10}  {verdict}")
        for problem in summary.problems:
            click.echo(_problem_line(problem))
    code = wal_inspect.exit_code(summaries)
    counts = {v: sum(s.verdict == v for s in summaries) for v in _VERDICT_TEXT}
    click.echo(f"{len(summaries)} collection(s): {counts[wal_inspect.VERDICT_CLEAN]} clean, "
               f"{counts[wal_inspect.VERDICT_TORN]} torn tail, {counts[wal_inspect.VERDICT_CORRUPT]} corrupt "
               f"(exit {code})")
    raise SystemExit(code)
