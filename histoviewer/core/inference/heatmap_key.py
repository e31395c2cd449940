"""The key drawn into ``heatmap.png``: what its colours mean.

A small white card in the corner with the least tissue: the colour bar of the tumour
probability, and, when the map has any, a swatch of the pale blue veil over screened-negative
tissue (the screen at 2.5x passed it, the full model did not classify it), beside the greyed
slide of tissue nothing classified. Every swatch is painted as the heatmap paints it
(``blend``) over one greyed tissue tone, so the key shows the picture's colours.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from histoviewer.core.colormaps import DEFAULT_COLORMAP, colormap_lut
from histoviewer.core.inference.overlay import SCREENED_RGBA

__all__ = ["KEY_MIN_PX", "TISSUE_RGB", "blend", "draw_heatmap_key", "key_box"]

# Pictures smaller than this on either side get no key: it would cover the slide.
KEY_MIN_PX = 400
# A light H&E tissue tone, greyed as the heatmap greys the slide, under every swatch.
TISSUE_RGB = (205, 175, 215)
_TEXT_RGB = (20, 20, 20)
_EDGE_RGB = (120, 120, 120)

TITLE = "Tumour probability (AI)"
SCREENED_TEXT = "screened negative at 2.5x: not classified"
UNCLASSIFIED_TEXT = "greyed slide: not classified"


def _font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size_px)


def _layout(width: int, height: int, screened: bool) -> tuple[int, int, int]:
    """(font px, card width, card height) for a picture of ``width`` x ``height`` px."""
    font_px = max(11, round(max(width, height) / 110))
    font = _font(font_px)
    texts = (SCREENED_TEXT, UNCLASSIFIED_TEXT) if screened else (UNCLASSIFIED_TEXT,)
    swatch_w = 2 * font_px + font_px // 2
    card_w = (
        2 * font_px
        + round(
            max(font.getlength(TITLE), *(swatch_w + font.getlength(t) for t in texts))
        )
        + 2
    )
    lines = 3 + (1 if screened else 0)  # title, bar, ticks, [veil]; the grey line below
    card_h = round(font_px * (1.5 * (lines + 1) + 1))
    return font_px, card_w, card_h


def key_box(
    encoded: np.ndarray, size: tuple[int, int], screened: bool
) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the key in a picture of ``size`` (width, height) px over the map
    ``encoded`` (background cells: -1): the corner whose card covers the fewest cells that are
    not background; None when the picture is too small (``KEY_MIN_PX``)."""
    width, height = size
    if min(width, height) < KEY_MIN_PX:
        return None
    _, card_w, card_h = _layout(width, height, screened)
    pad = max(4, card_w // 40)
    rows, cols = encoded.shape
    not_background = ~(encoded == -1.0)
    best = None
    for x0 in (pad, width - card_w - pad):
        for y0 in (height - card_h - pad, pad):
            r0, r1 = (
                int(y0 * rows / height),
                int(np.ceil((y0 + card_h) * rows / height)),
            )
            c0, c1 = int(x0 * cols / width), int(np.ceil((x0 + card_w) * cols / width))
            covered = int(np.count_nonzero(not_background[r0:r1, c0:c1]))
            if best is None or covered < best[0]:
                best = (covered, (x0, y0, x0 + card_w, y0 + card_h))
    return best[1]


def blend(rgb: np.ndarray, alpha256: int, tint: np.ndarray) -> np.ndarray:
    """The heatmap's paint: ``tint`` (uint8 RGB) at ``alpha256``/256 over ``rgb`` (uint8),
    (tint * alpha + rgb * (256 - alpha)) >> 8 in integers, as ``write_heatmap_png`` paints."""
    out = (
        np.asarray(rgb, np.uint16) * (256 - alpha256)
        + np.asarray(tint, np.uint16) * alpha256
    )
    return (out >> 8).astype(np.uint8)


def draw_heatmap_key(
    picture: np.ndarray,
    encoded: np.ndarray,
    opacity: float,
    grey_tissue: np.ndarray,
    screened: bool,
) -> None:
    """Draw the key into ``picture`` (uint8 RGB, changed in place). ``grey_tissue``: uint8
    RGB (3,), ``TISSUE_RGB`` greyed as the picture's slide is; ``screened``: the map has
    screened-negative cells (their swatch is drawn)."""
    height, width = picture.shape[:2]
    box = key_box(encoded, (width, height), screened)
    if box is None:
        return
    x0, y0, x1, y1 = box
    font_px, card_w, card_h = _layout(width, height, screened)
    font = _font(font_px)
    card = Image.new("RGB", (card_w, card_h), (255, 255, 255))
    draw = ImageDraw.Draw(card)
    draw.rectangle([0, 0, card_w - 1, card_h - 1], outline=_EDGE_RGB)
    margin = font_px
    line_h = round(font_px * 1.5)
    y = margin // 2
    draw.text((margin, y), TITLE, fill=_TEXT_RGB, font=font)
    y += line_h
    bar_w, bar_h = card_w - 2 * margin, font_px
    tissue = np.asarray(grey_tissue, np.uint8).reshape(1, 1, 3)
    lut = colormap_lut(DEFAULT_COLORMAP)[
        np.linspace(0, 255, bar_w).round().astype(np.intp)
    ]
    bar = blend(
        np.repeat(np.repeat(tissue, bar_h, 0), bar_w, 1),
        round(opacity * 256),
        lut[None],
    )
    card.paste(Image.fromarray(np.ascontiguousarray(bar)), (margin, y))
    draw.rectangle([margin - 1, y - 1, margin + bar_w, y + bar_h], outline=_EDGE_RGB)
    y += bar_h + 2
    for t in (0.0, 0.5, 1.0):
        tx = margin + t * (bar_w - 1)
        draw.line([(tx, y), (tx, y + 3)], fill=_TEXT_RGB)
        draw.text((tx, y + 3), f"{t:g}", fill=_TEXT_RGB, font=font, anchor="ma")
    y += line_h + 2
    swatches = [(tissue, UNCLASSIFIED_TEXT)]
    if screened:
        *veil, alpha = SCREENED_RGBA
        swatches.insert(
            0,
            (
                blend(
                    tissue,
                    round(alpha * 256 / 255),
                    np.asarray(veil, np.uint8)[None, None],
                ),
                SCREENED_TEXT,
            ),
        )
    for rgb, text in swatches:
        draw.rectangle(
            [margin, y, margin + font_px * 2, y + font_px],
            fill=tuple(int(v) for v in rgb[0, 0]),
            outline=_EDGE_RGB,
        )
        draw.text(
            (margin + font_px * 2 + font_px // 2, y + font_px // 2),
            text,
            fill=_TEXT_RGB,
            font=font,
            anchor="lm",
        )
        y += line_h
    picture[y0:y1, x0:x1] = np.asarray(card)
