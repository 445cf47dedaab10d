"""The generator's training maths (pairaug_ray/models/t2i.py), without Ray: a pipeline trained from
scratch on a constructed two-finding world learns, saves as a pipeline folder that diffusers and the
generation stages load, and draws what the report says."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ddp import finish, init_gloo

from pairaug_ray.models import t2i

SIZE = 32
EFFUSION = "Large right pleural effusion."
NORMAL = "No acute cardiopulmonary process."


def _world(n: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """n grey 'radiographs' in [-1, 1]: a dark chest with two lung fields; with an effusion, the
    image's lower right quarter is white (the right costophrenic angle is on the image's left in a
    PA film, but what matters here is only that the report decides where the white goes)."""
    rng = np.random.default_rng(seed)
    images, texts = [], []
    for i in range(n):
        x = np.full((SIZE, SIZE), -0.6, np.float32)
        x[6:26, 4:14] = x[6:26, 18:28] = -0.9  # lungs
        x += rng.normal(0, 0.05, x.shape).astype(np.float32)
        effusion = i % 2 == 0
        if effusion:
            x[20:30, 18:30] = 0.9
        images.append(np.repeat(x[None], 3, axis=0))
        texts.append(EFFUSION if effusion else NORMAL)
    return torch.from_numpy(np.stack(images)).clamp(-1, 1), texts


def _corner(images: torch.Tensor | list) -> np.ndarray:
    """Mean brightness of the effusion's corner of each image (PIL images from the pipeline)."""
    arr = np.stack([np.asarray(im.convert("L"), np.float32) / 255.0 for im in images])
    return arr[:, 20:30, 18:30].mean(axis=(1, 2))


@pytest.mark.slow
def test_a_scratch_generator_learns_to_draw_what_the_report_says(tmp_path):
    torch.manual_seed(0)
    parts = t2i.scratch_parts(SIZE, seed=0)
    pixels, texts = _world(64, seed=1)
    ids = t2i.tokenize(parts.tokenizer, texts)
    gen = torch.Generator().manual_seed(0)

    # The VAE first: its reconstruction error falls.
    objective = t2i.VAEObjective(parts.vae)
    opt = torch.optim.AdamW(parts.vae.parameters(), lr=2e-3)
    recon = []
    for step in range(80):
        batch = pixels[(step * 16) % 64 : (step * 16) % 64 + 16]
        loss, r, _ = t2i.vae_loss(objective, batch, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        recon.append(r)
    assert np.mean(recon[-10:]) < 0.5 * np.mean(recon[:10]), recon[::10]
    parts.vae.eval().requires_grad_(False)
    parts.vae.register_to_config(scaling_factor=t2i.latent_scaling_factor(parts.vae, [pixels[:32]]))
    assert 0.05 < parts.vae.config.scaling_factor < 50

    untrained = t2i.sample_images(t2i.to_pipeline(parts), [EFFUSION, NORMAL], steps=10, guidance=3.0)

    # Then the UNet and the text encoder, with 10% of the reports dropped: the loss falls.
    params = [*parts.unet.parameters(), *parts.text_encoder.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3)
    empty = t2i.tokenize(parts.tokenizer, [""])[0]
    losses = []
    for step in range(300):  # batches of 8: ~50 s on 2 cores
        i = (step * 8) % 64
        batch_ids = t2i.drop_text(ids[i : i + 8], empty, 0.1, gen)
        loss = t2i.diffusion_loss(parts, pixels[i : i + 8], batch_ids, generator=gen)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-30:]) < 0.7 * np.mean(losses[:30]), losses[::30]

    # Saved as a pipeline folder: diffusers and the generation stages load it.
    from pairaug_ray.models.diffusion import load_sd_pipeline

    folder = t2i.save_pipeline(parts, tmp_path / "generator")
    pipe = load_sd_pipeline(folder)
    prompts = [EFFUSION] * 4 + [NORMAL] * 4
    drawn = t2i.sample_images(pipe, prompts, steps=20, guidance=3.0, seed=3)
    assert drawn[0].size == (SIZE, SIZE)
    # It draws what the report says: the effusion's corner is white only when the report states one
    # (the same starting noise for every prompt), and the untrained pipeline drew neither.
    corner = _corner(drawn)
    assert corner[:4].mean() > corner[4:].mean() + 0.2, corner
    assert abs(float(np.diff(_corner(untrained))[0])) < 0.1
    grid = t2i.sample_grid(pipe, [EFFUSION, NORMAL], steps=5, seed=0, tile=64)
    assert grid.size == (128, 64 + 40)


def _ddp_batch():
    torch.manual_seed(5)
    pixels = torch.rand(8, 3, 16, 16) * 2 - 1
    noise = torch.randn(8, 4, 4, 4)
    timesteps = torch.tensor([10, 200, 400, 600, 800, 999, 50, 700])
    return pixels, noise, timesteps


def _ddp_grads(parts) -> dict[str, torch.Tensor]:
    named = [*(("unet." + k, p) for k, p in parts.unet.named_parameters())]
    named += [("text." + k, p) for k, p in parts.text_encoder.named_parameters()]
    return {k: p.grad.detach().clone() for k, p in named if p.grad is not None}


def _t2i_ddp_worker(rank: int, world: int, store: str, out: str) -> None:
    init_gloo(rank, world, store)
    parts = t2i.scratch_parts(16, seed=0)
    ids = t2i.tokenize(parts.tokenizer, [EFFUSION, NORMAL] * 4)
    pixels, noise, timesteps = _ddp_batch()
    unet = torch.nn.parallel.DistributedDataParallel(parts.unet)
    text = torch.nn.parallel.DistributedDataParallel(parts.text_encoder)
    part = slice(rank * 4, rank * 4 + 4)
    loss = t2i.diffusion_loss(
        parts,
        pixels[part],
        ids[part],
        unet=unet,
        text_encoder=text,
        noise=noise[part],
        timesteps=timesteps[part],
        sample_posterior=False,
    )
    loss.backward()
    if rank == 0:
        torch.save(_ddp_grads(parts), out)
    finish()


@pytest.mark.slow
def test_two_ddp_workers_give_the_single_process_gradient(tmp_path):
    """The UNet's and the text encoder's gradients over a batch of 8 split over two DDP workers (as
    the finetune job wraps them) equal one process's over the whole batch."""
    import torch.multiprocessing as mp

    parts = t2i.scratch_parts(16, seed=0)
    ids = t2i.tokenize(parts.tokenizer, [EFFUSION, NORMAL] * 4)
    pixels, noise, timesteps = _ddp_batch()
    t2i.diffusion_loss(
        parts, pixels, ids, noise=noise, timesteps=timesteps, sample_posterior=False
    ).backward()
    want = _ddp_grads(parts)

    out = str(tmp_path / "grads.pt")
    mp.spawn(_t2i_ddp_worker, args=(2, str(tmp_path / "store"), out), nprocs=2, join=True)
    got = torch.load(out)
    assert set(got) == set(want) and any(k.startswith("text.") for k in want)
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-6, msg=k)
