"""Build the installer with packaging/build.sh and run what it holds, outside the source tree.

Slow (a PyInstaller build: minutes, incremental after the first). The bundle is extracted into a
temporary folder and run with a clean environment (no PYTHONPATH, no virtual environment, the
working directory elsewhere) so that it can only use what it carries: the command line on a
real Aperio slide and on a phantom, and the viewer painting a slide offscreen.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The extracted archive's folder (built once for the module)."""
    env = dict(
        os.environ, PYTHON=os.environ.get("HISTOVIEWER_BUILD_PYTHON", sys.executable)
    )
    result = subprocess.run(
        ["bash", str(REPO / "packaging" / "build.sh")],
        env=env,
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    tarball = Path(result.stdout.strip().splitlines()[-1])
    assert tarball.is_file() and tarball.suffixes[-2:] == [".tar", ".gz"]
    out = tmp_path_factory.mktemp("extracted")
    with tarfile.open(tarball) as archive:
        archive.extractall(out, filter="tar")
    (folder,) = out.iterdir()
    return folder


def _run(
    bundle: Path, tmp_path: Path, *args: str, timeout: int = 600, **env_extra: str
):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    # A clean environment: nothing that points at the source tree or a Python installation.
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "QT_QPA_PLATFORM": "offscreen",
        "HISTOVIEWER_DATA_DIR": str(home / "data"),
        "HISTOVIEWER_CONFIG_DIR": str(home / "config"),
        **env_extra,
    }
    return subprocess.run(
        [str(bundle / "histoviewer"), *args],
        env=env,
        cwd=tmp_path,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_bundle_carries_models_licences_and_no_test_data(bundle):
    internal = bundle / "app" / "_internal"
    for name in (
        "cnn-pcam.safetensors",
        "cnn-pcam-resnet.safetensors",
        "handcrafted-pcam.safetensors",
        "screen-pcam.safetensors",
    ):
        assert (internal / "resources" / "models" / name).is_file()
    assert (internal / "resources" / "licenses" / "pyside6.txt").is_file()
    assert (internal / "openslide_bin" / "libopenslide.so.1").is_file()
    assert not (internal / "torch" / "include").exists()
    assert not list(internal.rglob("*.a"))
    for name in (
        "install.sh",
        "histoviewer.desktop",
        "histoviewer-mime.xml",
        "icons/histoviewer-256.png",
    ):
        assert (bundle / name).is_file()


def test_bundle_version_and_help(bundle, tmp_path):
    result = _run(bundle, tmp_path, "--version")
    assert result.returncode == 0 and result.stdout.startswith("histoviewer "), (
        result.stderr
    )


def test_bundle_info_on_the_real_svs(bundle, tmp_path, cmu_small):
    if not cmu_small.is_file():
        pytest.skip(f"{cmu_small} is absent")
    result = _run(bundle, tmp_path, "info", str(cmu_small))
    assert result.returncode == 0, result.stderr
    assert "reader:            openslide" in result.stdout, (
        result.stdout
    )  # the bundled libopenslide loaded
    assert "2220 x 2967 px" in result.stdout, (
        result.stdout
    )  # level-0 size of CMU-1-Small-Region


def test_bundle_makes_and_analyzes_a_phantom(bundle, tmp_path):
    slide = tmp_path / "phantom.tiff"
    made = _run(
        bundle,
        tmp_path,
        "phantom",
        str(slide),
        "--width",
        "3000",
        "--height",
        "2400",
        "--mpp",
        "1.0",
        "--lesions",
        "micro:0.5",
        "--seed",
        "3",
    )
    assert made.returncode == 0, made.stderr
    out = tmp_path / "analysis"
    analyzed = _run(
        bundle, tmp_path, "analyze", str(slide), "--out", str(out), "--device", "cpu"
    )
    assert analyzed.returncode == 0, analyzed.stderr
    # The CNN ran (torch in the bundle) and wrote the slide's results.
    summary = out / "phantom" / "summary.json"
    assert summary.is_file(), sorted(p.name for p in out.rglob("*"))
    assert (out / "phantom" / "probability.tiff").is_file()


def test_bundle_viewer_paints_a_slide_offscreen(bundle, tmp_path, tiny_svs):
    result = _run(bundle, tmp_path, "view", str(tiny_svs), HISTOVIEWER_SMOKE_TEST="120")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "first complete frame painted" in result.stderr
