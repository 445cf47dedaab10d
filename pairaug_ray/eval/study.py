"""The PairAug study's arms and its statistics (no Ray): what each arm trains on, the comparisons
with the baseline arm, the table in the paper's form, and the plot.

An arm is one way to pretrain the CLIP (real pairs only, or real plus one kind of synthetic pair,
with or without MedCutMix); each is trained with every study seed and evaluated on the same test
images. The study's question is the difference of each arm to the baseline arm. Its point estimate
is the observed difference (the seeds' mean AUCs on the whole test set); its interval treats the
training seed with a t distribution (seed k of each arm is paired where both have it) and adds the
test set's variance from a paired bootstrap of the images (eval.metrics.seed_t_difference), so it
holds with few seeds. A difference is a gain when its 95% interval excludes 0; Holm's adjustment
over the arms says which calls survive the number of arms compared. With one seed per arm the
paired test bootstrap alone is used (eval.metrics.pooled_auc_difference), and says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pairaug_ray.eval.metrics import holm, pooled_auc, pooled_auc_difference, seed_t_difference

# Which synthetic set an arm's synthetic pairs come from (pipeline/study.py makes each):
#   pruned      the augment job's kept pairs (tau for InterAug, the hybrid rule for IntraAug)
#   unpruned    the same pairs, every one that was drawn and scored without error
#   real-source IntraAug edits of the real image (DDIM inversion), pruned by the hybrid rule
#   elsewhere   report-rich: the report-only rows drawn as written by a generator trained on another
#               phantom world (study.elsewhere_*), scored and pruned as the others
SyntheticSet = Literal["pruned", "unpruned", "real-source", "elsewhere"]


@dataclass(frozen=True)
class Arm:
    label: str  # the table's row name, in the paper's form
    origins: tuple[str, ...] = ()  # synthetic origins that join the real pairs
    synthetic: SyntheticSet = "pruned"
    medcutmix: bool = False
    low_data: bool = False  # image-rich: trains on study.low_data_fraction of the real training patients
    real_all: bool = False  # report-rich: every training patient's image (the ceiling)
    text: str | None = None  # train.text for the real pairs (None: the study's)
    sources: tuple[str, ...] = ("pair", "report")  # which rows the synthetic pairs were made from


ARMS: dict[str, Arm] = {
    "real-low": Arm("Real only, low-data", low_data=True),
    "real": Arm("Real only"),
    "augtext": Arm("+ AugText", ("augtext",)),
    "inter": Arm("+ InterAug (pruned: tau)", ("inter",)),
    "intra": Arm("+ IntraAug (pruned: hybrid)", ("intra",)),
    "intra-real": Arm("+ IntraAug from the real image", ("intra",), synthetic="real-source"),
    "pairaug": Arm("+ PairAug (Inter + Intra)", ("inter", "intra")),
    "pairaug-unpruned": Arm("+ PairAug, unpruned", ("inter", "intra"), synthetic="unpruned"),
    "pairaug-medcutmix": Arm("+ PairAug + MedCutMix", ("inter", "intra"), medcutmix=True),
    "real-medcutmix": Arm("Real only + MedCutMix", medcutmix=True),
    # The text-only control: the real pairs with the denial sentences a rewrite adds, no new image.
    "text-control": Arm("Real + denial sentences (text-only control)", text="impression+denials"),
    # report-rich (study.regime): the real pairs are the image part; the other patients have reports.
    "real-all": Arm("Real only, every patient's image (ceiling)", real_all=True),
    "reports-as-written": Arm(
        "+ other patients' reports, drawn as written", ("as_written",), sources=("report",)
    ),
    "reports-rewritten": Arm(
        "+ other patients' reports, rewritten and drawn", ("inter",), sources=("report",)
    ),
    # InterAug over every report of the corpus: as written (report -> pair) and rewritten.
    "reports-pairaug": Arm("+ every report drawn as written and rewritten", ("as_written", "inter")),
    "reports-elsewhere": Arm(
        "+ reports drawn as written, generator trained elsewhere",
        ("as_written",),
        synthetic="elsewhere",
        sources=("report",),
    ),
}


def arm_label(name: str, low_data_fraction: float, regime: str = "image-rich") -> str:
    arm = ARMS[name]
    if arm.low_data:
        return (
            "Real only, the image part"
            if regime == "report-rich"
            else f"Real only ({low_data_fraction:.0%} of patients)"
        )
    return arm.label


def compare_arms(
    y: np.ndarray,
    scores: Mapping[str, Sequence[np.ndarray]],
    labels: list[str],
    baseline: str,
    n_bootstrap: int,
    ceiling: str | None = None,
) -> dict[str, Any]:
    """For every arm: its AUC pooled over seeds, and its difference to `baseline` (see the module's
    docstring), with Holm's adjusted p over the arms.
    scores: arm -> one (n, L) score matrix per training seed, rows aligned with y (seed k at k)."""
    out = {}
    for name, runs in scores.items():
        entry: dict[str, Any] = {"pooled": pooled_auc(y, runs, labels, n_bootstrap)}
        if name != baseline:
            # Seed k of both arms shares its initial weights and data order: compare on the seeds
            # both have (study.seeds_per_arm gives some arms the first n only), paired.
            n = min(len(runs), len(scores[baseline]))
            base, runs = scores[baseline][:n], runs[:n]
            entry["seeds_compared"] = n
            if n >= 2:
                entry["difference"] = seed_t_difference(y, base, runs, labels, n_bootstrap)
            else:
                entry["difference"] = {
                    **pooled_auc_difference(y, base, runs, labels, n_bootstrap),
                    "method": "paired test bootstrap (one seed: the seed's variance is not in the interval)",
                }
        out[name] = entry
    adjusted = holm({n: e["difference"]["macro"].get("p") for n, e in out.items() if "difference" in e})
    for name, adj in adjusted.items():
        out[name]["difference"]["holm"] = adj
    if ceiling is not None and ceiling != baseline:
        gap = out[ceiling]["difference"]["macro"]
        for name, e in out.items():
            if name not in (baseline, ceiling) and "difference" in e:
                e["gap_share"] = gap_share(e["difference"]["macro"], gap)
    return out


def gap_share(difference: Mapping[str, Any], gap: Mapping[str, Any]) -> dict[str, Any]:
    """The share of the baseline -> ceiling gap an arm's difference recovers: its observed difference
    over the gap's, and its interval's ends over the observed gap (the gap's own uncertainty is left
    out; it is given beside, and the share means little when the gap's interval holds 0)."""
    g = gap.get("observed")
    if not g or g <= 0 or difference.get("observed") is None:
        return {"observed": None, "lower": None, "upper": None, "gap": gap}
    ends = [difference.get(k) for k in ("lower", "upper")]
    return {
        "observed": difference["observed"] / g,
        "lower": None if ends[0] is None else ends[0] / g,
        "upper": None if ends[1] is None else ends[1] / g,
        "gap": {k: gap.get(k) for k in ("observed", "lower", "upper")},
    }


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}"


def _share(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


def _signed(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:+.2f}"


def study_table(study: dict[str, Any]) -> str:
    """A Markdown table in the form of PairAug's ablation: AUC x 100, the difference to the baseline
    with its interval, the seeds one by one, and linear probing."""
    fractions = [f"{float(f):g}" for f in study["config"]["probe_fractions"]]
    ceiling = study["config"].get("ceiling")
    head = (
        "| Arm | pairs (real + synthetic) | zero-shot AUC [95% CI] | vs baseline [95% CI] | p (Holm) | "
        + ("share of the gap [95% CI] | " if ceiling else "")
        + "per seed | "
        + " | ".join(f"probe {float(f):.0%}" for f in fractions)
        + " |"
    )
    lines = [head, "|" + "---|" * (6 + bool(ceiling) + len(fractions))]
    for arm in study["arms"].values():
        pooled = arm["pooled"]["macro"]
        diff = arm.get("difference")
        if diff is None:
            versus, adjusted = "(baseline)", ""
        else:
            m = diff["macro"]
            mark = " **gain**" if diff["gain"] else (" **loss**" if diff["loss"] else "")
            versus = f"{_signed(m['observed'])} [{_signed(m['lower'])}, {_signed(m['upper'])}]{mark}"
            h = diff.get("holm") or {}
            adjusted = (
                "n/a" if h.get("p_holm") is None else f"{h['p_holm']:.3f}" + (" *" if h["rejected"] else "")
            )
        seeds = ", ".join(_pct(s["zero_shot"]["macro"]["observed"]) for s in arm["seeds"].values())
        probes = []
        for f in fractions:
            vals = [s["probe"][f] for s in arm["seeds"].values() if s.get("probe", {}).get(f) is not None]
            probes.append(f"{100 * np.mean(vals):.1f}" if vals else "n/a")
        pairs = arm["pairs"]
        share = ""
        if ceiling:
            g = arm.get("gap_share") or {}
            share = (
                ""
                if g.get("observed") is None
                else f"{_share(g['observed'])} [{_share(g.get('lower'))}, {_share(g.get('upper'))}]"
            ) + " | "
        lines.append(
            f"| {arm['label']} | {pairs['real']} + {pairs['synthetic']} | {_pct(pooled['observed'])} "
            f"[{_pct(pooled['lower'])}, {_pct(pooled['upper'])}] | {versus} | {adjusted} | {share}{seeds} | "
            + " | ".join(probes)
            + " |"
        )
    return "\n".join(lines)


def plot_study(study: dict[str, Any]) -> bytes:
    """AUC by arm with its pooled interval and each seed's point; beside it the difference to the
    baseline with its paired interval. Returns the PNG."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    names = list(study["arms"])
    arms = [study["arms"][n] for n in names]
    ypos = np.arange(len(names))[::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.45 * len(names) + 1.8), sharey=True)
    for y0, arm in zip(ypos, arms, strict=True):
        m = arm["pooled"]["macro"]
        if m["observed"] is not None and m["lower"] is not None:
            left.errorbar(
                m["observed"],
                y0,
                xerr=[[max(0.0, m["observed"] - m["lower"])], [max(0.0, m["upper"] - m["observed"])]],
                fmt="o",
                color="C0",
                capsize=3,
            )
        seeds = [s["zero_shot"]["macro"]["observed"] for s in arm["seeds"].values()]
        left.scatter(seeds, [y0] * len(seeds), color="0.4", s=10, zorder=3)
        d = arm.get("difference")
        if d is not None and d["macro"]["observed"] is not None and d["macro"]["lower"] is not None:
            dm = d["macro"]
            color = "C2" if d["gain"] else ("C3" if d["loss"] else "0.3")
            right.errorbar(
                dm["observed"],
                y0,
                xerr=[[max(0.0, dm["observed"] - dm["lower"])], [max(0.0, dm["upper"] - dm["observed"])]],
                fmt="o",
                color=color,
                capsize=3,
            )
    base = study["arms"][study["baseline"]]["pooled"]["macro"]["observed"]
    if base is not None:
        left.axvline(base, color="0.7", lw=1, ls="--")
    right.axvline(0.0, color="0.5", lw=1)
    # Few, signed ticks: the differences are small numbers whose labels otherwise run together.
    right.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
    right.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%+.2f"))
    left.set_yticks(ypos, [a["label"] for a in arms])
    left.set_xlabel("zero-shot macro AUC (seeds' mean, 95% CI; grey: each seed)")
    right.set_xlabel(
        f"difference to '{study['arms'][study['baseline']]['label']}' (observed, 95% t-CI over seeds)"
    )
    fig.suptitle(study.get("title", "PairAug study"), fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()
