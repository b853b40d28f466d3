"""``audiocls data download|verify``: fetch a public dataset (checksum, resumable, safe extraction) or decode every file."""

from __future__ import annotations

import argparse
import logging
import urllib.request
from pathlib import Path

from audiocls.commands.parser import command_parser
from audiocls.data.download import check_layout, downloadable, fetch, safe_extract, verify
from audiocls.data.suspicious import WarningSummary

log = logging.getLogger(__name__)

__all__ = ["main"]


# --- the command ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = command_parser("data", "Download and verify the public datasets.")
    sub = parser.add_subparsers(dest="action", required=True)
    names = list(downloadable())
    dl = sub.add_parser("download", help="download, check and unpack a dataset", allow_abbrev=False)
    dl.add_argument("name", choices=names)
    dl.add_argument("--root", type=Path, required=True, help="folder to download and unpack into")
    dl.add_argument("--url", help="another URL (a mirror); default: the official one")
    dl.add_argument("--checksum", help="md5:<hex> or sha256:<hex>, or 'none'; default: the dataset's")
    dl.add_argument("--keep_archive", action="store_true", help="keep the archive after unpacking")
    dl.add_argument("--no_progress", action="store_true", help="no progress bar")
    ve = sub.add_parser("verify", help="decode every file of a dataset and report problems", allow_abbrev=False)
    ve.add_argument("name", choices=names)
    ve.add_argument("--root", type=Path, required=True, help="the dataset folder (data.root)")
    ve.add_argument("--workers", type=int, default=2, help="decoding threads")
    return parser


def main(argv: list[str]) -> int:
    """``audiocls data download|verify NAME --root DIR``; returns the exit code (1: verify found problems)."""
    args = build_parser().parse_args(argv)
    root = args.root.expanduser()
    if args.action == "verify":
        problems, warnings = verify(args.name, root, args.workers)
        for line in problems:
            print(line)
        summary = WarningSummary(lambda line: print(f"warning: {line}"))
        for line in warnings:
            summary.add(line)
        summary.close()
        print(
            (f"{args.name}: {len(problems)} problem(s)" if problems else f"{args.name}: every file decodes")
            + (f", {len(warnings)} suspicious (see the warnings)" if warnings else "")
        )
        return 1 if problems else 0
    module, _ = downloadable()[args.name]
    url = args.url or module.URL
    checksum = (
        module.CHECKSUM if args.checksum is None else (None if args.checksum.lower() == "none" else args.checksum)
    )
    archive = root / (Path(urllib.request.urlparse(url).path).name or f"{args.name}.archive")
    fetch(url, archive, checksum, progress=not args.no_progress)
    log.info("unpacking %s into %s", archive, root)
    safe_extract(archive, root)
    data_root, count = check_layout(args.name, root)
    if not args.keep_archive:
        archive.unlink()
    print(f"{args.name}: {count} clips in {data_root}\nuse --data.root {data_root}")
    return 0
