"""Qt-free core of HistoViewer: slides, tiles, phantoms, models, analysis.

Nothing under ``histoviewer.core`` may import PySide6 or pyqtgraph (enforced by
``tests/test_architecture.py``), so every GUI feature has a headless twin.
"""
