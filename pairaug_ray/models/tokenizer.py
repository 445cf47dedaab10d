"""A CLIP tokenizer built offline from the real CLIP BPE merges.

CLIP, CheXzero and Stable Diffusion's text encoder share one 49,408-token byte-level BPE. The
merges ship in the open_clip_torch wheel (`open_clip/bpe_simple_vocab_16e6.txt.gz`); the
vocabulary follows from them exactly as OpenAI's `SimpleTokenizer` builds it. Real checkpoints
bring their own tokenizer files; this is for models built here (tiny test models, random init).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import os
from pathlib import Path

from transformers import CLIPTokenizer

BPE_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
BPE_ENV = "PAIRAUG_CLIP_BPE"
CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408
BOS_ID, EOS_ID = 49406, 49407


def find_bpe_file() -> Path:
    """The CLIP BPE merges file: $PAIRAUG_CLIP_BPE, else the one inside the installed open_clip wheel."""
    if env := os.environ.get(BPE_ENV):
        path = Path(env)
        if not path.is_file():
            raise FileNotFoundError(f"{BPE_ENV}={env} does not name a file")
        return path
    spec = importlib.util.find_spec("open_clip")  # located, not imported: open_clip needs torchvision
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / BPE_FILENAME
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"CLIP BPE vocabulary not found: install the open_clip_torch wheel without its dependencies "
        f"(`pip install --no-deps open_clip_torch`, as `make` does) or set {BPE_ENV} to a copy of {BPE_FILENAME}"
    )


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def write_tokenizer_files(out_dir: str | Path, bpe_file: Path | None = None) -> tuple[Path, Path]:
    """Write vocab.json and merges.txt of the CLIP tokenizer into `out_dir`."""
    bpe_file = bpe_file or find_bpe_file()
    with gzip.open(bpe_file, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(_bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    if len(vocab) != VOCAB_SIZE:
        raise ValueError(f"{bpe_file} gives a vocabulary of {len(vocab)} tokens, expected {VOCAB_SIZE}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = out / "vocab.json", out / "merges.txt"
    vocab_path.write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}, ensure_ascii=False))
    merges_path.write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8"
    )
    return vocab_path, merges_path


def build_clip_tokenizer(work_dir: str | Path, bpe_file: Path | None = None) -> CLIPTokenizer:
    """The CLIP tokenizer (context 77, padding with <|endoftext|> like Stable Diffusion's).

    Loaded from the written files through `from_pretrained`, the path real checkpoints take, which
    works across transformers 4.x (slow/fast classes) and 5.x (tokenizers backend)."""
    write_tokenizer_files(work_dir, bpe_file)
    return CLIPTokenizer.from_pretrained(
        str(work_dir), model_max_length=CONTEXT_LENGTH, pad_token="<|endoftext|>"
    )


@functools.cache
def default_tokenizer() -> CLIPTokenizer:
    """The CLIP tokenizer built from the BPE vocabulary, once per process: building it takes about
    a second (every training run, data actor and processor of a random-init model asked for it).
    Shared: encoding does not change a tokenizer."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return build_clip_tokenizer(tmp)


def load_tokenizer(source: str | None, cache_dir: str | None = None) -> CLIPTokenizer:
    """The checkpoint's CLIP tokenizer (`source`: a folder, s3:// prefix or hub id, as
    models/refs.py resolves it), or, for a model trained from random init (`source` None), one
    built from the CLIP BPE vocabulary."""
    if source:
        from pairaug_ray.models.refs import DEFAULT_CACHE_DIR, resolve_model

        model = resolve_model(source, cache_dir or DEFAULT_CACHE_DIR)
        return CLIPTokenizer.from_pretrained(model.path, revision=model.revision)
    return default_tokenizer()
