"""One figure style for the whole book, so every chapter's plots look alike."""

from __future__ import annotations

import matplotlib.pyplot as plt

__all__ = ["use_book_style", "COLORS"]

# Colour-blind-safe palette (Okabe–Ito), in the order chapters use for compared methods.
COLORS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


def use_book_style() -> None:
    """Apply the book's matplotlib style: readable sizes, light grid, the shared palette."""
    plt.rcParams.update(
        {
            "figure.figsize": (6.4, 3.8),
            "figure.dpi": 110,
            "savefig.dpi": 110,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "legend.fontsize": 9,
            "legend.frameon": False,
            "axes.prop_cycle": plt.cycler(color=COLORS),
        }
    )
