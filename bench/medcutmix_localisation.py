"""Does MedCutMix's patch ranking find the finding? Measured on phantom studies, where it is known.

For each study a finding (pleural effusion on one side, or cardiomegaly) is drawn twice, with and
without it, from the same patient and random state: the pixels that differ are the finding's
region, and a ViT patch is "on the finding" when a quarter of its pixels are. The sentence that
states the finding ranks the patches (models/medcutmix.py): with the last layer's tokens (the
method now) and with the mixing layer's tokens (the method before 2026-11), and the top
ceil(lam x N) patches are taken. The hit rate is the share of taken patches on the finding; chance
is the share of all patches on it. Intervals: 1,000 bootstrap resamples of the studies.

    python bench/medcutmix_localisation.py --model runs/demo/train/scorer/<checkpoint>/model

A finer grid than the tiny preset's 4 x 4: write a random tiny CLIP with 8-pixel patches (8 x 8 at
64 px) and train it as `train.init` (docs/method.md, MedCutMix, has the commands and results):

    python bench/medcutmix_localisation.py --write-init runs/init-8x8 --patch-size 8 --layers 4
"""

from __future__ import annotations

import argparse
import copy
import math

import numpy as np
import torch

from pairaug_ray.corpora import phantom_anatomy as anatomy
from pairaug_ray.models.clip import chexzero_pixels, tokenize
from pairaug_ray.models.medcutmix import hidden_states_at, last_hidden_from, patch_attention, top_patch_mask
from pairaug_ray.models.tokenizer import load_tokenizer

SENTENCES = {
    ("pleural effusion", "right"): "Moderate right pleural effusion.",
    ("pleural effusion", "left"): "Moderate left pleural effusion.",
    ("cardiomegaly", None): "Moderate cardiomegaly.",
}


def study_pair(rng: np.random.Generator, size: int, finding: str, side: str | None):
    """(with, without, region): one patient's study drawn with and without the finding."""
    grid = anatomy.Grid(size)
    an = anatomy.sample_anatomy(rng)
    base = anatomy.base_image(grid, an)
    spec = {"side": side, "severity": 2} if finding == "pleural effusion" else {"severity": 2, "ctr": 0.6}
    state = copy.deepcopy(rng)
    with_it, _ = anatomy.render_study(grid, an, base, {finding: spec}, rng)
    without, _ = anatomy.render_study(grid, an, base, {}, state)
    return with_it, without, np.abs(with_it - without) > 0.05


def patch_region(region: np.ndarray, grid: int) -> np.ndarray:
    """(grid * grid,) bool: patches with at least a quarter of their pixels in the region."""
    side = region.shape[0] // grid
    cells = region[: side * grid, : side * grid].reshape(grid, side, grid, side).mean(axis=(1, 3))
    return (cells >= 0.25).ravel()


def measure(model_path: str, studies: int, layer: int, lam: float, text_form: str, seed: int) -> dict:
    from transformers import CLIPModel

    from pairaug_ray.text.train_text import pairaug_form

    clip = CLIPModel.from_pretrained(model_path).eval()
    tok = load_tokenizer(model_path)
    size = clip.config.vision_config.image_size
    grid = size // clip.config.vision_config.patch_size
    rng = np.random.default_rng(seed)
    keys = list(SENTENCES)
    hits = {"last layer": [], f"layer {layer}": [], "chance": []}
    with torch.no_grad():
        for i in range(studies):
            finding, side = keys[i % len(keys)]
            image, _, region = study_pair(rng, 256, finding, side)
            on = patch_region(
                np.asarray(
                    torch.nn.functional.interpolate(
                        torch.from_numpy(region[None, None].astype(np.float32)), size=(size, size)
                    )[0, 0]
                    > 0.5
                ),
                grid,
            )
            if not on.any():
                continue
            pixels = torch.from_numpy(chexzero_pixels((image * 255).astype(np.uint8), size, 320))[None]
            text = SENTENCES[(finding, side)]
            ids, mask = tokenize(tok, [pairaug_form(text) if text_form == "pairaug" else text])
            q = clip.get_text_features(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
            q = q if isinstance(q, torch.Tensor) else q.pooler_output
            h = hidden_states_at(clip, pixels, layer)
            k = torch.tensor([lam])
            for name, tokens in (("last layer", last_hidden_from(clip, h, layer)), (f"layer {layer}", h)):
                chosen = top_patch_mask(patch_attention(clip, q, tokens), k)[0].numpy()
                hits[name].append(float(on[chosen].mean()))
            hits["chance"].append(float(on.mean()))
    boot = np.random.default_rng(0)
    n = len(hits["chance"])
    draws = boot.integers(0, n, (1000, n))
    out = {"studies": n, "patches": grid * grid, "taken": math.ceil(lam * grid * grid)}
    for name, v in hits.items():
        v = np.asarray(v)
        reps = v[draws].mean(axis=1)
        out[name] = (float(v.mean()), float(np.quantile(reps, 0.025)), float(np.quantile(reps, 0.975)))
    diff = np.asarray(hits["last layer"]) - np.asarray(hits[f"layer {layer}"])
    reps = diff[draws].mean(axis=1)
    out["last - layer"] = (
        float(diff.mean()),
        float(np.quantile(reps, 0.025)),
        float(np.quantile(reps, 0.975)),
    )
    return out


def write_init(out: str, patch_size: int, layers: int) -> None:
    """A random CLIP of the tiny preset with other patches and vision depth, with the tokenizer."""
    from transformers import CLIPConfig, CLIPModel

    from pairaug_ray.models.clip import PRESETS
    from pairaug_ray.models.tokenizer import default_tokenizer

    kw = copy.deepcopy(PRESETS["tiny"])
    kw["vision_config"].update(patch_size=patch_size, num_hidden_layers=layers)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(**kw)).save_pretrained(out)
    default_tokenizer().save_pretrained(out)
    print(
        f"{out}: tiny CLIP, {kw['vision_config']['image_size'] // patch_size}^2 patches, {layers} vision layers"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="a trained CLIP folder (transformers format)")
    ap.add_argument("--write-init", metavar="DIR", help="write a random CLIP to train (train.init) and exit")
    ap.add_argument("--patch-size", type=int, default=8, help="with --write-init")
    ap.add_argument("--layers", type=int, default=2, help="vision layers, with --write-init")
    ap.add_argument("--studies", type=int, default=300)
    ap.add_argument("--layer", type=int, default=0, help="the mixing layer (train.medcutmix.layer)")
    ap.add_argument("--lam", type=float, default=0.25, help="share of patches taken")
    ap.add_argument("--text-form", choices=["as_written", "pairaug"], default="as_written")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.write_init:
        write_init(args.write_init, args.patch_size, args.layers)
        return
    if not args.model:
        ap.error("--model is required (or --write-init)")
    r = measure(args.model, args.studies, args.layer, args.lam, args.text_form, args.seed)
    print(f"{r['studies']} studies, {r['taken']} of {r['patches']} patches taken")
    for name in ("last layer", f"layer {args.layer}", "chance", "last - layer"):
        mean, lo, hi = r[name]
        print(f"  {name:<14} {mean:.3f} [{lo:.3f}, {hi:.3f}]")


if __name__ == "__main__":
    main()
