"""Prompt-to-prompt on the tiny Stable Diffusion: the edit really edits, and only where it should."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline

from pairaug_ray import p2p
from pairaug_ray.p2p import align

SRC = "there is a small left pleural effusion. heart size is normal."
TGT = "there is a large right pleural effusion. the heart is enlarged."
STEPS = 6


@pytest.fixture(scope="module")
def pipe(tiny_models) -> StableDiffusionPipeline:
    p = StableDiffusionPipeline.from_pretrained(tiny_models["diffusion"])
    p.set_progress_bar_config(disable=True)
    return p


def _latent(pipe, size=128, seed=0):
    return p2p.initial_latent(pipe, size, size, torch.Generator().manual_seed(seed))


def _run(pipe, prompts, ctrl, latent, size=128, guidance=4.0):
    return p2p.run_with_controller(
        pipe,
        prompts,
        ctrl,
        num_inference_steps=STEPS,
        guidance_scale=guidance,
        latents=latent,
        height=size,
        width=size,
        output_type="np",
    )


# --- token alignment ----------------------------------------------------------------------------------
def test_refinement_mapper_on_hand_made_pairs(pipe):
    tok = pipe.tokenizer
    ids = lambda s: align.encode(tok, s)  # noqa: E731
    # "small" -> "large": a substitution is read as an insertion (alpha 0), the rest aligns.
    mapper, alphas = align.refinement_mapper("a small left fluid", "a large left fluid", tok)
    assert len(ids("a small left fluid")) == 6  # BOS, 4 one-token words, EOS
    assert mapper[:6].tolist() == [0, 1, -1, 3, 4, 5] and alphas[:6].tolist() == [1, 1, 0, 1, 1, 1]
    assert mapper[6:].tolist() == list(range(6, 77)) and alphas[6:].eq(1).all()
    # An inserted word shifts what follows: "effusion" (target 3) reads source 2.
    mapper, alphas = align.refinement_mapper("no fluid", "no large fluid", tok)
    assert mapper[:5].tolist() == [0, 1, -1, 2, 3] and alphas[:5].tolist() == [1, 1, 0, 1, 1]
    # A deleted word: target tokens skip it.
    mapper, alphas = align.refinement_mapper("no large fluid", "no fluid", tok)
    assert mapper[:4].tolist() == [0, 1, 3, 4] and alphas[:4].tolist() == [1, 1, 1, 1]
    # A two-token word ("effusion" is ef + fusion) aligns token by token.
    mapper, alphas = align.refinement_mapper("no effusion", "no large effusion", tok)
    assert mapper[:6].tolist() == [0, 1, -1, 2, 3, 4] and alphas[:6].tolist() == [1, 1, 0, 1, 1, 1]
    # Identical prompts: the identity.
    mapper, alphas = align.refinement_mapper(SRC, SRC, tok)
    assert mapper.tolist() == list(range(77)) and alphas.eq(1).all()


def test_alignment_traceback_prefers_insertions():
    assert align.global_alignment([1, 2, 3], [1, 4, 3]) == [(0, 0), (1, -1), (2, 2)]
    assert align.global_alignment([], [7, 8]) == [(0, -1), (1, -1)]
    assert align.global_alignment([7, 8], []) == []


def test_replacement_mapper_and_word_indices(pipe):
    tok = pipe.tokenizer
    m = align.replacement_mapper("a small fluid", "a large fluid", tok)
    assert m.shape == (77, 77) and m[2, 2] == 1 and m[3, 3] == 1 and m[0, 0] == 1
    assert torch.allclose(m.sum(0)[:5], torch.ones(5))
    # "cardiomegaly" is several CLIP tokens: a one-token word swapped for it shares its map.
    n = len(tok("cardiomegaly", add_special_tokens=False).input_ids)
    m = align.replacement_mapper("mild fluid", "mild cardiomegaly", tok)
    assert n > 1 and torch.allclose(m[2, 2 : 2 + n], torch.full((n,), 1 / n))
    assert m[3, 2 + n] == 1  # EOS follows
    with pytest.raises(ValueError, match="same number of words"):
        align.replacement_mapper("a b", "a b c", tok)
    assert align.word_token_indices("no large effusion", "large", tok) == [2]
    assert align.word_token_indices("no large effusion", 2, tok) == [3, 4]


# --- hooking ------------------------------------------------------------------------------------------
def test_hooked_layers_are_those_the_settings_select(pipe):
    unet = pipe.unet
    q = p2p.layer_queries(unet, (32, 32))  # 256 px: maps of 32x32, 16x16 and 8x8
    attn1_small = sum(1 for n, v in q.items() if n.endswith("attn1.processor") and v <= 256)
    attn2 = sum(1 for n in q if n.endswith("attn2.processor"))
    assert (attn1_small, attn2) == (7, 10)
    cases = [((0.5, 0.2), attn2 + attn1_small), ((0.5, 0.0), attn2), ((0.0, 0.2), attn1_small)]
    for (cross, self_), expected in cases:
        ctrl = p2p.make_controller(pipe, [SRC, TGT], STEPS, cross_replace=cross, self_replace=self_)
        hooked, originals = p2p.register_attention_control(unet, ctrl, (32, 32))
        try:
            assert hooked == expected == ctrl.num_att_layers
            kinds = {type(p).__name__ for p in unet.attn_processors.values()}
            assert kinds == {"P2PAttnProcessor", "AttnProcessor2_0"}
        finally:
            unet.set_attn_processor(originals)
    ctrl = p2p.make_controller(pipe, [SRC, TGT], STEPS, cross_replace=0.0, self_replace=0.0)
    with pytest.raises(p2p.ZeroLayersHookedError, match="hooked 0 of 20"):
        p2p.register_attention_control(unet, ctrl, (32, 32))


def test_processors_restored_even_after_an_error(pipe):
    before = {k: type(v) for k, v in pipe.unet.attn_processors.items()}
    ctrl = p2p.make_controller(pipe, [SRC, TGT], STEPS)
    with pytest.raises(RuntimeError, match="boom"), p2p.attention_control(pipe.unet, ctrl, (16, 16)):
        raise RuntimeError("boom")
    assert {k: type(v) for k, v in pipe.unet.attn_processors.items()} == before


# --- behaviour ----------------------------------------------------------------------------------------
def test_same_seed_same_images_and_step_counting(pipe):
    a = _run(pipe, [SRC, TGT], p2p.make_controller(pipe, [SRC, TGT], STEPS), _latent(pipe))
    b = _run(pipe, [SRC, TGT], p2p.make_controller(pipe, [SRC, TGT], STEPS), _latent(pipe))
    assert np.array_equal(a.images, b.images)
    assert a.unet_calls == STEPS + 1  # PNDM with skip_prk_steps: one more UNet call than steps
    c = _run(pipe, [SRC, TGT], p2p.make_controller(pipe, [SRC, TGT], STEPS), _latent(pipe, seed=1))
    assert not np.allclose(a.images, c.images)
    ddim = StableDiffusionPipeline(
        **{**pipe.components, "scheduler": DDIMScheduler.from_config(pipe.scheduler.config)}
    )
    ddim.set_progress_bar_config(disable=True)
    d = _run(ddim, [SRC, TGT], p2p.make_controller(ddim, [SRC, TGT], STEPS), _latent(pipe))
    assert d.unet_calls == STEPS


def test_edit_disabled_equals_plain_generation_of_the_target(pipe):
    latent = _latent(pipe)
    ctrl = p2p.make_controller(pipe, [SRC, TGT], STEPS, cross_replace=0.0, self_replace=0.0, store=True)
    edited = _run(pipe, [SRC, TGT], ctrl, latent).images[1]
    plain = pipe(
        TGT,
        num_inference_steps=STEPS,
        guidance_scale=4.0,
        latents=latent.clone(),
        height=128,
        width=128,
        output_type="np",
    ).images[0]
    assert np.abs(edited - plain).max() < 1e-4
    # ... while the edit proper moves the target towards the source.
    ctrl = p2p.make_controller(pipe, [SRC, TGT], STEPS, cross_replace=1.0, self_replace=1.0)
    res = _run(pipe, [SRC, TGT], ctrl, latent)
    assert np.abs(res.images[1] - plain).mean() > 1e-3
    assert np.abs(res.images[1] - res.images[0]).mean() < np.abs(plain - res.images[0]).mean()


def test_identical_prompts_edit_to_the_source(pipe):
    res = _run(pipe, [SRC, SRC], p2p.make_controller(pipe, [SRC, SRC], STEPS), _latent(pipe))
    assert np.abs(res.images[0] - res.images[1]).max() < 1e-5


class RecordingRefine(p2p.AttentionRefine):
    """Keeps (step, source maps, edited maps after the edit) of every cross-attention call."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.records: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def forward(self, attn, is_cross, place):
        out = super().forward(attn, is_cross, place)
        if is_cross:
            heads = out.shape[0] // self.batch_size
            maps = out.reshape(self.batch_size, heads, *out.shape[1:])
            self.records.append((self.cur_step, maps[0].clone(), maps[1].clone()))
        return out

    def active(self, is_cross, place, num_queries):
        return True if is_cross else super().active(is_cross, place, num_queries)


def test_cross_attention_replaced_inside_the_window_only(pipe):
    ctrl = RecordingRefine([SRC, TGT], STEPS, pipe.tokenizer, cross_replace=0.5, self_replace=0.2)
    _run(pipe, [SRC, TGT], ctrl, _latent(pipe))
    window_end = int(0.5 * (STEPS + 1))
    mapper, alphas = align.refinement_mapper(SRC, TGT, pipe.tokenizer)
    aligned = alphas.bool()
    inside = [r for r in ctrl.records if r[0] < window_end]
    after = [r for r in ctrl.records if r[0] >= window_end]
    assert inside and after
    for _, base, edited in inside:
        assert torch.allclose(edited[..., aligned], base[..., mapper[aligned]], atol=1e-6)
    differ = [not torch.allclose(e[..., aligned], b[..., mapper[aligned]], atol=1e-4) for _, b, e in after]
    assert all(differ)


def test_local_blend_keeps_the_source_outside_the_mask(pipe):
    tok = pipe.tokenizer
    blend = p2p.LocalBlend(["no effusion", "large effusion"], ["effusion", "effusion"], tok, threshold=0.3)
    store = p2p.AttentionStore()
    side, heads = 4, 2
    maps = torch.zeros(2 * heads, side * side, 77)
    maps[:, 0, :] = 1.0  # the words attend to the top-left query only
    store.attention_store = {"down_cross": [maps]}
    latents = torch.randn(2, 4, 8, 8)
    out = blend(latents, store, side)
    assert torch.equal(out[0], latents[0])
    assert torch.equal(out[1, :, 4:, 4:], latents[0, :, 4:, 4:])  # far from the attended corner: source
    assert torch.allclose(out[1, :, :2, :2], latents[1, :, :2, :2])  # inside the mask: the edit
    with pytest.raises(ValueError, match="in none of the prompts"):
        p2p.LocalBlend(["no effusion", "big"], ["heart", "heart"], tok)
    # End to end the blend runs in the pipeline's step callback.
    ctrl = p2p.make_controller(
        pipe,
        ["small left effusion", "large left effusion"],
        STEPS,
        local_blend_words=["effusion", "effusion"],
    )
    res = _run(pipe, ["small left effusion", "large left effusion"], ctrl, _latent(pipe))
    assert res.images.shape == (2, 128, 128, 3) and np.isfinite(res.images).all()


def test_reweight_scales_chosen_tokens(pipe):
    tok = pipe.tokenizer
    eq = p2p.equalizer("no large fluid", {"large": 3.0}, tok)
    assert eq[0, 2] == 3.0 and eq[0, 1] == 1.0
    ctrl = p2p.AttentionReweight(["no large fluid", "no large fluid"], STEPS, tok, equalizer=eq)
    base = torch.rand(2, 4, 77)
    out = ctrl.replace_cross_attention(base, base.unsqueeze(0))
    assert torch.allclose(out[0, :, :, 2], 3 * base[:, :, 2]) and torch.allclose(
        out[0, :, :, 3], base[:, :, 3]
    )
    s, e = p2p.edit(
        pipe,
        "no large effusion",
        "no large effusion",
        controller="reweight",
        reweight={"large": 2.0},
        num_inference_steps=STEPS,
        guidance_scale=4.0,
        generator=torch.Generator().manual_seed(0),
        height=128,
        width=128,
    )
    assert s.size == e.size == (128, 128)


def test_public_edit_returns_pil_and_restores(pipe):
    before = {k: type(v) for k, v in pipe.unet.attn_processors.items()}
    s, e = p2p.edit(
        pipe,
        SRC,
        TGT,
        num_inference_steps=STEPS,
        guidance_scale=4.0,
        generator=torch.Generator().manual_seed(3),
        height=128,
        width=128,
    )
    assert s.size == e.size == (128, 128) and s.mode == "RGB"
    assert np.asarray(s).tolist() != np.asarray(e).tolist()
    assert {k: type(v) for k, v in pipe.unet.attn_processors.items()} == before


def test_ddim_inversion_recovers_the_latent(pipe):
    """Invert a clean latent that DDIM sampling made, sample again: the same latent comes back.
    (At the latent level: the tiny VAE's random weights do not reconstruct images.)"""
    ddim = StableDiffusionPipeline(
        **{**pipe.components, "scheduler": DDIMScheduler.from_config(pipe.scheduler.config)}
    )
    ddim.set_progress_bar_config(disable=True)
    x_t = _latent(pipe)

    def sample(latent):
        return ddim(
            SRC,
            num_inference_steps=20,
            guidance_scale=1.0,
            latents=latent.clone(),
            height=128,
            width=128,
            output_type="latent",
        ).images

    z0 = sample(x_t)
    inverted = p2p.ddim_invert_latent(ddim, z0, SRC, num_inference_steps=20)
    assert torch.nn.functional.cosine_similarity(inverted.flatten(), x_t.flatten(), dim=0) > 0.99
    round_trip = (sample(inverted) - z0).abs().mean()
    elsewhere = (sample(_latent(pipe, seed=5)) - z0).abs().mean()
    assert round_trip < 0.1 * elsewhere
    # From an image: encoded by the VAE first, same shape out.
    image = (np.random.default_rng(0).random((100, 90)) * 255).astype(np.uint8)
    assert p2p.ddim_invert(ddim, image, SRC, num_inference_steps=4, height=128, width=128).shape == x_t.shape


def test_sd15_architecture_hooks_22_layers_at_512px():
    """SD 1.5's UNet (RoentGen's size, built without allocating weights): PairAug's settings hook its
    16 cross-attention layers and the 6 self-attention layers at 16x16 and 8x8."""
    accelerate = pytest.importorskip(
        "accelerate", reason="accelerate (dev extra) builds the UNet without weights"
    )
    from diffusers import UNet2DConditionModel

    from pairaug_ray.models.tiny import SD15_UNET

    with accelerate.init_empty_weights():
        unet = UNet2DConditionModel(**SD15_UNET)
    assert len(unet.attn_processors) == 32

    class Tok:  # the controller only needs token ids here; identical prompts align to the identity
        def __call__(self, text, truncation=True, max_length=77, add_special_tokens=True):
            class Out:
                input_ids = [49406, 1, 49407]

            return Out()

    ctrl = p2p.AttentionRefine(["a", "a"], 75, Tok(), cross_replace=0.5, self_replace=0.2)
    hooked, originals = p2p.register_attention_control(unet, ctrl, (64, 64))
    assert hooked == 22
    unet.set_attn_processor(originals)
