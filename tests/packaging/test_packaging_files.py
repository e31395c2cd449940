"""The packaged application's pieces that can be checked without building it: resources found
when frozen, the licence files, the desktop entry and MIME types, and the per-user installer."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from defusedxml import ElementTree

from histoviewer.core import licenses, paths
from histoviewer.core.models import registry

REPO = Path(__file__).resolve().parents[2]
LINUX = REPO / "packaging" / "linux"
SLIDE_EXTENSIONS = ("svs", "ndpi", "mrxs", "scn", "tif", "tiff", "dcm")
MIME_NS = "{http://www.freedesktop.org/standards/shared-mime-info}"


def test_resources_dir_is_the_source_tree_when_not_frozen():
    assert paths.bundled_resources_dir() == REPO / "resources"


def test_resources_dir_is_inside_the_bundle_when_frozen(monkeypatch, tmp_path):
    # PyInstaller sets sys.frozen and sys._MEIPASS (the bundle's _internal folder).
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert paths.bundled_resources_dir() == tmp_path / "resources"
    # ...and the default models are looked up there, not in a source tree that is not there.
    assert registry.default_models_dir() == tmp_path / "resources" / "models"
    assert licenses.licences_dir() == tmp_path / "resources" / "licenses"


def test_frozen_bundle_finds_its_models_and_licence_files(monkeypatch, tmp_path):
    bundle = tmp_path / "_internal"
    shutil.copytree(REPO / "resources" / "models", bundle / "resources" / "models")
    licenses.write_licences(bundle / "resources" / "licenses")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(bundle), raising=False)
    found = {m.key: m for m in registry.available_models()}
    for key in registry.DEFAULT_MODEL_NAMES:
        assert found[key].info is not None, found[key].problem
        assert found[key].path.parent == bundle / "resources" / "models"
    # The bundle has no dist-info metadata: the summary comes from the bundled file.
    qt = next(c for c in licenses.THIRD_PARTY if c.key == "pyside6")
    monkeypatch.setattr(licenses.metadata, "metadata", _no_metadata)
    assert licenses.licence_summary(qt).startswith("LGPL-3.0")


def _no_metadata(name):
    raise licenses.metadata.PackageNotFoundError(name)


def test_licence_files_carry_the_real_texts(tmp_path):
    written = {
        p.stem: p.read_text(encoding="utf-8") for p in licenses.write_licences(tmp_path)
    }
    assert set(written) == {c.key for c in licenses.THIRD_PARTY}
    # LGPL: Qt/PySide6 (text from the system when the wheel has none) and OpenSlide (its wheel).
    if (licenses.COMMON_LICENSES / "LGPL-3").is_file():
        assert "GNU LESSER GENERAL PUBLIC LICENSE" in written["pyside6"]
    assert "GNU LESSER GENERAL PUBLIC LICENSE" in written["openslide"]
    assert "Version 2.1" in written["openslide"]
    assert "Licence: LGPL-3.0-only" in written["pyside6"]
    assert (
        "BSD" in written["torch"]
        and "Redistribution and use in source and binary forms" in written["torch"]
    )
    assert "CC0" in written["pcam"]
    for key in ("numpy", "tifffile", "imagecodecs", "scikit-image", "pyqtgraph"):
        assert "----- " in written[key], (
            f"{key}: no licence file found in its installed metadata"
        )


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(LINUX / "histoviewer.desktop", encoding="utf-8")
    return parser["Desktop Entry"]


def test_desktop_entry_is_valid():
    entry = _desktop_entry()
    for key in ("Type", "Name", "Exec", "Icon", "MimeType", "Categories"):
        assert entry.get(key), key
    assert entry["Type"] == "Application"
    assert "%F" in entry["Exec"]  # several files, as local paths
    assert entry["MimeType"].endswith(";") and entry["Categories"].endswith(";")
    assert (REPO / "resources" / "icons" / f"{entry['Icon']}.svg").is_file()
    validator = shutil.which("desktop-file-validate")
    if validator:
        result = subprocess.run(
            [validator, str(LINUX / "histoviewer.desktop")],
            check=False,
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_slide_extension_maps_to_a_mime_type_the_desktop_entry_claims():
    tree = ElementTree.parse(LINUX / "histoviewer-mime.xml")
    globs: dict[str, str] = {}
    for mime in tree.getroot().iter(f"{MIME_NS}mime-type"):
        for glob in mime.iter(f"{MIME_NS}glob"):
            globs[glob.get("pattern")] = mime.get("type")
    claimed = set(filter(None, _desktop_entry()["MimeType"].split(";")))
    for ext in SLIDE_EXTENSIONS:
        assert f"*.{ext}" in globs, ext
        assert globs[f"*.{ext}"] in claimed, ext


def test_icon_renders_exist_at_every_desktop_size():
    from PIL import Image

    for size in (16, 24, 32, 48, 64, 128, 256):
        with Image.open(
            REPO / "resources" / "icons" / f"histoviewer-{size}.png"
        ) as image:
            assert image.size == (size, size)
            assert image.mode == "RGBA"


@pytest.mark.skipif(not shutil.which("sh"), reason="needs a POSIX shell")
def test_install_sh_installs_into_the_users_folders_without_root(tmp_path):
    # A stand-in for an extracted archive: the same files build.sh stages, a fake executable.
    stage = tmp_path / "histoviewer-0-linux"
    (stage / "app").mkdir(parents=True)
    (stage / "app" / "histoviewer").write_text('#!/bin/sh\necho bundled "$@"\n')
    (stage / "app" / "histoviewer").chmod(0o755)
    for name in (
        "install.sh",
        "uninstall.sh",
        "histoviewer.desktop",
        "histoviewer-mime.xml",
    ):
        shutil.copy(LINUX / name, stage / name)
    shutil.copy(LINUX / "histoviewer.sh", stage / "histoviewer")
    shutil.copytree(REPO / "resources" / "icons", stage / "icons")
    home = tmp_path / "home"
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    result = subprocess.run(
        ["sh", str(stage / "install.sh")],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    data = home / ".local" / "share"
    app = data / "histoviewer" / "application"
    desktop = (data / "applications" / "histoviewer.desktop").read_text()
    assert f'Exec="{app}/histoviewer" %F' in desktop
    assert (data / "mime" / "packages" / "histoviewer.xml").is_file()
    if shutil.which(
        "update-mime-database"
    ):  # shared-mime-info accepted the file: every slide type is known
        globs = (data / "mime" / "globs2").read_text()
        for ext in SLIDE_EXTENSIONS:
            assert f":*.{ext}\n" in globs, ext
    assert (data / "icons" / "hicolor" / "48x48" / "apps" / "histoviewer.png").is_file()
    assert (
        data / "icons" / "hicolor" / "scalable" / "apps" / "histoviewer.svg"
    ).is_file()
    # The command works through the symlink in ~/.local/bin (the launcher resolves its folder).
    run = subprocess.run(
        [str(home / ".local" / "bin" / "histoviewer"), "info", "x"],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.stdout.strip() == "bundled info x"
    result = subprocess.run(
        ["sh", str(app / "uninstall.sh")],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (
        not app.exists()
        and not (data / "applications" / "histoviewer.desktop").exists()
    )
    assert not (home / ".local" / "bin" / "histoviewer").exists()


def _lean():
    sys.path.insert(0, str(REPO / "packaging"))
    try:
        import lean
    finally:
        sys.path.remove(str(REPO / "packaging"))
    return lean


def test_lean_keeps_what_the_application_loads_at_run_time():
    # Each of these went missing once and the bundle failed to start.
    lean = _lean()
    for dest in (
        "PySide6/Qt/plugins/platforms/libqxcb.so",  # a glob "PySide6/Qt*.so" crossed folders
        "PySide6/Qt/plugins/platforms/libqoffscreen.so",
        "PySide6/QtCore.abi3.so",
        "PySide6/QtWidgets.abi3.so",
        "torch/bin/torch_shm_manager",  # `import torch` checks for it
        "skimage/__init__.pyi",  # lazy_loader reads the stubs at import
        "skimage/exposure/__init__.pyi",
        "openslide_bin/libopenslide.so.1",
        "torch/lib/libtorch_cpu.so",
        "resources/models/cnn-pcam-resnet.safetensors",
        "resources/licenses/pyside6.txt",
    ):
        assert not lean.file_excluded(dest), dest
    for module in (
        "torch.distributed",
        "torch.export",
        "torch.testing._internal",
        "torch.cuda",
        "skimage.filters",
    ):
        assert not lean.module_excluded(module), module


def test_lean_drops_headers_tests_and_unused_qt():
    lean = _lean()
    for dest in (
        "torch/include/ATen/ATen.h",
        "torch/lib/libtorchbind_test.so",
        "torch/bin/test_jit",
        "libfoo.a",
        "scipy/io/tests/data/x.mat",
        "PySide6/QtQml.abi3.so",
        "PySide6/Qt/lib/libQt6Quick.so.6",
        "PySide6/Qt/qml/QtQuick/qmldir",
    ):
        assert lean.file_excluded(dest), dest
    for module in (
        "torch.onnx",
        "dask.distributed",
        "skimage.filters.tests.test_thresholding",
        "pytest",
    ):
        assert lean.module_excluded(module), module
