"""Drawing a reader study from an augment run's outputs, blinded (docs/reader-study.md).

Three tasks, as PairAug's Visual Turing Test (section 4.6):

    images   real and synthetic images mixed; the reader answers "real" or "synthetic/unsure"
    reports  real and rewritten reports mixed; the same answers
    pairs    synthetic image-report pairs; the reader rates the alignment good / poor / unsure

Real cases come only from the run's own real pairs (its validated corpus); synthetic ones from its
pruned output, InterAug and IntraAug both, kept pairs only or kept and pruned half and half. The
draw is seeded and recorded in study.json with each case's truth, which the web app never sends.

Blinding: every image is re-encoded the same way (8-bit grey, one square size, a PNG with no
metadata and no compression, so that every file has the same length whatever its content and
origin) under a random name. Sharpness is matched too: a generator often draws at a lower
resolution than the real radiographs have, and a reader would tell the blurred upsampled images
from the sharp ones at a glance, so every image first goes down to the smallest native side among
the study's images, then up to the display size (`match_resolution`, on by default). Every report
is shown with its spacing normalised. What cannot be
normalised without changing the report, its wording, is checked: words far more frequent in one
origin's reports than the other's are listed in study.json (`blinding.report_markers`) for the
study's owner to look at before readers start.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow.compute as pc
from PIL import Image

from pairaug_ray import schema, storage
from pairaug_ray.errors import UserError
from pairaug_ray.images import read_image, to_uint8
from pairaug_ray.pairs import read_columns

TASKS = ("images", "reports", "pairs")
TRUTH_REAL, TRUTH_SYNTHETIC = "real", "synthetic"
STUDY_FORMAT = "pairaug-reader-study/1"
SYNTHETIC_ORIGINS = (schema.ORIGIN_INTER, schema.ORIGIN_INTRA)


@dataclass
class Case:
    case_id: str  # random: all a reader's browser ever learns about the case
    task: str
    truth: str | None  # tasks 1-2: real / synthetic; task 3: None (readers rate, nothing is "true")
    origin: str
    pair_id: str
    parent_id: str | None = None
    kept: bool | None = None
    image: str | None = None  # the blinded PNG's file name under media/
    report: str | None = None
    scores: dict[str, float | None] = field(default_factory=dict)


def normalise_report(text: str) -> str:
    """One paragraph, single spaces, a capital first letter: how every report is shown."""
    text = " ".join(str(text).split())
    return text[:1].upper() + text[1:]


def blinded_png(pixels: np.ndarray, size: int, native: int | None = None) -> bytes:
    """The image as every case's image is served: 8-bit grey, size x size, stored PNG (no zlib
    compression, so the length depends on the size alone), no text or colour chunks. With
    `native`, the image passes through native x native first (every image as sharp as the least
    sharp of the study)."""
    import io

    img = Image.fromarray(to_uint8(pixels)).convert("L")
    if native is not None and native < min(img.size):
        img = img.resize((native, native), Image.Resampling.LANCZOS)
    img = img.resize((size, size), Image.Resampling.LANCZOS)

    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=0, optimize=False)
    return buf.getvalue()


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def report_markers(real: list[str], synthetic: list[str], *, min_count: int = 5, ratio: float = 4.0) -> list:
    """Words used at least `ratio` times as often (per report, smoothed) by one origin's reports as by
    the other's: style a reader could learn to spot (a rewriter's own way of stating a denial)."""
    if not real or not synthetic:
        return []
    cr = Counter(w for t in real for w in set(_words(t)))
    cs = Counter(w for t in synthetic for w in set(_words(t)))
    out = []
    for w in set(cr) | set(cs):
        r, s = cr[w], cs[w]
        if r + s < min_count:
            continue
        fr, fs = (r + 0.5) / (len(real) + 1), (s + 0.5) / (len(synthetic) + 1)
        if max(fr, fs) / min(fr, fs) >= ratio:
            out.append({"word": w, "real": r, "synthetic": s, "more_in": "real" if fr > fs else "synthetic"})
    return sorted(out, key=lambda m: -(m["real"] + m["synthetic"]))


def _table(root: str, columns: list[str]) -> list[dict[str, Any]]:
    table = read_columns(root, columns, where=pc.field(schema.STATUS) == schema.STATUS_OK)
    return table.to_pylist()


def _pick(rows: list[dict], n: int, rng: np.random.Generator, what: str) -> list[dict]:
    if len(rows) < n:
        raise UserError(f"the study needs {n} {what}; the run has {len(rows)}: ask for fewer cases per task")
    return [rows[i] for i in sorted(rng.choice(len(rows), size=n, replace=False))]


def _shares(sizes: dict[Any, int], n: int) -> dict[Any, int]:
    """n spread as evenly as the groups' sizes allow (a short group hands the rest to the others)."""
    keys = sorted(sizes)
    share = dict.fromkeys(keys, 0)
    left = n
    while left:
        open_keys = [k for k in keys if share[k] < sizes[k]]
        if not open_keys:
            raise UserError(f"the study needs {n} synthetic cases; the run has {sum(sizes.values())}")
        for k in open_keys[:left]:
            share[k] += 1
            left -= 1
    return share


def _synthetic(rows: list[dict], n: int, rng: np.random.Generator, include_pruned: bool) -> list[dict]:
    """n synthetic rows: kept and pruned half and half when asked (kept only otherwise), and within
    each, InterAug and IntraAug as even as the run allows."""
    groups: dict[bool, dict[str, list[dict]]] = {}
    for r in rows:
        kept = bool(r.get(schema.KEPT))
        if kept or include_pruned:
            groups.setdefault(kept, {}).setdefault(r[schema.ORIGIN], []).append(r)
    if not groups:
        raise UserError(
            "the run has no synthetic pairs to show" + ("" if include_pruned else " that were kept")
        )
    out = []
    by_kept = _shares({k: sum(map(len, g.values())) for k, g in groups.items()}, n)
    for kept, m in by_kept.items():
        by_origin = _shares({o: len(rs) for o, rs in groups[kept].items()}, m)
        for origin, k in by_origin.items():
            out += _pick(groups[kept][origin], k, rng, f"{origin} pairs")
    return out


def draw_study(
    real_root: str,
    synthetic_root: str,
    out_dir: str,
    *,
    cases_per_task: int = 50,
    seed: int = 0,
    include_pruned: bool = False,
    image_size: int = 512,
    tasks: tuple[str, ...] = TASKS,
    match_resolution: bool = True,
) -> dict[str, Any]:
    """Draw the study into out_dir (study.json and media/); returns study.json's content."""
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise UserError(f"unknown task(s) {unknown}; the tasks are {list(TASKS)}")
    rng = np.random.default_rng(seed)
    real = _table(real_root, [schema.PAIR_ID, schema.IMAGE_URI, schema.REPORT])
    syn_cols = [schema.PAIR_ID, schema.PARENT_ID, schema.ORIGIN, schema.IMAGE_URI, schema.REPORT, schema.KEPT]
    synthetic = [
        r
        for r in _table(synthetic_root, [*syn_cols, *schema.SCORE_COLUMNS])
        if r[schema.ORIGIN] in SYNTHETIC_ORIGINS
    ]
    media = storage.join(out_dir, "media")
    storage.makedirs(media)
    cases: list[Case] = []
    pixels: dict[str, np.ndarray] = {}  # case id -> the image as read (a study holds ~150)

    def add(task: str, row: dict, truth: str | None, *, image: bool, report: bool) -> None:
        case = Case(
            case_id=secrets.token_urlsafe(12),
            task=task,
            truth=truth,
            origin=row.get(schema.ORIGIN) or schema.ORIGIN_REAL,
            pair_id=str(row[schema.PAIR_ID]),
            parent_id=row.get(schema.PARENT_ID),
            kept=row.get(schema.KEPT) if truth != TRUTH_REAL else None,
            scores={c: row.get(c) for c in schema.SCORE_COLUMNS if row.get(c) is not None},
        )
        if image:
            case.image = f"{case.case_id}.png"
            pixels[case.case_id] = read_image(row[schema.IMAGE_URI])
        if report:
            case.report = normalise_report(row[schema.REPORT])
        cases.append(case)

    n_real = cases_per_task // 2
    for task in tasks:
        if task == "pairs":
            for row in _synthetic(synthetic, cases_per_task, rng, include_pruned):
                add(task, row, None, image=True, report=True)
            continue
        image = task == "images"
        for row in _pick(real, n_real, rng, "real pairs"):
            add(task, row, TRUTH_REAL, image=image, report=not image)
        for row in _synthetic(synthetic, cases_per_task - n_real, rng, include_pruned):
            add(task, row, TRUTH_SYNTHETIC, image=image, report=not image)
    native = min((min(p.shape[:2]) for p in pixels.values()), default=None) if match_resolution else None
    for case in cases:
        if case.image:
            storage.write_bytes(
                storage.join(media, case.image), blinded_png(pixels.pop(case.case_id), image_size, native)
            )
    # Each task's cases in a seeded random order: real and synthetic interleaved.
    order = {c.case_id: float(rng.random()) for c in cases}
    cases.sort(key=lambda c: (tasks.index(c.task), order[c.case_id]))

    shown = [c for c in cases if c.task == "reports"]
    study = {
        "format": STUDY_FORMAT,
        "seed": seed,
        "cases_per_task": cases_per_task,
        "include_pruned": include_pruned,
        "image_size": image_size,
        "sources": {"real": storage.absolute(real_root), "synthetic": storage.absolute(synthetic_root)},
        "tasks": list(tasks),
        "blinding": {
            "images": f"8-bit grey, {image_size}x{image_size}, stored PNG without metadata, random names",
            "matched_resolution": native,
            "report_markers": report_markers(
                [c.report for c in shown if c.truth == TRUTH_REAL and c.report],
                [c.report for c in shown if c.truth == TRUTH_SYNTHETIC and c.report],
            ),
        },
        "cases": [asdict(c) for c in cases],
    }
    storage.write_text(storage.join(out_dir, "study.json"), json.dumps(study, indent=1, default=_json))
    return study


def _json(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON: {type(value).__name__}")
