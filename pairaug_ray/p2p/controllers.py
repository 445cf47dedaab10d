"""Prompt-to-prompt attention controllers (Hertz et al., 2022), as PairAug's IntraAug uses them.

A controller sees the attention probabilities of every hooked attention layer, in UNet call
order, for a batch of prompts generated from one initial latent: prompt 0 is the source, prompts
1.. are edits. With classifier-free guidance the batch is [uncond x B, cond x B]; only the
conditional half is edited. Probabilities arrive as (batch * heads, queries, keys), batch-major.

Counting: every hooked layer is called once per UNet call, so after `num_att_layers` calls the
controller advances `cur_step`. Steps are therefore UNet calls, which is what the schedules are
indexed by: PNDM (with skip_prk_steps) makes num_inference_steps + 1 calls, DDIM and DPM-Solver
make num_inference_steps; the alpha table has num_inference_steps + 1 rows, as in the original
code, so both are covered.

Controllers:
- `AttentionStore`: accumulates maps (for visualisation and local blend).
- `AttentionReplace`: word swap, target maps = source maps through a token mapper.
- `AttentionRefine`: token-aligned refinement (PairAug's choice): aligned target tokens inherit
  the source token's map, new tokens keep their own.
- `AttentionReweight`: scales the maps of chosen tokens (optionally after another edit).
- `LocalBlend`: after each denoising step, keeps the latent outside the edited words' attention
  region equal to the source's.

Edits replace cross-attention while `cur_step` is in the window given by `cross_replace`
(a fraction of the steps, or a per-word schedule) and self-attention (source's maps broadcast to
the edits) for `self_replace` of the steps, only in layers with at most `self_replace_max_tokens`
queries (16x16 = 256: the 16x16 and 8x8 maps of SD at 512 px).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from pairaug_ray.p2p import align

Window = float | tuple[float, float]


class AttentionControl:
    """Step/layer bookkeeping shared by all controllers; edits nothing."""

    def __init__(self) -> None:
        self.num_att_layers = -1  # set when registered: the number of hooked layers
        self.cur_step = 0
        self.cur_att_layer = 0
        self.uncond_in_batch = True  # False when guidance is off (no unconditional half)

    # -- which attention calls need explicit probabilities -------------------------------------------
    def wants_layer(self, is_cross: bool, place: str, num_queries: int) -> bool:
        """Whether a layer must be hooked at all (decided once, at registration)."""
        return False

    def active(self, is_cross: bool, place: str, num_queries: int) -> bool:
        """Whether this call, at the current step, must see explicit probabilities. When False the
        layer runs its fused attention and only the call is counted."""
        return self.wants_layer(is_cross, place, num_queries)

    # -- calls from the attention processors ------------------------------------------------------------
    def __call__(self, attn: torch.Tensor, is_cross: bool, place: str) -> torch.Tensor:
        if self.uncond_in_batch:
            half = attn.shape[0] // 2
            attn[half:] = self.forward(attn[half:], is_cross, place)
        else:
            attn = self.forward(attn, is_cross, place)
        self._count()
        return attn

    def skip(self) -> None:
        self._count()

    def _count(self) -> None:
        self.cur_att_layer += 1
        if self.cur_att_layer == self.num_att_layers:
            self.cur_att_layer = 0
            self.cur_step += 1
            self.between_steps()

    def forward(self, attn: torch.Tensor, is_cross: bool, place: str) -> torch.Tensor:
        return attn

    def between_steps(self) -> None:
        pass

    def step_callback(self, latents: torch.Tensor) -> torch.Tensor:
        return latents

    def reset(self) -> None:
        self.cur_step = 0
        self.cur_att_layer = 0


class AttentionStore(AttentionControl):
    """Sums attention maps over steps, per `{place}_{cross|self}`, for layers with at most
    `max_store_tokens` queries (32x32 by default, as the original code)."""

    def __init__(
        self, max_store_tokens: int = 32**2, cross_only: bool = False, only_tokens: int | None = None
    ):
        super().__init__()
        self.max_store_tokens = max_store_tokens
        self.cross_only = cross_only
        self.only_tokens = only_tokens  # store only maps with exactly this many queries
        self.step_store: dict[str, list[torch.Tensor]] = {}
        self.attention_store: dict[str, list[torch.Tensor]] = {}

    def stores(self, is_cross: bool, num_queries: int) -> bool:
        if self.cross_only and not is_cross:
            return False
        if self.only_tokens is not None:
            return num_queries == self.only_tokens
        return num_queries <= self.max_store_tokens

    def wants_layer(self, is_cross: bool, place: str, num_queries: int) -> bool:
        return self.stores(is_cross, num_queries)

    def forward(self, attn: torch.Tensor, is_cross: bool, place: str) -> torch.Tensor:
        if self.stores(is_cross, attn.shape[1]):
            key = f"{place}_{'cross' if is_cross else 'self'}"
            self.step_store.setdefault(key, []).append(attn.detach().float())
        return attn

    def between_steps(self) -> None:
        for key, maps in self.step_store.items():
            acc = self.attention_store.setdefault(key, [torch.zeros_like(m) for m in maps])
            for i, m in enumerate(maps):
                acc[i] += m
        self.step_store = {}

    def average_attention(self) -> dict[str, list[torch.Tensor]]:
        steps = max(1, self.cur_step)
        return {k: [m / steps for m in v] for k, v in self.attention_store.items()}

    def reset(self) -> None:
        super().reset()
        self.step_store, self.attention_store = {}, {}


class LocalBlend:
    """Restricts an edit to where the chosen words attend: x_t = x_src + mask * (x_t - x_src).

    The mask is the summed cross-attention of the words' tokens over the stored maps at one
    resolution (16x16 for SD at 512 px: a quarter of the latent side), averaged over heads and
    layers, max-pooled 3x3, resized to the latent, normalised by its max and thresholded; the
    source's and each edit's masks are united."""

    def __init__(
        self, prompts: Sequence[str], words: Sequence[str | Sequence[str]], tokenizer, threshold: float = 0.3
    ):
        if len(words) != len(prompts):
            raise ValueError("local blend needs one word (or list of words) per prompt")
        alpha = torch.zeros(len(prompts), 1, 1, 1, 1, align.MAX_TOKENS)
        for i, (prompt, ws) in enumerate(zip(prompts, words, strict=True)):
            for w in [ws] if isinstance(ws, str) else ws:
                for idx in align.word_token_indices(prompt, w, tokenizer):
                    alpha[i, :, :, :, :, idx] = 1
        if not alpha.any():
            raise ValueError(f"local blend words {list(words)} are in none of the prompts")
        self.alpha_layers = alpha
        self.threshold = threshold

    def __call__(self, latents: torch.Tensor, store: AttentionStore, side: int) -> torch.Tensor:
        maps = [
            m for key in ("down_cross", "mid_cross", "up_cross") for m in store.attention_store.get(key, [])
        ]
        if not maps:
            return latents
        b = self.alpha_layers.shape[0]
        stacked = torch.cat([m.reshape(b, -1, 1, side, side, m.shape[-1]) for m in maps], dim=1)
        alpha = self.alpha_layers.to(stacked.device, stacked.dtype)
        mask = (stacked * alpha).sum(-1).mean(1)
        mask = F.max_pool2d(mask, kernel_size=3, stride=1, padding=1)
        mask = F.interpolate(mask, size=latents.shape[2:])
        mask = mask / mask.amax(dim=(2, 3), keepdim=True).clamp_min(1e-12)
        mask = mask.gt(self.threshold)
        mask = (mask[:1] | mask[1:]).to(latents.dtype)
        return torch.cat([latents[:1], latents[:1] + mask * (latents[1:] - latents[:1])])


def time_word_alphas(
    prompts: Sequence[str], num_steps: int, cross_replace: Window | Mapping[str, Window], tokenizer
) -> torch.Tensor:
    """(num_steps + 1, len(prompts) - 1, 1, 1, 77): 1 where a target token's map is replaced at a
    step. `cross_replace` is a fraction of the steps, a (start, end) window, or a dict of windows
    per word with "default_" for the rest."""
    windows = dict(cross_replace) if isinstance(cross_replace, Mapping) else {"default_": cross_replace}
    windows.setdefault("default_", (0.0, 1.0))
    rows = num_steps + 1
    alpha = torch.zeros(rows, len(prompts) - 1, align.MAX_TOKENS)

    def fill(window: Window, edit: int, tokens: list[int] | None) -> None:
        start, end = (0.0, window) if isinstance(window, int | float) else window
        lo, hi = int(start * rows), int(end * rows)
        idx = slice(None) if tokens is None else tokens
        alpha[:lo, edit, idx] = 0
        alpha[lo:hi, edit, idx] = 1
        alpha[hi:, edit, idx] = 0

    for e in range(len(prompts) - 1):
        fill(windows["default_"], e, None)
    for word, window in windows.items():
        if word == "default_":
            continue
        for e, prompt in enumerate(prompts[1:]):
            tokens = align.word_token_indices(prompt, word, tokenizer)
            if tokens:
                fill(window, e, tokens)
    return alpha.reshape(rows, len(prompts) - 1, 1, 1, align.MAX_TOKENS)


class AttentionControlEdit(AttentionStore, ABC):
    """Shared edit logic; subclasses say how target cross-attention derives from the source's."""

    def __init__(
        self,
        prompts: Sequence[str],
        num_steps: int,
        tokenizer,
        *,
        cross_replace: Window | Mapping[str, Window] = 0.5,
        self_replace: Window = 0.2,
        self_replace_max_tokens: int = 16**2,
        local_blend: LocalBlend | None = None,
        store: bool = False,
    ):
        super().__init__()
        if len(prompts) < 2:
            raise ValueError("an edit needs a source prompt and at least one edited prompt")
        self.batch_size = len(prompts)
        self.num_steps = num_steps
        self.cross_alpha = time_word_alphas(prompts, num_steps, cross_replace, tokenizer)
        start, end = (0.0, self_replace) if isinstance(self_replace, int | float) else self_replace
        self.self_window = (int(num_steps * start), int(num_steps * end))
        self.self_replace_max_tokens = self_replace_max_tokens
        self.local_blend = local_blend
        self.store = store or local_blend is not None
        self.blend_side: int | None = None  # set at registration: the latent side / 4

    # -- layer and call selection -------------------------------------------------------------------------
    def _cross_edits(self) -> bool:
        return bool(self.cross_alpha.any())

    def _self_edits(self) -> bool:
        return self.self_window[1] > self.self_window[0]

    def stores(self, is_cross: bool, num_queries: int) -> bool:
        if not self.store:
            return False
        if self.local_blend is not None and self.blend_side is not None:
            return is_cross and num_queries == self.blend_side**2  # only what the blend reads
        return super().stores(is_cross, num_queries)

    def wants_layer(self, is_cross: bool, place: str, num_queries: int) -> bool:
        if self.stores(is_cross, num_queries):
            return True
        if is_cross:
            return self._cross_edits()
        return self._self_edits() and num_queries <= self.self_replace_max_tokens

    def _cross_active_now(self) -> bool:
        return self.cur_step < self.cross_alpha.shape[0] and bool(self.cross_alpha[self.cur_step].any())

    def _self_active_now(self, num_queries: int) -> bool:
        lo, hi = self.self_window
        return lo <= self.cur_step < hi and num_queries <= self.self_replace_max_tokens

    def active(self, is_cross: bool, place: str, num_queries: int) -> bool:
        if self.stores(is_cross, num_queries):
            return True
        return self._cross_active_now() if is_cross else self._self_active_now(num_queries)

    # -- the edit ---------------------------------------------------------------------------------------
    def forward(self, attn: torch.Tensor, is_cross: bool, place: str) -> torch.Tensor:
        super().forward(attn, is_cross, place)  # store (before editing, as the original)
        replace_cross = is_cross and self._cross_active_now()
        replace_self = not is_cross and self._self_active_now(attn.shape[1])
        if not (replace_cross or replace_self):
            return attn
        heads = attn.shape[0] // self.batch_size
        attn = attn.reshape(self.batch_size, heads, *attn.shape[1:])
        base, edits = attn[0], attn[1:]
        if replace_cross:
            alpha = self.cross_alpha[self.cur_step].to(attn.device, attn.dtype)
            attn[1:] = self.replace_cross_attention(base, edits) * alpha + (1 - alpha) * edits
        else:
            attn[1:] = base.unsqueeze(0).expand_as(edits)
        return attn.reshape(self.batch_size * heads, *attn.shape[2:])

    @abstractmethod
    def replace_cross_attention(self, base: torch.Tensor, edits: torch.Tensor) -> torch.Tensor:
        """Target maps (edits, heads, Q, 77) derived from the source's `base` (heads, Q, 77)."""

    def step_callback(self, latents: torch.Tensor) -> torch.Tensor:
        if self.local_blend is not None and self.blend_side:
            return self.local_blend(latents, self, self.blend_side)
        return latents


class AttentionReplace(AttentionControlEdit):
    """Word swap: target maps = source maps through a token mapper (prompts of equal word count)."""

    def __init__(self, prompts: Sequence[str], num_steps: int, tokenizer, **kw):
        super().__init__(prompts, num_steps, tokenizer, **kw)
        self.mapper = align.replacement_mappers(list(prompts), tokenizer)

    def replace_cross_attention(self, base: torch.Tensor, edits: torch.Tensor) -> torch.Tensor:
        return torch.einsum("hpw,bwn->bhpn", base, self.mapper.to(base.device, base.dtype))


class AttentionRefine(AttentionControlEdit):
    """Aligned target tokens inherit the source token's map; new tokens keep their own."""

    def __init__(self, prompts: Sequence[str], num_steps: int, tokenizer, **kw):
        super().__init__(prompts, num_steps, tokenizer, **kw)
        mapper, alphas = align.refinement_mappers(list(prompts), tokenizer)
        self.mapper = mapper
        self.token_alphas = alphas.reshape(alphas.shape[0], 1, 1, alphas.shape[1])

    def replace_cross_attention(self, base: torch.Tensor, edits: torch.Tensor) -> torch.Tensor:
        mapped = base[:, :, self.mapper.to(base.device)].permute(2, 0, 1, 3)  # (edits, heads, Q, 77)
        a = self.token_alphas.to(base.device, base.dtype)
        return mapped * a + edits * (1 - a)


class AttentionReweight(AttentionControlEdit):
    """Scales chosen tokens' cross-attention by `equalizer` (edits x 77), after `prev` if given."""

    def __init__(
        self,
        prompts: Sequence[str],
        num_steps: int,
        tokenizer,
        *,
        equalizer: torch.Tensor,
        prev: AttentionControlEdit | None = None,
        **kw,
    ):
        super().__init__(prompts, num_steps, tokenizer, **kw)
        self.equalizer = equalizer
        self.prev = prev

    def replace_cross_attention(self, base: torch.Tensor, edits: torch.Tensor) -> torch.Tensor:
        if self.prev is not None:
            base = self.prev.replace_cross_attention(base, edits)
        eq = self.equalizer.to(base.device, base.dtype)
        return base.unsqueeze(0) * eq[:, None, None, :] if base.dim() == 3 else base * eq[:, None, None, :]


def equalizer(prompt: str, weights: Mapping[str, float], tokenizer, edits: int = 1) -> torch.Tensor:
    """(edits, 77) ones, with the tokens of each word in `weights` set to its factor."""
    eq = torch.ones(edits, align.MAX_TOKENS)
    for word, factor in weights.items():
        for idx in align.word_token_indices(prompt, word, tokenizer):
            eq[:, idx] = factor
    return eq
