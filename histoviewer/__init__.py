"""HistoViewer: a whole-slide image viewer with an AI tumour overlay for sentinel lymph nodes."""

__version__ = "0.1.0"
