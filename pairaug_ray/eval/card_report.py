"""The generator report card as files: generator_report.json, per-image CSVs (edits, nearest
training images), the figures as PNGs and one self-contained HTML page (figures inlined)."""

from __future__ import annotations

import html
import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pairaug_ray import images, storage
from pairaug_ray.eval.report import STYLE, _img, _png, roc_figure

REPORT_FILE, HTML_FILE = "generator_report.json", "generator_report.html"
NO_FINDING = "No Finding"
WEAK_IDENTITY = 0.4  # a re-identification error rate at which the identity figures say little
_PER_ROW = 4


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def headline(report: dict[str, Any]) -> str:
    f = report["findings_shown"]
    fid = report["fidelity"]
    parts = [
        f"findings shown: mean AUC {_fmt(f['generated']['mean'])} (real {_fmt(f['real']['mean'])}"
        + (f", drawn for rewrites {_fmt(f['drawn']['mean'])})" if "drawn" in f else ")"),
        f"FD {fid['frechet_distance']:.3g} = {fid['ratio']:.2f}x the real floor",
    ]
    if "edits" in report:
        ed = report["edits"]
        parts.append(f"edits passed {ed['passed_rate']:.0%}, same patient {ed['same_patient_rate']:.0%}")
    sets = report["memorization"]["sets"]
    if sets:
        name, s = next(iter(sets.items()))
        parts.append(f"near-duplicates {s['near_duplicate_rate']:.0%} ({name})")
    return "; ".join(parts)


def by_finding(
    findings: Sequence[str],
    *,
    real_uris: Sequence[str],
    real_labels: np.ndarray,
    generated_uris: Sequence[str],
    generated_labels: np.ndarray,
) -> list[dict[str, Any]]:
    """Per finding (and no finding), a few real held-out images that show it and a few images drawn
    from reports that state it: the grid a person reads the card from."""
    rows = []
    for j, f in enumerate([*findings, NO_FINDING]):

        def pick(uris: Sequence[str], labels: np.ndarray, j: int = j) -> list[str]:
            hit = labels[:, j] == 1 if j < labels.shape[1] else np.nansum(labels == 1, axis=1) == 0
            return [uris[i] for i in np.flatnonzero(hit)[:_PER_ROW]]

        rows.append(
            {
                "finding": f,
                "real": pick(real_uris, real_labels),
                "generated": pick(generated_uris, generated_labels),
            }
        )
    return rows


def _read(uri: str) -> np.ndarray:
    try:
        return images.to_uint8(images.read_image(uri))
    except images.ImageReadError:
        return np.zeros((8, 8), np.uint8)


def findings_grid(rows: list[dict[str, Any]]) -> bytes:
    import matplotlib.pyplot as plt

    cols = 2 * _PER_ROW
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.4 * cols, 1.5 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.axis("off")
            side, k = ("real", c) if c < _PER_ROW else ("generated", c - _PER_ROW)
            if k < len(row[side]):
                ax.imshow(_read(row[side][k]), cmap="gray", vmin=0, vmax=255)
            if r == 0 and k == 0:
                ax.set_title(f"{side} ->", fontsize=8, loc="left")
        axes[r, 0].text(
            -0.1, 0.5, row["finding"], transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=8
        )
    fig.suptitle("real held-out images with the finding | images drawn from reports stating it", fontsize=9)
    fig.tight_layout()
    return _png(fig)


# The findings-shown sets: drawn from held-out real reports, real held-out images, and the images
# the augment job drew for its rewritten reports (when the card was given them).
FINDING_SETS = (("generated", "#d62728"), ("real", "#1f77b4"), ("drawn", "#ff7f0e"))
SET_NAMES = {"generated": "generated", "real": "real held-out", "drawn": "drawn for rewrites"}


def auc_figure(report: dict[str, Any]) -> bytes:
    import matplotlib.pyplot as plt

    f = report["findings_shown"]
    names = report["findings"]
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2, 3))
    sets = [(k, c) for k, c in FINDING_SETS if k in f]
    width = 0.8 / len(sets)
    for k, (key, colour) in enumerate(sets):
        vals = [f[key]["per_finding"][n] or np.nan for n in names]
        label = f"{SET_NAMES[key]} (mean {_fmt(f[key]['mean'], '.2f')})"
        ax.bar(x + (k - (len(sets) - 1) / 2) * width, vals, width, color=colour, label=label)
    ax.axhline(0.5, ls=":", c="grey", lw=0.8)
    ax.set_xticks(x, names, fontsize=8, rotation=15)
    ax.set_ylim(0, 1)
    ax.set_ylabel("AUC")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("findings shown: the real-trained classifier on each set", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def pairs_figure(pairs: list[tuple[str, str, str]], title: str) -> bytes:
    """Pairs of images side by side with a caption each (edits; nearest training images)."""
    import matplotlib.pyplot as plt

    n = max(1, len(pairs))
    fig, axes = plt.subplots(2, n, figsize=(1.9 * n, 4.2), squeeze=False)
    for i in range(n):
        for r in range(2):
            axes[r, i].axis("off")
        if i < len(pairs):
            a, b, caption = pairs[i]
            axes[0, i].imshow(_read(a), cmap="gray", vmin=0, vmax=255)
            axes[1, i].imshow(_read(b), cmap="gray", vmin=0, vmax=255)
            axes[1, i].set_title(caption, fontsize=6, y=-0.32, wrap=True)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)


def similarity_figure(similarities: dict[str, np.ndarray], thresholds: tuple[float, float]) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    for name, sims in similarities.items():
        ax.hist(np.asarray(sims), bins=30, alpha=0.5, density=True, label=name)
    ax.axvline(thresholds[0], c="k", ls="--", lw=1, label="near-duplicate threshold")
    ax.axvline(thresholds[1], c="grey", ls=":", lw=1, label="re-identification threshold")
    ax.set_xlabel("cosine similarity to the nearest training image")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def figures(report: dict[str, Any], gallery: dict[str, Any]) -> dict[str, bytes]:
    out = {
        "findings-grid": findings_grid(gallery["by_finding"]),
        "findings-auc": auc_figure(report),
        "findings-roc": roc_figure(
            "the real-trained classifier",
            report["findings"],
            {name: (y, s) for name, (s, y) in gallery["rocs"].items()},
        ),
    }
    if gallery.get("edits"):
        out["edits"] = pairs_figure(
            [
                (
                    r["source_uri"],
                    r["edit_uri"],
                    f"{_change_text(r['change'])} {'pass' if r['passed'] else 'fail'}",
                )
                for r in gallery["edits"]
            ],
            "IntraAug edits: source (top) and edit (bottom)",
        )
    mem = gallery["memorization"]
    out["memorization"] = similarity_figure(mem["similarities"], mem["thresholds"])
    if mem["closest"]:
        out["nearest"] = pairs_figure(
            [
                (r["image_uri"], r["nearest_uri"], f"cos {r['cosine']:.3f}, px {r['pixel_distance']:.3f}")
                for r in mem["closest"]
            ],
            "the generated images closest to a training image (top) and that image (bottom)",
        )
    return out


def _change_text(change: str | dict) -> str:
    c = json.loads(change) if isinstance(change, str) else change
    return ", ".join(f"{'+' if v > 0 else '-'}{k}" for k, v in c.items())


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table class='cmp'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def interval_text(s: dict[str, Any]) -> str:
    iv = s.get("interval")
    return f"{_fmt(s['mean'])} [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else _fmt(s["mean"])


def render_html(report: dict[str, Any], figs: dict[str, bytes]) -> str:
    f, fid, ident, mem = (
        report["findings_shown"],
        report["fidelity"],
        report["identity"],
        report["memorization"],
    )
    parts = [
        f"<p>Generator <code>{html.escape(str(report['generator']))}</code>, encoder "
        f"<code>{html.escape(report['encoder']['kind'])}</code> ({html.escape(report['encoder']['path'])}), "
        f"real pairs <code>{html.escape(report['real'])}</code>.</p>",
        _img(
            "findings-grid",
            figs["findings-grid"],
            "real held-out images with each finding, and images drawn from reports stating it",
        ),
        "<h2>Findings shown</h2>",
        f"<p>{html.escape(f['classifier'])}; AUC of its scores against the labels of the report each "
        "image was drawn from, beside the same classifier on real held-out images (mean over findings, 95% bootstrap interval).</p>",
        _table(
            ["set", "mean AUC [95% CI]", *report["findings"]],
            [
                [name, interval_text(f[key]), *(_fmt(f[key]["per_finding"][n]) for n in report["findings"])]
                for key, name in SET_NAMES.items()
                if key in f
            ],
        ),
        _img("findings-auc", figs["findings-auc"], "per-finding AUC"),
        _img("findings-roc", figs["findings-roc"], "ROC curves"),
        "<h2>Fidelity</h2>",
        "<p>Fréchet distance on encoder features: images drawn from half B of the held-out reports "
        "against the real images of half A, beside B's real images against A (the floor), at equal sizes, over "
        f"{len(fid['splits'])} random halvings.</p>",
        _table(
            ["Fréchet distance", "real-vs-real floor", "ratio (range)", "all generated vs all real"],
            [
                [
                    f"{fid['frechet_distance']:.4g}",
                    f"{fid['floor']:.4g}",
                    f"{fid['ratio']:.2f} ({fid['ratio_range'][0]:.2f}-{fid['ratio_range'][1]:.2f})",
                    f"{fid['all_generated_vs_all_real']:.4g}",
                ]
            ],
        ),
        "<h2>Patient identity</h2>",
        f"<p>{html.escape(ident['verifier'])}: threshold {ident['threshold']:.4f}, equal error rate "
        f"{ident['equal_error_rate_train']:.1%} on training images, same-vs-other AUC on held-out real "
        f"images {_fmt(ident['auc_held_out'])}. Searching all training images (re-identification): "
        f"threshold {ident['identification_threshold']:.4f}, equal error rate "
        f"{ident['identification_error_rate_train']:.1%}.</p>",
        *(
            [
                f"<p><b>This encoder carries little identity</b> (re-identification error rate "
                f"{ident['identification_error_rate_train']:.0%} on training images): the re-identification "
                "rates below say little; use an encoder trained to tell patients apart.</p>"
            ]
            if ident["identification_error_rate_train"] >= WEAK_IDENTITY
            else []
        ),
    ]
    if "edits" in report:
        ed = report["edits"]
        parts += [
            "<h2>IntraAug edits</h2>",
            f"<p>{ed['n']} held-out studies edited by prompt-to-prompt toward a rules rewrite that changes "
            f"graded findings (source: {html.escape(ed['source'])}); a changed finding's score must move the "
            f"stated way by more than {ed['margin']}, the others stay within it.</p>",
            _table(
                ["", "n", "changed findings moved", "unchanged stayed", "both", "same patient (verifier)"],
                [
                    [
                        name,
                        r["n"],
                        f"{r['changed_moved_rate']:.0%}",
                        f"{r['kept_stayed_rate']:.0%}",
                        f"{r['passed_rate']:.0%}",
                        f"{r['same_patient_rate']:.0%}",
                    ]
                    for name, r in (
                        ("edits", ed),
                        ("real follow-up studies (reference)", ed.get("real_followups")),
                    )
                    if r
                ],
            ),
        ]
        if "edits" in figs:
            parts.append(_img("edits", figs["edits"], "edits"))
    rows = [
        [
            name,
            s["n"],
            f"{s['near_duplicate_rate']:.1%}",
            f"{s['reidentified_rate']:.1%}",
            _fmt(s.get("reidentified_as_report_patient_rate"), ".1%"),
            f"{s['nearest_similarity_mean']:.3f}",
        ]
        for name, s in [
            *mem["sets"].items(),
            ("real held-out images (reference)", mem["real held-out images"]),
        ]
    ]
    parts += [
        "<h2>Memorisation</h2>",
        f"<p>Each image's nearest training image by encoder cosine. Near-duplicate: closer than "
        f"{mem['near_duplicate_threshold']:.4f}, which real images of other patients exceed "
        f"{1 - mem['quantile']:.0%} of the time. Re-identified: closer than "
        f"{mem['reidentification_threshold']:.4f}, the threshold at which, searching all training images, "
        "a real image's best match among its own patient's other studies and its best match among "
        "other patients are told apart with equal error.</p>",
        _table(
            [
                "images",
                "n",
                "near-duplicates",
                "re-identified",
                "as the report's own patient",
                "mean nearest cosine",
            ],
            rows,
        ),
        _img("memorization", figs["memorization"], "nearest-training similarity"),
    ]
    if "nearest" in figs:
        parts.append(
            _img("nearest", figs["nearest"], "closest generated images and their nearest training image")
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>generator report card</title>"
        f"<style>{STYLE}</style></head><body><h1>Generator report card</h1>{''.join(parts)}</body></html>"
    )


def write(
    out_dir: str, report: dict[str, Any], tables: dict[str, list[dict]], gallery: dict[str, Any]
) -> dict[str, str]:
    figs = figures(report, gallery)
    paths = {
        "json": storage.join(out_dir, REPORT_FILE),
        "html": storage.join(out_dir, HTML_FILE),
    }
    for name, data in figs.items():
        paths[name] = storage.join(out_dir, "figures", f"{name}.png")
        storage.write_bytes(paths[name], data)
    for name, rows in tables.items():
        paths[name] = storage.join(out_dir, f"{name}.csv")
        buf = io.StringIO()
        pd.DataFrame(rows).to_csv(buf, index=False)
        storage.write_text(paths[name], buf.getvalue())
    storage.write_text(paths["html"], render_html(report, figs))
    storage.write_json(paths["json"], {**report, "paths": paths})
    return paths
