"""``core.atomic``: no write replaces an input or an unasked existing file, no write leaves a
half file, every write failure is one ``WriteError`` naming the file, and temporary files of
dead processes are cleaned at the next write into their folder."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from histoviewer.core import atomic
from histoviewer.core.atomic import (
    PARTIAL_TAG,
    atomic_folder,
    atomic_target,
    atomic_write_bytes,
    check_output,
    clean_stale_partials,
    partial_path,
    same_file,
)
from histoviewer.core.errors import HistoViewerError, OverwriteRefused, WriteError


def _partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if PARTIAL_TAG in p.name)


# -- refusing to write over inputs and existing files ----------------------------------------------
def test_an_input_is_refused_by_path_symlink_and_hard_link_even_with_overwrite(
    tmp_path,
):
    slide = tmp_path / "slide.svs"
    slide.write_bytes(b"slide")
    (tmp_path / "link.svs").symlink_to(slide)
    os.link(slide, tmp_path / "hard.svs")
    for out in (
        slide,
        tmp_path / "link.svs",
        tmp_path / "hard.svs",
        tmp_path / "sub" / ".." / "slide.svs",
    ):
        if out.parent.name == "sub":
            (tmp_path / "sub").mkdir(exist_ok=True)
        with pytest.raises(OverwriteRefused, match="a file the job reads"):
            check_output(out, inputs=[slide], overwrite=True)
    assert slide.read_bytes() == b"slide"


def test_an_input_given_through_a_symlinked_folder_is_the_same_file(tmp_path):
    (tmp_path / "real").mkdir()
    slide = tmp_path / "real" / "a.tiff"
    slide.write_bytes(b"x")
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert same_file(tmp_path / "alias" / "a.tiff", slide)
    assert not same_file(tmp_path / "alias" / "b.tiff", slide)


def test_existing_files_need_overwrite_and_folders_are_never_files(tmp_path):
    old = tmp_path / "old.png"
    old.write_bytes(b"old")
    with pytest.raises(OverwriteRefused, match="already exists") as info:
        check_output(old)
    assert info.value.setting == "overwrite"
    assert check_output(old, overwrite=True) == old
    with pytest.raises(WriteError, match="is a folder"):
        check_output(tmp_path, overwrite=True)
    with pytest.raises(WriteError, match="is a file, not a folder"):
        check_output(old / "x.png")
    with pytest.raises(WriteError, match="is a file, not a folder"):
        check_output(old, folder=True)
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    with pytest.raises(WriteError, match="device, pipe or socket"):
        check_output(fifo, overwrite=True)
    with pytest.raises(WriteError, match="device, pipe or socket"):
        check_output("/dev/null", overwrite=True)
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OverwriteRefused):
        check_output(dangling)


# -- every OSError on write is a WriteError naming the file ---------------------------------------
def _full_disk(monkeypatch):
    real_open = os.fdopen

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, _data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: Full(real_open(fd, mode)))


def test_a_full_disk_keeps_the_old_file_and_leaves_no_partial(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    target.write_text("old")
    _full_disk(monkeypatch)
    with pytest.raises(
        WriteError, match=r"summary\.json: cannot write: the disk is full"
    ) as info:
        atomic_write_bytes(target, b"new")
    assert isinstance(info.value, OSError) and isinstance(info.value, HistoViewerError)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(target)
    assert target.read_text() == "old" and _partials(tmp_path) == []


@pytest.mark.skipif(
    os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root writes anywhere"
)
def test_a_read_only_folder_is_a_write_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(WriteError, match="permission denied"):
            atomic_write_bytes(ro / "x.json", b"{}")
        with (
            pytest.raises(WriteError, match="permission denied"),
            atomic_target(ro / "x.tiff"),
        ):
            pass
    finally:
        ro.chmod(0o755)


def test_a_streamed_write_past_a_file_size_limit_fails_cleanly(tmp_path):
    """A real limit (RLIMIT_FSIZE, as a small full disk): the write fails with EFBIG, the
    error names the file, no temporary file remains and nothing else is written."""
    code = f"""
import resource, signal, sys
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
from histoviewer.core.atomic import atomic_target
from histoviewer.core.errors import WriteError
try:
    with atomic_target({str(tmp_path / "big.png")!r}) as tmp:
        with open(tmp, 'wb') as fh:
            fh.write(b'x' * 100000)
except WriteError as exc:
    print(exc)
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "big.png: cannot write: the file is larger" in out.stdout, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_read_error_inside_a_streamed_write_is_not_called_a_write_error(tmp_path):
    with pytest.raises(OSError) as info, atomic_target(tmp_path / "x.png"):
        raise OSError(errno.EIO, "tile read failed", "/slides/a.svs")
    assert not isinstance(info.value, WriteError)
    assert list(tmp_path.iterdir()) == []


# -- temporary files: named by their writer, cleaned when it is gone --------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_partials_of_dead_processes_are_cleaned_at_the_next_write(tmp_path):
    mine = partial_path(tmp_path / "a.png")
    assert f".{os.getpid()}." in mine.name and mine.name.startswith(".a.png.")
    dead = Path(str(mine).replace(f".{os.getpid()}.", f".{_dead_pid()}."))
    dead.write_bytes(b"half")
    dead_dir = dead.with_name(dead.name + "0")  # a folder (an analysis being written)
    dead_dir.mkdir()
    (dead_dir / "probability.tiff").write_bytes(b"half")
    live = Path(str(mine).replace(f".{os.getpid()}.", f".{os.getppid()}."))
    live.write_bytes(b"another process is writing this")
    other_host = tmp_path / f".b.png.{PARTIAL_TAG}.otherhost.{_dead_pid()}.abcd"
    other_host.write_bytes(b"cannot tell")
    user = tmp_path / ".b.png.partial"
    user.write_bytes(b"not ours")
    atomic_write_bytes(tmp_path / "c.json", b"{}")
    left = _partials(tmp_path)
    assert dead.name not in left and dead_dir.name not in left
    assert live.name in left and other_host.name in left and user.exists()
    assert clean_stale_partials(tmp_path) == []


def test_a_killed_writer_leaves_a_named_partial_that_the_next_writer_removes(tmp_path):
    """kill -9 during a streamed export: the temporary file says whose it was; the next
    export into the folder removes it (the writer's process is gone)."""
    code = f"""
import os, sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
from histoviewer.core.atomic import atomic_target
with atomic_target({str(tmp_path / "slow.tiff")!r}) as tmp:
    open(tmp, 'wb').write(b'half')
    print(tmp, flush=True)
    time.sleep(60)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True
    )
    partial = Path(proc.stdout.readline().strip())
    proc.kill()
    proc.wait()
    proc.stdout.close()
    assert partial.exists() and f".{proc.pid}." in partial.name
    with atomic_target(tmp_path / "next.png") as tmp:
        tmp.write_bytes(b"png")
    assert not partial.exists() and not (tmp_path / "slow.tiff").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["next.png"]


# -- folders --------------------------------------------------------------------------------------
def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    out = tmp_path / "slide1"
    with pytest.raises(RuntimeError), atomic_folder(out) as tmp:
        (tmp / "probability.tiff").write_bytes(b"x")
        raise RuntimeError("the analysis failed half way")
    assert list(tmp_path.iterdir()) == []
    with atomic_folder(out) as tmp:
        (tmp / "summary.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["summary.json"]
    with pytest.raises(OverwriteRefused), atomic_folder(out) as tmp:
        (tmp / "summary.json").write_text("new")
    assert (out / "summary.json").read_text() == "{}"
    with atomic_folder(out, replace=True) as tmp:
        (tmp / "summary.json").write_text("new")
    assert (out / "summary.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slide1"]


def test_atomic_write_keeps_an_existing_files_mode(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("old")
    target.chmod(0o600)
    atomic_write_bytes(target, b"new")
    assert target.stat().st_mode & 0o777 == 0o600 and target.read_bytes() == b"new"


def test_a_folder_moved_aside_by_a_killed_replace_comes_back(tmp_path):
    """Killed between moving the earlier folder aside and moving the new one in: the next
    cleaner puts the earlier folder back (it is never deleted while nothing replaced it)."""
    from histoviewer.core.atomic import PREVIOUS_TAG

    dead = _dead_pid()
    aside = tmp_path / f".slide1.{PREVIOUS_TAG}.{atomic._host()}.{dead}.abcd1234"
    aside.mkdir()
    (aside / "summary.json").write_text("earlier")
    half = tmp_path / f".slide1.{PARTIAL_TAG}.{atomic._host()}.{dead}.beef"
    half.mkdir()
    clean_stale_partials(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slide1"]
    assert (tmp_path / "slide1" / "summary.json").read_text() == "earlier"
    # once the new folder is in place, an aside copy left by a killed process is removed
    aside.mkdir()
    clean_stale_partials(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slide1"]


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.EROFS, "the file system is read-only"),
        (errno.EACCES, "permission denied"),
        (errno.EDQUOT, "the disk quota is used up"),
        (errno.ENOSPC, "the disk is full"),
        (errno.EIO, "input/output error (failing disk or lost network share)"),
    ],
)
def test_every_os_error_on_write_is_a_write_error_in_words(
    tmp_path, monkeypatch, code, words
):
    def refuse(*_args, **_kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic.os, "replace", refuse)
    target = tmp_path / "x.json"
    with pytest.raises(WriteError) as info:
        atomic_write_bytes(target, b"{}")
    assert (
        str(info.value) == f"{target}: cannot write: {words}"
        and info.value.errno == code
    )
    assert list(tmp_path.iterdir()) == []
