"""What happens to files that cannot be decoded or look wrong: the bad-file policy and the suspicious-file notes.

The decoded-audio cache records every file that fails to decode, with the reason
(:attr:`~audiocls.data.cache.DecodedCache.bad`); ``data.skip_bad_files`` decides here whether they are left out
with a warning or stop the run with one error listing them. Clips far shorter than the dataset's median,
truncated or silent are kept, with one warning each (:mod:`audiocls.data.suspicious`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from audiocls.data.cache import DecodedCache
from audiocls.data.clips import Clip
from audiocls.data.suspicious import WarningSummary, dataset_warnings
from audiocls.errors import AudioLoadError

__all__ = ["apply_bad_file_policy", "warn_suspicious"]

log = logging.getLogger(__name__)


def apply_bad_file_policy(clips: Sequence[Clip], cache: DecodedCache, skip_bad_files: bool) -> set[int]:
    """Indices of clips to leave out; raises :class:`AudioLoadError` listing them unless ``skip_bad_files``."""
    bad = cache.bad
    if not bad:
        return set()
    lines = [bad[i] for i in sorted(bad)]
    shown = "; ".join(lines[:5]) + (f"; ... and {len(lines) - 5} more" if len(lines) > 5 else "")
    if not skip_bad_files:
        raise AudioLoadError(
            f"{len(bad)} of {len(clips)} audio files cannot be decoded: {shown}. "
            "Fix or delete them, or set data.skip_bad_files=true to leave them out"
        )
    log.warning("skipping %d of %d audio files that cannot be decoded: %s", len(bad), len(clips), shown)
    return set(bad)


def warn_suspicious(clips: Sequence[Clip], cache: DecodedCache, skip: set[int], name: str) -> None:
    """One warning per clip far shorter than the dataset's median, truncated or silent; they are kept."""
    files = [(clips[i].path, cache.facts(i)) for i in range(len(clips)) if i not in skip]
    summary = WarningSummary(log.warning)
    for line in dataset_warnings(files, name, "kept in the dataset"):
        summary.add(line)
    summary.close()
