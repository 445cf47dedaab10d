"""The evaluation report: metrics as a self-contained HTML page (figures inlined as data URIs) plus the
figures as PNG files. ROC curves per label, the comparison table in the paper's form, a t-SNE map of
image and report embeddings coloured by origin (the paper's Figure 3), image grids of pairs."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402

from pairaug_ray import schema, storage  # noqa: E402

ORIGIN_COLOURS = {
    schema.ORIGIN_REAL: "#1f77b4",
    schema.ORIGIN_INTER: "#d62728",
    schema.ORIGIN_INTRA: "#2ca02c",
    schema.ORIGIN_AUGTEXT: "#9467bd",
    schema.ORIGIN_AS_WRITTEN: "#ff7f0e",
}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def roc_figure(dataset: str, labels: list[str], per_model: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """One panel per label, one curve per model row."""
    cols = min(5, len(labels))
    rows = -(-len(labels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.ravel()[len(labels) :]:
        ax.axis("off")
    for j, label in enumerate(labels):
        ax = axes.ravel()[j]
        for model, (y, p) in per_model.items():
            ok = ~np.isnan(y[:, j])
            if len(np.unique(y[ok, j])) < 2:
                continue
            fpr, tpr, _ = roc_curve(y[ok, j], p[ok, j])
            ax.plot(fpr, tpr, lw=1.4, label=model)
        ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("false positive rate", fontsize=8)
        ax.set_ylabel("true positive rate", fontsize=8)
        ax.tick_params(labelsize=7)
    handles = {
        h.get_label(): h for ax in axes.ravel() for h in ax.get_lines() if not h.get_label().startswith("_")
    }
    if handles:
        fig.legend(list(handles.values()), list(handles), fontsize=7, loc="lower right")
    fig.suptitle(f"ROC curves: {dataset}", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def tsne_figure(image_emb: np.ndarray, text_emb: np.ndarray, origins: list[str], seed: int = 0) -> bytes:
    from sklearn.manifold import TSNE

    both = np.concatenate([image_emb, text_emb])
    perplexity = max(2.0, min(30.0, (len(both) - 1) / 3))
    xy = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(both)
    n = len(image_emb)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for origin in dict.fromkeys(origins):
        idx = np.array([o == origin for o in origins])
        colour = ORIGIN_COLOURS.get(origin, "black")
        ax.scatter(*xy[:n][idx].T, s=14, c=colour, marker="o", alpha=0.75, label=f"{origin} image")
        ax.scatter(*xy[n:][idx].T, s=18, c=colour, marker="x", alpha=0.75, label=f"{origin} report")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("t-SNE of image (o) and report (x) embeddings by origin", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return _png(fig)


def _ci(c: dict[str, Any] | None) -> str:
    if not c or c.get("mean") is None:
        return f"n/a<br><small>{html.escape(c.get('undefined', '')) if c else ''}</small>"
    if c.get("lower") is None or c.get("upper") is None:
        return f"{c['mean']:.4f}<br><small>(no interval: {html.escape(c.get('undefined', ''))})</small>"
    return f"{c['mean']:.4f}<br><small>({c['lower']:.4f}&ndash;{c['upper']:.4f})</small>"


def comparison_table_html(results: dict[str, Any]) -> str:
    """Rows: models; columns: AUC, ACC, F1 (95% CI) per dataset, as the paper's tables are laid out."""
    datasets = list(results["datasets"])
    models = list(dict.fromkeys(m for ds in results["datasets"].values() for m in ds["models"]))
    head = "".join(f'<th colspan="3">{html.escape(d)}</th>' for d in datasets)
    sub = "<th>AUC</th><th>ACC</th><th>F1</th>" * len(datasets)
    body = []
    for model in models:
        cells = []
        for d in datasets:
            m = results["datasets"][d]["models"].get(model)
            cells += [_ci(m["macro"][k]) if m else "&ndash;" for k in ("auc", "acc", "f1")]
        body.append(f"<tr><th>{html.escape(model)}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        f'<table class="cmp"><thead><tr><th rowspan="2">model</th>{head}</tr><tr>{sub}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def per_label_html(dataset: str, ds: dict[str, Any]) -> str:
    parts = []
    for model, m in ds["models"].items():
        rows = "".join(
            f"<tr><td>{html.escape(lb)}</td><td>{_ci(v['auc'])}</td><td>{_ci(v['acc'])}</td><td>{_ci(v['f1'])}</td>"
            f"<td>{v['threshold']:.4f}</td><td>{v['positives']}/{v['negatives']}</td></tr>"
            for lb, v in m["per_label"].items()
        )
        parts.append(
            f"<h4>{html.escape(model)} <small>({m['threshold_rule']} threshold, {m['n_bootstrap']} resamples)</small></h4>"
            "<table><thead><tr><th>label</th><th>AUC</th><th>ACC</th><th>F1</th><th>threshold</th>"
            f"<th>pos/neg</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return "".join(parts)


def _img(name: str, data: bytes, alt: str) -> str:
    b64 = base64.b64encode(data).decode()
    return f'<figure><img alt="{html.escape(alt)}" data-name="{name}" src="data:image/png;base64,{b64}"><figcaption>{html.escape(alt)}</figcaption></figure>'


STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:center}
table.cmp th{background:#f3f3f3}figure{margin:1em 0}img{max-width:100%}small{color:#666}"""


def render_html(results: dict[str, Any], figures: dict[str, bytes], probe_html: str = "") -> str:
    sections = [
        "<h2>Zero-shot classification</h2>",
        "<p>CheXzero's protocol: positive and negative prompts, softmax over the two raw cosines, "
        "macro averages with 95% bootstrap intervals (mean of 1,000 resamples; 25th and 975th sorted values).</p>",
        comparison_table_html(results),
    ]
    for d, ds in results["datasets"].items():
        sections.append(f"<h3>{html.escape(d)} <small>({ds['info']['images']} images)</small></h3>")
        sections.append(per_label_html(d, ds))
        if f"roc-{d}" in figures:
            sections.append(_img(f"roc-{d}", figures[f"roc-{d}"], f"ROC curves on {d}"))
    sections.append(probe_html)
    if "tsne" in figures:
        sections += [
            "<h2>Embedding map</h2>",
            _img("tsne", figures["tsne"], "t-SNE of image and report embeddings by origin"),
        ]
    grids = [k for k in figures if k.startswith("pairs-")]
    if grids:
        sections.append("<h2>Pairs</h2>")
        sections += [_img(k, figures[k], f"{k.removeprefix('pairs-')} pairs") for k in grids]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>pairaug-ray evaluation</title>"
        f"<style>{STYLE}</style></head><body><h1>pairaug-ray evaluation</h1>{''.join(sections)}</body></html>"
    )


def probe_table_html(probe: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{float(f):.0%}</td><td>{r['train_rows']}</td><td>{_ci(r['macro']['auc'])}</td>"
        f"<td>{_ci(r['macro']['acc'])}</td><td>{_ci(r['macro']['f1'])}</td></tr>"
        for f, r in probe["fractions"].items()
    )
    return (
        f"<h2>Linear probing</h2><p>{html.escape(probe['model'])} on {html.escape(probe['dataset'])}, frozen "
        f"image encoder, split {probe['split']}.</p><table><thead><tr><th>train fraction</th><th>rows</th>"
        f"<th>AUC</th><th>ACC</th><th>F1</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def write(out_dir: str, results: dict[str, Any], figures: dict[str, bytes]) -> dict[str, str]:
    paths = {}
    for name, data in figures.items():
        paths[name] = storage.join(out_dir, "figures", f"{name}.png")
        storage.write_bytes(paths[name], data)
    probe = probe_table_html(results["linear_probe"]) if "linear_probe" in results else ""
    paths["report"] = storage.join(out_dir, "report.html")
    storage.write_text(paths["report"], render_html(results, figures, probe))
    return paths


def pair_grid_png(rows: pd.DataFrame) -> bytes:
    import tempfile

    from pairaug_ray.viz import pair_grid

    with tempfile.TemporaryDirectory() as tmp:
        out = pair_grid(rows.to_dict("records"), f"{tmp}/grid.png")
        return storage.read_bytes(out)
