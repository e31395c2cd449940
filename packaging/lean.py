"""What the bundle leaves out: files and modules HistoViewer never imports.

Shared by the spec files (all platforms). The patterns match the bundle-relative destination
names of PyInstaller's TOC entries (``torch/lib/libtorch_cpu.so``, ``PySide6/Qt/lib/...``), so
the same Analysis serves a full and a lean build (``HISTOVIEWER_LEAN=0`` keeps everything: that
is how the size before the exclusions is measured).
"""

from __future__ import annotations

import re

# Python modules (prefix match on the dotted name).
EXCLUDED_MODULE_PREFIXES = (
    # Optional or development-only: the Dask cluster runner (an extra), test frameworks.
    "dask",
    "distributed",
    "pytest",
    "_pytest",
    "torchstain",
    "IPython",
    "matplotlib",
    "tkinter",
    "pyvips",
    "importlinter",
    "grimp",
    "setuptools",
    "pip",
    # torch parts the application never imports (checked against sys.modules after a GUI start
    # and a CNN analysis: torch.distributed, torch.export and torch.testing ARE imported by
    # `import torch` itself and must stay).
    "torch.onnx",
    "torch.utils.tensorboard",
    "torch.utils.benchmark",
    "caffe2",
    # The unit tests of the libraries themselves.
    "numpy.tests",
    "scipy.tests",
    "skimage.data.tests",
)
EXCLUDED_MODULE_PARTS = (".tests", ".test.", "._tests", ".testing.tests")

# Data files and binaries: globs on the destination path inside the bundle, where "*" stays
# within one folder and "**/" spans any number of them; "!" marks what must stay.
EXCLUDED_FILE_PATTERNS = (
    "torch/include/**",
    "torch/test/**",
    "torch/share/cmake/**",
    "**/*.a",
    "**/*.lib",
    "**/*.h",
    "**/*.hpp",
    "**/*.cuh",
    # torch's C++ test programs and libraries (torch_shm_manager is started by `import torch`).
    "torch/bin/*",
    "!torch/bin/torch_shm_manager",
    "torch/lib/libtorchbind_test.so",
    "torch/lib/libjitbackend_test.so",
    "torch/lib/libbackend_with_compiler.so",
    "torch/lib/libaoti_custom_ops.so",
    "torch/onnx/**",
    "torch/utils/benchmark/**",
    "torch/utils/tensorboard/**",
    "caffe2/**",
    # Qt: only QtCore, QtGui, QtWidgets are imported (QtSvg, QtOpenGL, QtDBus: by pyqtgraph and
    # the platform plugins). The Python modules of the others, and their libraries.
    "PySide6/Qt[A-Z]*.abi3.so",
    "!PySide6/QtCore.abi3.so",
    "!PySide6/QtGui.abi3.so",
    "!PySide6/QtWidgets.abi3.so",
    "!PySide6/QtSvg.abi3.so",
    "!PySide6/QtOpenGL.abi3.so",
    "!PySide6/QtOpenGLWidgets.abi3.so",
    "!PySide6/QtDBus.abi3.so",
    "PySide6/Qt/lib/libQt6Qml*",
    "PySide6/Qt/lib/libQt6Quick*",
    "PySide6/Qt/lib/libQt6Pdf*",
    "PySide6/Qt/lib/libQt6Designer*",
    "PySide6/Qt/lib/libQt6WebEngine*",
    "PySide6/Qt/lib/libQt6Sql*",
    "PySide6/Qt/lib/libQt6Test*",
    "PySide6/Qt/lib/libQt6Help*",
    "PySide6/Qt/lib/libQt6UiTools*",
    "PySide6/Qt/qml/**",
    "PySide6/Qt/translations/qtwebengine*",
    "PySide6/Qt/plugins/sqldrivers/*",
    "PySide6/Qt/plugins/qmltooling/*",
    "PySide6/Qt/plugins/designer/*",
    "PySide6/Qt/plugins/generic/*",
    "PySide6/Qt/plugins/position/*",
    # Data files of the excluded Dask runner (its modules are excluded above).
    "dask/**",
    "distributed/**",
    # The libraries' own tests and sample data.
    "**/tests/**",
    "skimage/data/*.jpg",
    "skimage/data/*.png",
    "skimage/data/*.npz",
    "skimage/data/*.npy",
    "scipy/datasets/**",
    "sklearn/datasets/data/**",
    "sklearn/datasets/descr/**",
    "sklearn/datasets/images/**",
)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regex: "**/" any folders (or none), "*" within one folder, "[...]" as is."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            close = pattern.index("]", i)
            out.append(pattern[i : close + 1])
            i = close + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


_EXCLUDE = [_glob_regex(p) for p in EXCLUDED_FILE_PATTERNS if not p.startswith("!")]
_KEEP = [_glob_regex(p[1:]) for p in EXCLUDED_FILE_PATTERNS if p.startswith("!")]


def hidden_imports() -> list[str]:
    """What PyInstaller's import analysis cannot see (called by the spec files)."""
    from PyInstaller.utils.hooks import collect_submodules

    # The CLI and the GUI import their subcommands and panels lazily (start-up time);
    # imagecodecs loads its codec extensions (jpeg8, ...) on first use, by name.
    return [*collect_submodules("histoviewer"), *collect_submodules("imagecodecs")]


# openslide-bin's libopenslide.so.1 is versioned: the default patterns (*.so) miss it.
OPENSLIDE_LIBS = ["*.so*", "*.dll", "*.dylib"]


def module_excluded(name: str) -> bool:
    if any(name == p or name.startswith(p + ".") for p in EXCLUDED_MODULE_PREFIXES):
        return True
    return any(part in name + "." for part in EXCLUDED_MODULE_PARTS)


def file_excluded(dest: str) -> bool:
    """True when ``dest`` (bundle-relative) matches an exclusion and no "!" keep-pattern."""
    dest = dest.replace("\\", "/")
    if any(k.match(dest) for k in _KEEP):
        return False
    return any(e.match(dest) for e in _EXCLUDE)


def lean_toc(toc):
    """The TOC without the excluded modules and files (entries are (dest, src, typecode))."""
    kept = []
    for entry in toc:
        dest, _src, typecode = entry
        if typecode == "PYMODULE" and module_excluded(dest):
            continue
        if typecode not in ("PYMODULE", "PYSOURCE") and file_excluded(dest):
            continue
        kept.append(entry)
    return kept
