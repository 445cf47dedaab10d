"""Pictures of pair datasets: image grids with their reports and labels."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: workers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402

from pairaug_ray import images, schema, storage  # noqa: E402


def _positives(row: dict[str, Any]) -> str:
    pos = [
        o for o, c in zip(schema.CHEXPERT_OBSERVATIONS, schema.LABEL_COLUMNS, strict=True) if row.get(c) == 1
    ]
    unc = [
        o for o, c in zip(schema.CHEXPERT_OBSERVATIONS, schema.LABEL_COLUMNS, strict=True) if row.get(c) == -1
    ]
    return ", ".join(pos + [f"{o}?" for o in unc]) or "-"


def pair_grid(rows: Sequence[dict[str, Any]], out_uri: str, *, columns: int = 4, text_width: int = 38) -> str:
    """Save a grid of pairs (image, positive labels, start of the report) as a PNG at `out_uri`."""
    if not rows:
        raise ValueError("no rows to draw")
    n_rows = -(-len(rows) // columns)
    fig, axes = plt.subplots(n_rows, columns, figsize=(3.2 * columns, 4.6 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, row in zip(axes.ravel(), rows, strict=False):
        try:
            ax.imshow(
                images.to_uint8(images.read_image(row[schema.IMAGE_URI])), cmap="gray", vmin=0, vmax=255
            )
        except images.ImageReadError as e:
            ax.text(0.5, 0.5, textwrap.fill(str(e), 30), ha="center", va="center", fontsize=7, color="red")
        title = f"{row.get(schema.STUDY_ID) or row[schema.PAIR_ID][:10]} [{row.get(schema.ORIGIN)}]"
        report = textwrap.shorten(
            row.get(schema.REPORT) or f"({row.get(schema.ERROR)})", 200, placeholder=" ..."
        )
        ax.set_title(title, fontsize=8)
        caption = textwrap.fill(_positives(row), text_width) + "\n\n" + textwrap.fill(report, text_width)
        ax.text(0.0, -0.03, caption, transform=ax.transAxes, va="top", fontsize=6.5, family="monospace")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    storage.write_bytes(out_uri, buf.getvalue())
    return out_uri
