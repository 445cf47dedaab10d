"""Token alignment between a source and an edited prompt (prompt-to-prompt's mappers).

- `refinement_mapper`: a global (Needleman-Wunsch) alignment of the two prompts' CLIP token ids.
  Each target token is mapped to the source token it aligns with (its attention map is inherited)
  or marked as new (alpha 0: it keeps its own map). Scores: match +1, mismatch -1, gap 0; ties in
  the traceback prefer an insertion (left), then a deletion (up), then the diagonal, so that a
  changed word is read as "inserted new tokens" rather than "replaced old ones".
- `replacement_mapper`: word-swap editing for prompts with the same number of words; a word of
  n target tokens replacing a word of m source tokens shares the maps (weight 1/n each).
- `word_token_indices`: where a word's tokens sit in the encoded prompt (for local blend and
  re-weighting).

Token ids come from `tokenizer(prompt, truncation=True, max_length=77)`, exactly what the text
encoder sees (BOS ... EOS). PairAug's code truncated the raw id lists to 77 instead, which can
drop EOS; aligning what the encoder actually encodes is the faithful reading of the algorithm.
"""

from __future__ import annotations

import numpy as np
import torch

MAX_TOKENS = 77
GAP, MATCH, MISMATCH = 0, 1, -1
_LEFT, _UP, _DIAG, _STOP = 1, 2, 3, 4


def encode(tokenizer, prompt: str, max_len: int = MAX_TOKENS) -> list[int]:
    return list(tokenizer(prompt, truncation=True, max_length=max_len).input_ids)


def global_alignment(x: list[int], y: list[int]) -> list[tuple[int, int]]:
    """Pairs (j, i): target position j aligned to source position i, or i = -1 for an insertion."""
    n, m = len(x), len(y)
    score = np.zeros((n + 1, m + 1), dtype=np.int64)
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)
    score[0, 1:] = np.arange(1, m + 1) * GAP
    score[1:, 0] = np.arange(1, n + 1) * GAP
    trace[0, 1:], trace[1:, 0], trace[0, 0] = _LEFT, _UP, _STOP
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            left = score[i, j - 1] + GAP
            up = score[i - 1, j] + GAP
            diag = score[i - 1, j - 1] + (MATCH if x[i - 1] == y[j - 1] else MISMATCH)
            best = max(left, up, diag)
            score[i, j] = best
            trace[i, j] = _LEFT if best == left else (_UP if best == up else _DIAG)
    pairs: list[tuple[int, int]] = []
    i, j = n, m
    while i > 0 or j > 0:
        step = trace[i, j]
        if step == _DIAG:
            i, j = i - 1, j - 1
            pairs.append((j, i))
        elif step == _LEFT:
            j -= 1
            pairs.append((j, -1))
        elif step == _UP:
            i -= 1
        else:
            break
    pairs.reverse()
    return pairs


def refinement_mapper(
    source: str, target: str, tokenizer, max_len: int = MAX_TOKENS
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mapper, alphas), each of length `max_len`: target token j reads source token mapper[j]
    when alphas[j] is 1. Positions past the target's tokens (padding) map to themselves."""
    x, y = encode(tokenizer, source, max_len), encode(tokenizer, target, max_len)
    pairs = global_alignment(x, y)
    mapper = torch.arange(max_len, dtype=torch.int64)
    alphas = torch.ones(max_len)
    for j, i in pairs:
        mapper[j] = i
        alphas[j] = 0.0 if i < 0 else 1.0
    return mapper, alphas


def refinement_mappers(
    prompts: list[str], tokenizer, max_len: int = MAX_TOKENS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mappers and alphas of prompts[1:] against prompts[0], stacked: (len(prompts) - 1, max_len)."""
    pairs = [refinement_mapper(prompts[0], p, tokenizer, max_len) for p in prompts[1:]]
    return torch.stack([m for m, _ in pairs]), torch.stack([a for _, a in pairs])


def word_token_indices(prompt: str, word: str | int, tokenizer) -> list[int]:
    """Token positions (BOS is 0) of the word at index `word`, or of every occurrence of the word
    text `word`, in `prompt` split on spaces."""
    words = prompt.split(" ")
    wanted = {word} if isinstance(word, int) else {i for i, w in enumerate(words) if w == word}
    out, pos = [], 1
    for i, w in enumerate(words):
        n = len(tokenizer(w, add_special_tokens=False).input_ids)
        if i in wanted:
            out.extend(range(pos, pos + n))
        pos += n
    return [p for p in out if p < MAX_TOKENS - 1]


def replacement_mapper(source: str, target: str, tokenizer, max_len: int = MAX_TOKENS) -> torch.Tensor:
    """A (max_len, max_len) matrix M with target maps = source maps @ M (word swap)."""
    src_words, tgt_words = source.split(" "), target.split(" ")
    if len(src_words) != len(tgt_words):
        raise ValueError(
            f"word-swap (replace) editing needs prompts with the same number of words: "
            f"{len(src_words)} vs {len(tgt_words)}; use the refine controller for other edits"
        )
    mapper = np.zeros((max_len, max_len), dtype=np.float32)
    mapper[0, 0] = 1.0  # BOS
    i = j = 1
    for sw, tw in zip(src_words, tgt_words, strict=True):
        ns = len(tokenizer(sw, add_special_tokens=False).input_ids)
        nt = len(tokenizer(tw, add_special_tokens=False).input_ids)
        if ns == nt:  # same token count (the same word, or a swap of equal length): one to one
            for k in range(ns):
                if i + k < max_len and j + k < max_len:
                    mapper[i + k, j + k] = 1.0
        else:  # a swap of unequal length: every target token takes the source tokens' mean map
            for a in range(i, min(i + ns, max_len)):
                for b in range(j, min(j + nt, max_len)):
                    mapper[a, b] = 1.0 / nt
        i, j = i + ns, j + nt
    # EOS and padding follow one to one after both prompts end.
    while i < max_len and j < max_len:
        mapper[i, j] = 1.0
        i, j = i + 1, j + 1
    return torch.from_numpy(mapper)


def replacement_mappers(prompts: list[str], tokenizer, max_len: int = MAX_TOKENS) -> torch.Tensor:
    return torch.stack([replacement_mapper(prompts[0], p, tokenizer, max_len) for p in prompts[1:]])
