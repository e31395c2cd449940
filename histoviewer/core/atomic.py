"""Every file and folder HistoViewer writes goes through here, so that a write never
destroys or half-writes a user's file and every failure is one clear error.

- ``check_output``: before a job writes, refuse a target that is one of the job's inputs
  (the same file by path, symlink, hard link or case-insensitive name: never overridable)
  and, unless ``overwrite``, a target that exists; a folder where a file is wanted (or the
  reverse) is refused too. All raise ``OverwriteRefused`` / ``WriteError`` naming the path.
- ``atomic_write_bytes`` / ``atomic_write_text`` (whole contents in memory),
  ``atomic_target`` (a streamed file: the writer is given a temporary path) and
  ``atomic_folder`` (a folder of files): readers see the old file or folder or the new
  one, never a half-written one.
- Temporary files and folders are named ``.<name>.hv-partial.<host>.<pid>.<random>``
  beside their target. A process killed mid-write (``kill -9``, power loss) leaves one
  behind; the next write into that folder removes those whose process is gone
  (``clean_stale_partials``; another live process's are never touched, nor another
  host's, which this host cannot check).
- Every ``OSError`` while writing becomes ``WriteError`` (an ``OSError`` too) whose text
  names the file and says what went wrong in words ("the disk is full").
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import socket
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from histoviewer.core.errors import OverwriteRefused, WriteError

__all__ = [
    "PARTIAL_TAG",
    "PREVIOUS_TAG",
    "atomic_folder",
    "atomic_target",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output",
    "clean_stale_partials",
    "partial_path",
    "partial_prefix",
    "same_file",
    "write_error",
]

PARTIAL_TAG = "hv-partial"
# .<target name>.hv-partial.<host>.<pid>.<random hex>
PREVIOUS_TAG = (
    "hv-previous"  # a folder being replaced, moved aside for the moment of the swap
)
_PARTIAL_RE = re.compile(
    r"^\.(?P<target>.*)\.(?P<tag>"
    + PARTIAL_TAG
    + "|"
    + PREVIOUS_TAG
    + r")\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+$"
)

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EFBIG: "the file is larger than this file system (or a size limit) allows",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ENOENT: "the folder does not exist",
    errno.EIO: "input/output error (failing disk or lost network share)",
}
# Errors a write itself causes (any other OSError inside a streamed export may be a read of
# the slide going wrong, which is not a write error).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname() or "host")[:32] or "host"


def write_error(
    path: str | os.PathLike[str], exc: OSError, doing: str = "cannot write"
) -> WriteError:
    """``exc`` as a ``WriteError`` naming ``path`` (a ``WriteError`` is returned as it is)."""
    if isinstance(exc, WriteError):
        return exc
    reason = (
        _REASONS.get(exc.errno or -1) or exc.strerror or str(exc) or type(exc).__name__
    )
    err = WriteError(f"{path}: {doing}: {reason}")
    err.errno, err.strerror, err.filename = exc.errno, reason, str(path)
    return err


# -- what may be written --------------------------------------------------------------------------
def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` are one file: the same inode (hard links, symlinks, other
    spellings on case-insensitive file systems), or, when one does not exist, the same
    resolved and case-normalised path."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        pass
    try:
        ra, rb = os.path.realpath(a), os.path.realpath(b)
    except (OSError, ValueError):
        return False
    return os.path.normcase(ra) == os.path.normcase(rb)


def _first_existing_ancestor(path: Path) -> Path:
    for parent in path.absolute().parents:
        if os.path.lexists(parent):
            return parent
    return Path(path.anchor or ".")


def check_output(
    path: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str] | None] = (),
    overwrite: bool = False,
    folder: bool = False,
) -> Path:
    """Check that ``path`` may be written; returns it as a ``Path``. Raises
    ``OverwriteRefused`` when ``path`` is one of ``inputs`` (whatever ``overwrite`` says:
    a job never writes over what it reads) or exists and ``overwrite`` is False (its
    ``setting`` is ``"overwrite"``), ``WriteError`` when ``path`` is a folder and a file is
    wanted (or, ``folder=True``, a file where a folder is wanted) or a part of its folder
    is a file."""
    path = Path(path)
    for source in inputs:
        if source is not None and str(source) and same_file(path, source):
            shown = "" if str(source) == str(path) else f" ({source})"
            raise OverwriteRefused(
                f"{path}: this is a file the job reads{shown}; writing there would destroy "
                "it. Choose another name (nothing was written)"
            )
    ancestor = _first_existing_ancestor(path)
    if not ancestor.is_dir():
        raise WriteError(f"{path}: cannot write: {ancestor} is a file, not a folder")
    if folder:
        if os.path.lexists(path) and not path.is_dir():
            raise WriteError(f"{path}: cannot write: it is a file, not a folder")
        return path
    if path.is_dir():
        raise WriteError(f"{path}: cannot write: it is a folder; give a file name")
    if path.exists() and not path.is_file():  # /dev/..., a FIFO, a socket: never replaced by a file
        raise WriteError(f"{path}: cannot write: it is a device, pipe or socket, not a file")
    if os.path.lexists(path) and not overwrite:
        raise OverwriteRefused(
            f"{path} already exists; nothing was written. Choose another name or allow "
            "replacing it",
            setting="overwrite",
        )
    return path


# -- temporary names and their cleaning -------------------------------------------------------------
def partial_prefix(target: str | os.PathLike[str], tag: str = PARTIAL_TAG) -> str:
    """The start of a temporary name for ``target`` (``tempfile``'s ``prefix=`` adds the
    random end): ``.<name>.hv-partial.<host>.<pid>.``."""
    # keep the name within common 255-byte limits however long the target's name is
    stem = Path(target).name.encode("utf-8")[:150].decode("utf-8", "ignore")
    return f".{stem}.{tag}.{_host()}.{os.getpid()}."


def partial_path(target: str | os.PathLike[str], tag: str = PARTIAL_TAG) -> Path:
    """A fresh temporary name beside ``target`` that says whose it is (host, process)."""
    target = Path(target)
    return target.with_name(partial_prefix(target, tag) + secrets.token_hex(4))


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if sys.platform == "win32":  # os.kill(pid, 0) would send Ctrl+C there: never clean
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def clean_stale_partials(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files and folders in ``folder`` (not below) that a process of
    this host left when it died; returns what was removed. A folder it had moved aside to
    replace (``hv-previous``) is put back when nothing took its place, else removed. Never
    raises (a folder that cannot be listed or cleaned is left as it is)."""
    removed: list[Path] = []
    host = _host()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _PARTIAL_RE.match(entry.name)
        if m is None or m["host"] != host or _pid_alive(int(m["pid"])):
            continue
        try:
            back = Path(folder) / m["target"]
            if m["tag"] == PREVIOUS_TAG and not os.path.lexists(back):
                os.replace(
                    entry.path, back
                )  # killed mid-swap: the earlier results come back
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass  # another cleaner got it first, or no permission: harmless
    return removed


def _prepare_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(path.parent, exc, "cannot create the folder") from exc
    clean_stale_partials(path.parent)


def _keep_mode(tmp: Path, path: Path) -> None:
    """An existing file's permissions are kept (a new one was created 0666 less the umask)."""
    try:
        mode = path.stat().st_mode & 0o7777
    except OSError:
        return
    os.chmod(tmp, mode)


def _is_write_failure(exc: BaseException, tmp: Path, path: Path) -> bool:
    """Whether ``exc``, raised while writing ``tmp`` for ``path``, is the write failing
    (rather than, say, a read of the slide inside a streamed export)."""
    if not isinstance(exc, OSError) or isinstance(exc, WriteError):
        return False
    name = str(exc.filename or "")
    return exc.errno in _WRITE_ERRNOS or name == str(path) or name.startswith(str(tmp))


# -- writers --------------------------------------------------------------------------------------
def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never half.
    Raises ``WriteError`` naming ``path``."""
    path = Path(path)
    _prepare_folder(path)
    tmp = partial_path(path)
    try:
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
            0o666,
        )
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        _keep_mode(tmp, path)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError):
            raise write_error(path, exc) from exc
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (an empty file, reserved); when the block
    ends normally it replaces ``path``, on any exception (cancellation included) it is
    deleted. A streamed writer therefore never leaves a half-written file under the name
    the user chose. Write failures (full disk, ...) become ``WriteError`` naming ``path``."""
    path = Path(path)
    _prepare_folder(path)
    tmp = partial_path(path)
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as exc:
        raise write_error(path, exc) from exc
    try:
        yield tmp
        _keep_mode(tmp, path)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if _is_write_failure(exc, tmp, path):
            raise write_error(path, exc) from exc  # type: ignore[arg-type]
        raise


@contextlib.contextmanager
def atomic_folder(
    path: str | os.PathLike[str], *, replace: bool = False
) -> Iterator[Path]:
    """Yield a temporary folder beside ``path`` to fill; when the block ends normally it
    becomes ``path``, on any exception it is removed with what it holds. ``replace``: an
    existing folder at ``path`` is replaced (moved aside first, removed after the new one
    is in place), else ``OverwriteRefused``. Raises ``WriteError`` naming ``path``."""
    path = Path(path)
    _prepare_folder(path)
    tmp = partial_path(path)
    try:
        tmp.mkdir()
    except OSError as exc:
        raise write_error(path, exc, "cannot create the folder") from exc
    try:
        yield tmp
        if os.path.lexists(path):
            if not replace or not path.is_dir():
                raise OverwriteRefused(
                    f"{path} already exists; nothing was written", setting="overwrite"
                )
            old = partial_path(
                path, PREVIOUS_TAG
            )  # restored by the next cleaner if killed right now
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)  # put the earlier folder back
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _is_write_failure(exc, tmp, path):
            raise write_error(path, exc) from exc  # type: ignore[arg-type]
        raise
