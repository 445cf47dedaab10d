"""Drawing a reader study (pairaug_ray/reader_study/draw.py): the tasks' balance, the seed, and the
blinding: no served byte tells a real case from a synthetic one by its form."""

from __future__ import annotations

import json
import struct
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pairaug_ray import schema
from pairaug_ray.errors import UserError
from pairaug_ray.images import encode_png
from pairaug_ray.reader_study.draw import draw_study


def _write(root: Path, rows: list[dict]) -> str:
    (root / "manifest").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / "manifest" / "part-0.parquet")
    return str(root)


def _image(path: Path, size: int, dtype, seed: int) -> str:
    """Real images 16-bit and large, synthetic ones 8-bit and small: the forms the blinding must hide."""
    rng = np.random.default_rng(seed)
    top = 65535 if dtype == np.uint16 else 255
    path.write_bytes(encode_png(rng.integers(0, top, (size, size)).astype(dtype)))
    return str(path)


@pytest.fixture
def run(tmp_path):
    media = tmp_path / "img"
    media.mkdir()
    real = [
        {
            schema.PAIR_ID: f"r{i}",
            schema.IMAGE_URI: _image(media / f"real-{i}.png", 96, np.uint16, i),
            schema.REPORT: f"FINDINGS:  Lungs clear.\n\nIMPRESSION: no acute process {i}.",
            schema.STATUS: "ok",
        }
        for i in range(12)
    ]
    syn = [
        {
            schema.PAIR_ID: f"s{i}",
            schema.PARENT_ID: f"r{i % 12}",
            schema.ORIGIN: "inter" if i % 2 else "intra",
            schema.IMAGE_URI: _image(media / f"syn-{i}.png", 32, np.uint8, 100 + i),
            schema.REPORT: f"there is no pneumothorax. small effusion {i}.",
            schema.STATUS: "ok",
            schema.KEPT: i % 4 != 0,
            schema.SCORE_A: 0.3 + i / 100,
        }
        for i in range(24)
    ]
    return _write(tmp_path / "real", real), _write(tmp_path / "synthetic", syn)


def _png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    out, i = [], 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        out.append(data[i + 4 : i + 8])
        i += 12 + length
    return out


def test_the_draw_is_balanced_seeded_and_blinded(run, tmp_path):
    real, synthetic = run
    study = draw_study(real, synthetic, str(tmp_path / "study"), cases_per_task=8, seed=3, image_size=64)
    cases = study["cases"]
    by_task = Counter(c["task"] for c in cases)
    assert by_task == {"images": 8, "reports": 8, "pairs": 8}
    for task in ("images", "reports"):
        truths = Counter(c["truth"] for c in cases if c["task"] == task)
        assert truths == {"real": 4, "synthetic": 4}
        origins = Counter(c["origin"] for c in cases if c["task"] == task and c["truth"] == "synthetic")
        assert origins == {"inter": 2, "intra": 2}
    assert all(c["kept"] for c in cases if c["truth"] != "real")  # kept pairs only, unless asked
    # Real cases come from the run's real pairs, synthetic ones from its pruned output.
    assert {c["pair_id"][0] for c in cases if c["truth"] == "real"} == {"r"}
    assert {c["pair_id"][0] for c in cases if c["truth"] != "real"} == {"s"}

    # The blinding: every served image has the same length, chunks, size and bit depth, and a name
    # that is the random case id; nothing but pixels differs.
    media = tmp_path / "study" / "media"
    shown = {c["case_id"]: (media / c["image"]).read_bytes() for c in cases if c["image"]}
    assert len({len(b) for b in shown.values()}) == 1
    assert {tuple(_png_chunks(b)) for b in shown.values()} == {(b"IHDR", b"IDAT", b"IEND")}
    ihdr = {b[16:29] for b in shown.values()}  # width, height, bit depth, colour type, ...
    assert len(ihdr) == 1 and struct.unpack(">IIBB", next(iter(ihdr))[:10]) == (64, 64, 8, 0)
    assert all(c["image"] == f"{c['case_id']}.png" for c in cases if c["image"])
    assert all(len(zlib.decompress(b[41 : 41 + struct.unpack(">I", b[33:37])[0]])) for b in shown.values())
    # Reports: spacing normalised for both origins.
    reports = [c["report"] for c in cases if c["task"] == "reports"]
    assert all("\n" not in r and "  " not in r and r[0].isupper() for r in reports)

    # The same seed draws the same cases; the truth is only in study.json.
    again = draw_study(real, synthetic, str(tmp_path / "again"), cases_per_task=8, seed=3, image_size=64)
    assert [c["pair_id"] for c in again["cases"]] == [c["pair_id"] for c in cases]
    assert json.loads((tmp_path / "study" / "study.json").read_text())["seed"] == 3


def _sharpness(png: bytes) -> float:
    """Mean absolute Laplacian: what makes a sharp image look sharp."""
    import io

    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(png)), dtype=float)
    return float(np.abs(4 * a[1:-1, 1:-1] - a[:-2, 1:-1] - a[2:, 1:-1] - a[1:-1, :-2] - a[1:-1, 2:]).mean())


def _disc(path: Path, size: int, dtype) -> str:
    """A bright disc with a hard edge, drawn at `size` px: the same picture at two resolutions."""
    k = 8  # drawn 8x finer and averaged: anti-aliased, as a radiograph's edges are at any size
    yy, xx = (np.mgrid[: size * k, : size * k] + 0.5) / (size * k)
    disc = (((xx - 0.5) ** 2 + (yy - 0.5) ** 2) < 0.09).reshape(size, k, size, k).mean(axis=(1, 3))
    top = 65535 if dtype == np.uint16 else 255
    path.write_bytes(encode_png((disc * top * 0.8).astype(dtype)))
    return str(path)


@pytest.mark.parametrize("match", [True, False])
def test_sharpness_is_matched_between_real_and_synthetic_images(tmp_path, match):
    """Real images at 96 px, synthetic ones at 32 px, shown at 64 px: the real ones would be far
    sharper unless every image passes through the smallest native size first."""
    (tmp_path / "img").mkdir()
    real = [
        {
            schema.PAIR_ID: f"r{i}",
            schema.IMAGE_URI: _disc(tmp_path / "img" / f"r{i}.png", 96, np.uint16),
            schema.REPORT: "x",
            schema.STATUS: "ok",
        }
        for i in range(4)
    ]
    syn = [
        {
            schema.PAIR_ID: f"s{i}",
            schema.PARENT_ID: "r0",
            schema.ORIGIN: "inter",
            schema.IMAGE_URI: _disc(tmp_path / "img" / f"s{i}.png", 32, np.uint8),
            schema.REPORT: "y",
            schema.STATUS: "ok",
            schema.KEPT: True,
        }
        for i in range(4)
    ]
    out = tmp_path / "s"
    study = draw_study(
        _write(tmp_path / "real", real),
        _write(tmp_path / "syn", syn),
        str(out),
        cases_per_task=8,
        image_size=64,
        tasks=("images",),
        match_resolution=match,
    )
    sharp = {
        t: np.mean(
            [_sharpness((out / "media" / c["image"]).read_bytes()) for c in study["cases"] if c["truth"] == t]
        )
        for t in ("real", "synthetic")
    }
    ratio = sharp["real"] / sharp["synthetic"]
    if match:
        assert study["blinding"]["matched_resolution"] == 32 and 0.9 < ratio < 1.1, ratio
    else:
        assert study["blinding"]["matched_resolution"] is None and ratio > 1.3, ratio


def test_pruned_pairs_join_when_asked_and_style_markers_are_listed(run, tmp_path):
    real, synthetic = run
    study = draw_study(
        real,
        synthetic,
        str(tmp_path / "s"),
        cases_per_task=12,
        include_pruned=True,
        tasks=("reports", "pairs"),
    )
    pairs = [c for c in study["cases"] if c["task"] == "pairs"]
    assert Counter(c["kept"] for c in pairs) == {True: 6, False: 6}
    # The synthetic reports say "there is no ..."; the real ones "lungs clear": words a reader
    # could learn, listed for the study's owner.
    markers = {m["word"]: m["more_in"] for m in study["blinding"]["report_markers"]}
    assert markers.get("pneumothorax") == "synthetic" and markers.get("lungs") == "real"


def test_too_few_cases_or_an_unknown_task_is_refused(run, tmp_path):
    real, synthetic = run
    with pytest.raises(UserError, match="needs 30 real pairs; the run has 12"):
        draw_study(real, synthetic, str(tmp_path / "x"), cases_per_task=60, tasks=("images",))
    with pytest.raises(UserError, match="unknown task"):
        draw_study(real, synthetic, str(tmp_path / "y"), tasks=("audio",))
