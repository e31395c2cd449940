"""Third-party licences: what HistoViewer ships, under which licence, and the licence texts.

Distribution requires the texts to travel with the application. They are taken from the
installed distributions' own metadata (``*.dist-info/licenses/``, ``LICENSE*``), so they stay
right when a dependency is upgraded: the packaging build writes them into a folder
(``python -m histoviewer.core.licenses DEST``) that the bundle carries as
``resources/licenses``; from a source tree they are read from the installed metadata directly.
Where a wheel carries no text (PySide6, shiboken6) or the work is not a package (the Qt
libraries, the PatchCamelyon data) the text comes from the system's common-licenses folder or
is written here.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from histoviewer.core.paths import bundled_resources_dir

__all__ = [
    "THIRD_PARTY",
    "Component",
    "licence_summary",
    "licence_text",
    "write_licences",
]

COMMON_LICENSES = Path("/usr/share/common-licenses")


@dataclass(frozen=True)
class Component:
    """One shipped work: ``dist`` the installed distribution it comes from (None for data),
    ``licence`` the licence when the metadata does not say it in SPDX terms."""

    key: str  # file stem in the licences folder
    title: str
    role: str
    dist: str | None = None
    licence: str | None = None
    common_texts: tuple[
        str, ...
    ] = ()  # texts from COMMON_LICENSES when the wheel has none
    notice: str = ""


THIRD_PARTY: tuple[Component, ...] = (
    Component(
        "histoviewer",
        "HistoViewer",
        "this application",
        "histoviewer",
        "Apache-2.0",
        ("Apache-2.0",),
    ),
    Component(
        "pyside6",
        "Qt 6, PySide6, shiboken6",
        "windows, drawing, widgets",
        "PySide6_Essentials",
        None,
        ("LGPL-3", "GPL-3"),
        "Qt and PySide6 are used under the GNU LGPL v3: the Qt libraries are separate shared "
        "libraries in this bundle (PySide6/Qt/lib) and can be replaced by the user with their own "
        "build. Source: https://code.qt.io and https://download.qt.io/official_releases/QtForPython/",
    ),
    Component(
        "openslide",
        "OpenSlide (openslide-bin)",
        "reading slide files",
        "openslide-bin",
        notice="libopenslide.so.1 is a separate shared library (openslide_bin/) and can be replaced. "
        "Source: https://github.com/openslide/openslide-bin",
    ),
    Component(
        "openslide-python",
        "OpenSlide Python",
        "reading slide files",
        "openslide-python",
    ),
    Component("torch", "PyTorch (CPU build)", "the CNN models", "torch"),
    Component("onnxruntime", "ONNX Runtime", "CNN inference on the CPU", "onnxruntime", "MIT"),
    Component("onnx", "ONNX", "the CNN graphs ONNX Runtime runs", "onnx", "Apache-2.0"),
    Component("numpy", "NumPy", "arrays", "numpy"),
    Component("scipy", "SciPy", "image measurements", "scipy", "BSD-3-Clause"),
    Component(
        "scikit-image",
        "scikit-image",
        "tissue and stain analysis",
        "scikit-image",
        "BSD-3-Clause",
    ),
    Component(
        "scikit-learn", "scikit-learn", "the handcrafted model, metrics", "scikit-learn"
    ),
    Component("tifffile", "tifffile", "TIFF slides and exports", "tifffile"),
    Component("imagecodecs", "imagecodecs", "slide tile codecs", "imagecodecs"),
    Component("pyqtgraph", "PyQtGraph", "plots", "pyqtgraph"),
    Component("superqt", "superqt", "Qt helpers", "superqt", "BSD-3-Clause"),
    Component("pillow", "Pillow", "image files", "pillow"),
    Component("h5py", "h5py (with HDF5)", "PatchCamelyon files", "h5py"),
    Component("safetensors", "safetensors", "model files", "safetensors", "Apache-2.0"),
    Component("defusedxml", "defusedxml", "safe XML parsing", "defusedxml", "PSF-2.0"),
    Component("tqdm", "tqdm", "progress bars", "tqdm"),
    Component(
        "pcam",
        "PatchCamelyon (PCam) data",
        "training data of the shipped models",
        None,
        "CC0-1.0",
        ("CC0-1.0",),
        "The shipped models were trained on PatchCamelyon patches (B. S. Veeling et al., 2018, "
        "https://github.com/basveeling/pcam), derived from the CAMELYON16 challenge data, released "
        "under CC0 1.0. No patient data is shipped in this application.",
    ),
)

_TEXT_NAMES = re.compile(r"(LICEN[CS]E|COPYING|NOTICE|AUTHORS)", re.IGNORECASE)


def licence_summary(component: Component) -> str:
    """The licence in SPDX terms: ``component.licence``, else the distribution's metadata."""
    if component.licence:
        return component.licence
    bundled = licences_dir() / f"{component.key}.txt"
    if (
        bundled.is_file()
    ):  # a packaged application has no dist-info metadata: its file says it
        for line in bundled.read_text(encoding="utf-8", errors="replace").splitlines()[
            :5
        ]:
            if line.startswith("Licence: "):
                return line.removeprefix("Licence: ")
    if component.dist is None:
        return "see the licence text"
    try:
        meta = metadata.metadata(component.dist)
    except metadata.PackageNotFoundError:
        return "see the licence text"
    expression = meta.get("License-Expression") or ""
    if expression:
        return expression
    short = (meta.get("License") or "").strip()
    return (
        short
        if short and "\n" not in short and len(short) < 80
        else "see the licence text"
    )


def _dist_texts(dist_name: str) -> list[tuple[str, str]]:
    """(file name, text) of the licence files a distribution installed, in file order."""
    try:
        dist = metadata.distribution(dist_name)
    except metadata.PackageNotFoundError:
        return []
    texts = []
    for file in dist.files or ():
        if ".dist-info/" not in str(file).replace("\\", "/") or not _TEXT_NAMES.search(
            file.name
        ):
            continue
        if file.suffix in (".py", ".pyc"):
            continue
        try:
            texts.append(
                (
                    str(file),
                    Path(dist.locate_file(file)).read_text(
                        encoding="utf-8", errors="replace"
                    ),
                )
            )
        except OSError:
            continue
    return texts


def _compose(component: Component) -> str:
    """The full text of one component's licence file."""
    parts = [
        f"{component.title}\nUsed for: {component.role}\nLicence: {licence_summary(component)}\n"
    ]
    if component.dist:
        try:
            parts[0] += f"Version: {metadata.version(component.dist)}\n"
        except metadata.PackageNotFoundError:
            pass
    if component.notice:
        parts.append(component.notice)
    for name, text in _dist_texts(component.dist) if component.dist else ():
        parts.append(f"----- {name} -----\n{text.strip()}")
    for name in component.common_texts:
        path = COMMON_LICENSES / name
        if path.is_file():
            parts.append(
                f"----- {name} -----\n{path.read_text(encoding='utf-8', errors='replace').strip()}"
            )
        elif component.dist is None or not _dist_texts(component.dist):
            parts.append(
                f"----- {name} -----\nThe full text: https://spdx.org/licenses/{name}.html"
            )
    return "\n\n".join(parts) + "\n"


def licences_dir() -> Path:
    """The licence files a packaged application carries (``resources/licenses``)."""
    return bundled_resources_dir() / "licenses"


def licence_text(component: Component) -> str:
    """The licence file of ``component``: the bundled one when present, else composed now."""
    bundled = licences_dir() / f"{component.key}.txt"
    if bundled.is_file():
        return bundled.read_text(encoding="utf-8", errors="replace")
    return _compose(component)


def write_licences(folder: Path) -> list[Path]:
    """Write one ``KEY.txt`` per component into ``folder`` (the packaging build's step)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for component in THIRD_PARTY:
        path = folder / f"{component.key}.txt"
        path.write_text(_compose(component), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_licences(Path(sys.argv[1])):
        print(written_path)
