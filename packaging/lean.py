"""What the bundle leaves out: files and modules HistoViewer never imports.

Shared by the spec files (all platforms). The patterns match the bundle-relative destination
names of PyInstaller's TOC entries (``torch/lib/libtorch_cpu.so``, ``PySide6/Qt/lib/...``), so
the same Analysis serves a full and a lean build (``HISTOVIEWER_LEAN=0`` keeps everything: that
is how the size before the exclusions is measured).
"""

from __future__ import annotations

import fnmatch

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

# Data files and binaries (glob on the destination path inside the bundle).
EXCLUDED_FILE_PATTERNS = (
    "torch/include/*",
    "torch/test/*",
    "torch/share/cmake/*",
    "*.a",
    "*.lib",
    "*.h",
    "*.hpp",
    "*.cuh",
    "*.pyi",
    "torch/lib/libtorchbind_test.so",
    "torch/lib/libjitbackend_test.so",
    "torch/lib/libbackend_with_compiler.so",
    "torch/lib/libaoti_custom_ops.so",
    "torch/bin/*",
    "torch/onnx/*",
    "torch/utils/benchmark/*",
    "torch/utils/tensorboard/*",
    "caffe2/*",
    # Qt: only QtCore, QtGui, QtWidgets (and QtSvg, QtOpenGL for pyqtgraph) are used.
    "PySide6/Qt/lib/libQt6Qml*",
    "PySide6/Qt/lib/libQt6Quick*",
    "PySide6/Qt/lib/libQt6Pdf*",
    "PySide6/Qt/lib/libQt6Designer*",
    "PySide6/Qt/lib/libQt6WebEngine*",
    "PySide6/Qt/lib/libQt6Sql*",
    "PySide6/Qt/lib/libQt6Test*",
    "PySide6/Qt/lib/libQt6Help*",
    "PySide6/Qt/lib/libQt6UiTools*",
    "PySide6/Qt/lib/libQt6Network*",
    "PySide6/Qt/lib/libQt6Concurrent*",
    "PySide6/Qt/qml/*",
    "PySide6/Qt/translations/qtwebengine*",
    "PySide6/Qt/plugins/sqldrivers/*",
    "PySide6/Qt/plugins/qmltooling/*",
    "PySide6/Qt/plugins/designer/*",
    "PySide6/Qt/plugins/networkinformation/*",
    "PySide6/Qt/plugins/tls/*",
    "PySide6/Qt/plugins/generic/*",
    "PySide6/Qt/plugins/position/*",
    "PySide6/Qt*.so",
    "!PySide6/QtCore*",
    "!PySide6/QtGui*",
    "!PySide6/QtWidgets*",
    "!PySide6/QtSvg*",
    "!PySide6/QtOpenGL*",
    "!PySide6/QtOpenGLWidgets*",
    "!PySide6/QtDBus*",
    "*/tests/*",
    "skimage/data/*",
    "scipy/datasets/*",
    "sklearn/datasets/data/*",
    "sklearn/datasets/descr/*",
    "sklearn/datasets/images/*",
)


def module_excluded(name: str) -> bool:
    if any(name == p or name.startswith(p + ".") for p in EXCLUDED_MODULE_PREFIXES):
        return True
    return any(part in name + "." for part in EXCLUDED_MODULE_PARTS)


def file_excluded(dest: str) -> bool:
    """True when ``dest`` (bundle-relative, '/'-separated) matches an exclusion and no '!' keep-pattern."""
    dest = dest.replace("\\", "/")
    keep = [p[1:] for p in EXCLUDED_FILE_PATTERNS if p.startswith("!")]
    if any(fnmatch.fnmatch(dest, p) for p in keep):
        return False
    return any(
        fnmatch.fnmatch(dest, p)
        for p in EXCLUDED_FILE_PATTERNS
        if not p.startswith("!")
    )


def lean_toc(toc):
    """The TOC without the excluded modules and files (entries are (dest, src, typecode))."""
    kept = []
    for entry in toc:
        dest, _src, typecode = entry
        if (
            typecode in ("PYMODULE", "PYSOURCE")
            and typecode != "PYSOURCE"
            and module_excluded(dest)
        ):
            continue
        if typecode not in ("PYMODULE", "PYSOURCE") and file_excluded(dest):
            continue
        kept.append(entry)
    return kept
