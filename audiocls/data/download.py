"""``audiocls data download|verify``: fetch a public dataset, check it, unpack it safely, decode it.

    audiocls data download esc50 --root ~/data     # then --data.root ~/data/ESC-50-master
    audiocls data verify esc50 --root ~/data/ESC-50-master

Downloads resume from a ``.part`` file with an HTTP Range request, show a progress bar and are checked
against the checksum in the dataset's module. Archives are unpacked only after every member was checked:
absolute paths, ``..`` components, links that point outside the target and special files are refused.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import pkgutil
import stat
import tarfile
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from types import ModuleType

from audiocls.errors import AudioclsError, AudioLoadError, DataError

__all__ = ["check_layout", "downloadable", "fetch", "safe_extract", "verify", "verify_checksum"]

log = logging.getLogger(__name__)

CHUNK = 1 << 20


def downloadable() -> dict[str, tuple[ModuleType, type]]:
    """name -> (module, datamodule class) of every dataset module of this package that declares ``DOWNLOAD``.

    A dataset joins ``audiocls data download|verify`` by declaring, in its own module, ``URL``, ``CHECKSUM``,
    ``ARCHIVE_DIR`` (the folder the archive unpacks to) and ``DOWNLOAD = (name, its datamodule class)``.
    """
    found = {}
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        module = importlib.import_module(f"{__package__}.{info.name}")
        if hasattr(module, "DOWNLOAD"):
            name, cls = module.DOWNLOAD
            found[name] = (module, cls)
    return dict(sorted(found.items()))


# --- checksum -------------------------------------------------------------------------------------------
def verify_checksum(path: Path, checksum: str | None) -> bool:
    """True when ``path`` matches ``checksum`` (``md5:<hex>`` or ``sha256:<hex>``); ``None`` always matches."""
    if checksum is None:
        return True
    algo, _, expected = checksum.partition(":")
    if algo not in ("md5", "sha256") or not expected:
        raise DataError(f"checksum {checksum!r} must read md5:<hex> or sha256:<hex>")
    h = hashlib.new(algo)
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest() == expected.lower()


# --- download -------------------------------------------------------------------------------------------
def fetch(url: str, dest: Path, checksum: str | None, *, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest``, resuming ``dest.part`` when a previous run was cut off.

    Args:
        url: http(s) URL.
        dest: the final file; skipped when it exists and matches ``checksum``.
        checksum: ``md5:<hex>``/``sha256:<hex>`` or ``None`` (no check).
        progress: show a tqdm bar on stderr.
        timeout: socket timeout in seconds.

    Returns:
        ``dest``.

    Raises:
        DataError: the server fails or the file does not match the checksum (the bad file is removed).
    """
    from tqdm import tqdm

    dest = Path(dest)
    if dest.is_file() and verify_checksum(dest, checksum):
        log.info("%s is already there and matches its checksum", dest)
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "audiocls"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            resumed = have and resp.status == 206
            if have and not resumed:
                log.info("the server ignored the resume request; downloading %s from the start", url)
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            with (
                part.open("ab" if resumed else "wb") as out,
                tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar,
            ):
                while block := resp.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
    except OSError as err:  # URLError, HTTPError, timeouts, connection resets
        if getattr(err, "code", None) == 416:  # range not satisfiable: the part file is already complete
            pass
        else:
            raise DataError(f"downloading {url} failed: {err}; run the command again to resume") from err
    if not verify_checksum(part, checksum):
        part.unlink()
        raise DataError(
            f"{url} does not match its checksum {checksum}; the download was removed. Run again, or pass "
            "--checksum none if the server publishes a new archive"
        )
    part.replace(dest)
    return dest


# --- extraction -----------------------------------------------------------------------------------------
def _check_member_name(name: str, archive: Path) -> None:
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"{archive}: refusing the absolute path {name!r} in the archive")
    if ".." in p.parts:
        raise DataError(f"{archive}: refusing the path {name!r} with '..' in the archive")


def _inside(target: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(target.resolve())
        return True
    except ValueError:
        return False


def safe_extract(archive: Path, target: Path) -> None:
    """Unpack a zip or tar(.gz/.bz2/.xz) archive into ``target`` after checking every member.

    Raises:
        DataError: a member has an absolute path, a ``..`` component, is a link leading outside ``target``,
            or is a device/fifo; nothing is written then.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _check_member_name(info.filename, archive)
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise DataError(f"{archive}: refusing the symbolic link {info.filename!r} in the zip archive")
            zf.extractall(target)
        return
    try:
        tf = tarfile.open(archive)  # noqa: SIM115 - closed by the with below; the open itself may fail
    except tarfile.TarError as err:
        raise DataError(f"{archive} is neither a zip nor a tar archive ({err})") from err
    with tf:
        members = tf.getmembers()
        for m in members:
            _check_member_name(m.name, archive)
            if m.issym() or m.islnk():
                base = target / PurePosixPath(m.name).parent if m.issym() else target
                if PurePosixPath(m.linkname).is_absolute() or not _inside(target, base / m.linkname):
                    raise DataError(f"{archive}: refusing the link {m.name!r} -> {m.linkname!r} outside {target}")
            elif not (m.isfile() or m.isdir()):
                raise DataError(f"{archive}: refusing the special file {m.name!r}")
        tf.extractall(target, members=members, filter="data")


# --- layout check and verify ----------------------------------------------------------------------------
def _datamodule(name: str, root: Path):
    """The dataset's datamodule at ``root`` or at ``root/ARCHIVE_DIR``."""
    module, cls = downloadable()[name]
    candidates = [root, root / module.ARCHIVE_DIR]
    err: AudioclsError | None = None
    for path in candidates:
        try:
            return cls(path, num_workers=0)
        except AudioclsError as e:
            err = err or e
    raise err


def check_layout(name: str, root: Path) -> tuple[Path, int]:
    """(data root, clip count) of a dataset unpacked under ``root``; :class:`DataError` when files are missing."""
    dm = _datamodule(name, root)
    clips = dm.list_clips()
    dm.check_clips(clips)
    missing = [str(c.path) for c in clips if not Path(c.path).is_file()]
    if missing:
        raise DataError(f"{len(missing)} files named by the metadata are missing under {dm.root}, e.g. {missing[:3]}")
    return dm.root, len(clips)


def verify(name: str, root: Path, workers: int = 2) -> tuple[list[str], list[str]]:
    """Decode and resample every clip as training would.

    Returns:
        ``(problems, warnings)``, one line each: the files that cannot be decoded, and those that decode but are
        suspicious (:func:`~audiocls.data.suspicious.suspicious_audio`: far shorter than the dataset's median,
        truncated, silent).
    """
    from audiocls.data.io import load_audio
    from audiocls.data.suspicious import audio_facts, dataset_warnings

    dm = _datamodule(name, root)
    paths = [c.path for c in dm.list_clips()]

    def one(path: Path):
        try:
            return audio_facts(path, load_audio(path, dm.sample_rate), dm.sample_rate)
        except AudioLoadError as err:
            return str(err)

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, paths))
    problems = [r for r in results if isinstance(r, str)]
    facts = [(p, r) for p, r in zip(paths, results, strict=True) if not isinstance(r, str)]
    return problems, dataset_warnings(facts, name, "training keeps it")
