"""A Hugging Face chat model generating batches of completions on one device (CPU or a GPU).

Prompts are rendered with the tokenizer's chat template (system + user message, generation prompt
appended) and left-padded so that a batch generates together. fp16 on CUDA, fp32 on CPU unless a
dtype is given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


@dataclass(frozen=True)
class Generation:
    text: str
    tokens_in: int
    tokens_out: int
    latency_s: float


_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class LocalChatModel:
    def __init__(self, path: str, *, revision: str | None = None, dtype: str = "auto", use_gpu: bool = False):
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            torch_dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        else:
            torch_dtype = _DTYPES[dtype]
        self.tokenizer = AutoTokenizer.from_pretrained(path, revision=revision, padding_side="left")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = (
            AutoModelForCausalLM.from_pretrained(path, revision=revision, dtype=torch_dtype)
            .to(self.device)
            .eval()
        )

    def _render(self, system: str, user: str) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # Base models without a chat template get a plain instruction layout.
        return f"{system}\n\nReport: {user}\n\nAugmentation:"

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[tuple[str, str]],
        *,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        seed: int,
    ) -> list[Generation]:
        texts = [self._render(s, u) for s, u in prompts]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
            self.device
        )
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_p": top_p}
            if temperature > 0
            else {"do_sample": False}
        )
        out = self.model.generate(
            **enc, max_new_tokens=max_new_tokens, pad_token_id=self.tokenizer.pad_token_id, **sampling
        )
        latency = (time.perf_counter() - t0) / max(1, len(prompts))
        new = out[:, enc["input_ids"].shape[1] :]
        results = []
        for i in range(len(prompts)):
            ids = new[i]
            n_out = int((ids != self.tokenizer.pad_token_id).sum())
            results.append(
                Generation(
                    text=self.tokenizer.decode(ids, skip_special_tokens=True).strip(),
                    tokens_in=int(enc["attention_mask"][i].sum()),
                    tokens_out=n_out,
                    latency_s=latency,
                )
            )
        return results
