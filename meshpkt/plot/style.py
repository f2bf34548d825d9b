"""Shared look of meshpkt's figures: the Okabe-Ito palette, font sizes, text measurement.

Text is measured with matplotlib's own font machinery (``TextToPath``), so layouts are computed
in inches before anything is drawn and no label has to be nudged afterwards.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision deficiency.
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
}

#: Colour cycle for categorical series (backends, networks), most distinct first.
CYCLE: tuple[str, ...] = (OKABE_ITO["blue"], OKABE_ITO["orange"], OKABE_ITO["green"], OKABE_ITO["purple"],
                          OKABE_ITO["sky"], OKABE_ITO["vermillion"], OKABE_ITO["yellow"], OKABE_ITO["black"])
#: Marker shapes paired with CYCLE, so a series is told apart without colour too.
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Hatches paired with CYCLE for bars.
HATCHES: tuple[str, ...] = ("", "//", "..", "xx", "\\\\", "oo", "--", "++")

#: Light fills for node boxes/lanes (client first, then nodes in order).
NODE_FILLS: tuple[str, ...] = ("#D6EBF7", "#FBF6C4", "#CCEBE3", "#F4DDE9", "#FAE7C2", "#E0E0E0")
CLIENT_FILL = "#EEEEEE"

#: Hinted raster text (Agg) renders up to ~6% wider than the outline measurement at 100 dpi (~12% at
#: 72 dpi); layouts reserve this much so labels never touch in PNGs either.
RASTER_SLACK = 1.13

FONT = "DejaVu Sans"  # matplotlib's bundled font: present everywhere, so measurements hold
SIZE_TITLE = 11.0
SIZE_TEXT = 8.5
SIZE_SMALL = 8.0


@lru_cache(maxsize=4096)
def text_size(text: str, size: float, weight: str = "normal", style: str = "normal") -> tuple[float, float]:
    """Width and height in inches of ``text`` (may hold newlines) at ``size`` points."""
    from matplotlib.font_manager import FontProperties

    prop = FontProperties(family=FONT, size=size, weight=weight, style=style)  # type: ignore[arg-type]
    t2p = _t2p()
    width = 0.0
    lines = text.split("\n")
    for line in lines:
        if line:
            w, _, _ = t2p.get_text_width_height_descent(line, prop, ismath=False)
            width = max(width, w)
    return width * RASTER_SLACK / 72.0, line_height(size) * len(lines)


@lru_cache(maxsize=1)
def _t2p() -> Any:
    from matplotlib.textpath import TextToPath

    return TextToPath()


def line_height(size: float) -> float:
    """Inches one line of text takes at ``size`` points (matplotlib's default linespacing 1.2)."""
    return size * 1.2 / 72.0


def new_figure(width_in: float, height_in: float, *, layout: str | None = None) -> Figure:
    """A Figure not attached to pyplot (object API, Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=100, layout=layout)  # type: ignore[arg-type]
    FigureCanvasAgg(fig)
    return fig


def inch_axes(fig: Figure) -> Any:
    """An axes covering the whole figure whose data units are inches, y growing downwards."""
    w, h = fig.get_size_inches()
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    return ax

