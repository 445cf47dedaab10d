"""Pictures of pair datasets: image grids with their reports and labels."""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from typing import Any

import matplotlib
import numpy as np

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
    return _save(fig, out_uri)


def _save(fig, out_uri: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    storage.write_bytes(out_uri, buf.getvalue())
    return out_uri


def score_histograms(
    scores: dict[str, list[float]], thresholds: dict[str, float | None], out_uri: str
) -> str:
    """One histogram per score (InterAug S_a; IntraAug S1, S2, S3) with its pruning threshold marked."""
    titles = {
        schema.SCORE_A: "InterAug S_a(image, report)",
        schema.SCORE_S1: "IntraAug S1: new image vs new report",
        schema.SCORE_S2: "IntraAug S2: image change vs report change",
        schema.SCORE_S3: "IntraAug S3: new image vs original image",
    }
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    for ax, key in zip(axes, titles, strict=True):
        raw = scores.get(key, [])
        values = np.asarray([v for v in raw if v is not None] if isinstance(raw, list) else raw, dtype=float)
        if len(values):
            ax.hist(values, bins=30, color="#4c72b0", alpha=0.85)
        else:
            ax.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax.transAxes)
        t = thresholds.get(key)
        if t is not None:
            ax.axvline(t, color="#c44e52", linestyle="--", label=f"threshold {t:.3f}")
            ax.legend(fontsize=7, loc="upper left")
        kept = int((values > t).sum()) if t is not None else len(values)
        ax.set_title(f"{titles[key]}\nkept {kept} of {len(values)}", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _save(fig, out_uri)


def example_grid(examples: Sequence[dict[str, Any]], out_uri: str, text_width: int = 42) -> str:
    """Rows of (original pair | as written | InterAug pair | IntraAug pair), each image with its report
    and scores; the as-written column only when an example has one. An original without an image
    (a report of a report-only corpus) shows its report alone."""
    if not examples:
        raise ValueError("no examples to draw")
    cols = (
        "original",
        *(
            k
            for k in ("as_written", "inter", "intra")
            if k != "as_written" or any(ex.get(k) for ex in examples)
        ),
    )
    fig, axes = plt.subplots(
        len(examples), len(cols), figsize=(11 * len(cols) / 3, 4.9 * len(examples)), squeeze=False
    )
    # The reports hang below each image, outside the axes, where tight_layout does not look: leave
    # them room explicitly so they do not run into the next row's titles.
    fig.subplots_adjust(
        left=0.02,
        right=0.98,
        top=1 - 0.35 / (4.9 * len(examples)),
        bottom=0.9 / (4.9 * len(examples)),
        hspace=0.42,
        wspace=0.06,
    )
    for r, ex in enumerate(examples):
        for c, key in enumerate(cols):
            ax = axes[r][c]
            ax.axis("off")
            row = ex.get(key)
            if row is None:
                ax.text(0.5, 0.5, f"no {key} pair", ha="center", va="center", transform=ax.transAxes)
                continue
            try:
                if row.get(schema.IMAGE_URI) is None:
                    ax.text(
                        0.5, 0.5, "report only: no image", ha="center", va="center", transform=ax.transAxes
                    )
                else:
                    ax.imshow(
                        images.to_uint8(images.read_image(row[schema.IMAGE_URI])),
                        cmap="gray",
                        vmin=0,
                        vmax=255,
                    )
            except images.ImageReadError as e:
                ax.text(
                    0.5, 0.5, textwrap.fill(str(e), 30), ha="center", va="center", fontsize=7, color="red"
                )
            title = {
                "original": "original (real)",
                "as_written": "as written",
                "inter": "InterAug",
                "intra": "IntraAug",
            }[key]
            if key in ("inter", "as_written") and row.get(schema.SCORE_A) is not None:
                title += f"  S_a={row[schema.SCORE_A]:.3f}"
            if key == "intra" and row.get(schema.SCORE_S1) is not None:
                title += (
                    f"  S={row[schema.SCORE_S1]:.2f}/{row[schema.SCORE_S2]:.2f}/{row[schema.SCORE_S3]:.2f}"
                )
            if row.get(schema.KEPT) is not None and key != "original":
                title += "  kept" if row[schema.KEPT] else "  pruned"
            ax.set_title(title, fontsize=8)
            report = textwrap.shorten(row.get(schema.REPORT) or "", 260, placeholder=" ...")
            ax.text(
                0.0,
                -0.03,
                textwrap.fill(report, text_width),
                transform=ax.transAxes,
                va="top",
                fontsize=6.5,
                family="monospace",
            )
    return _save(fig, out_uri)
