"""Slide readers: one interface over OpenSlide and a fallback for flat images."""

from histoviewer.core.slide.info import SlideInfo
from histoviewer.core.slide.open import open_slide
from histoviewer.core.slide.reader import SlideReader

__all__ = ["SlideInfo", "SlideReader", "open_slide"]
