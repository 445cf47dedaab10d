"""AugImg, the image-augmentation baseline of PairAug's ablation: random resized crop, Gaussian blur
and random grayscale, as torch ops on one (C, H, W) image (no torchvision in the base image)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pairaug_ray.config import AugImgConfig


def random_resized_crop(x: torch.Tensor, scale: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """torchvision's RandomResizedCrop(size, scale, ratio=(3/4, 4/3)) on a (C, H, W) tensor."""
    _, h, w = x.shape
    area = h * w
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(*scale, generator=gen))
        log_ratio = torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen)
        aspect = math.exp(float(log_ratio))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
            crop = x[:, top : top + ch, left : left + cw]
            return F.interpolate(crop[None], size=(h, w), mode="bicubic", align_corners=False)[0]
    return x  # torchvision falls back to a centre crop; the whole image is the closest here


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[0]
    y = F.pad(x[None], (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return y[0]


def augment_image(x: torch.Tensor, cfg: AugImgConfig, gen: torch.Generator) -> torch.Tensor:
    """AugImg: random resized crop, Gaussian blur, random grayscale. Keeps shape; values stay in the
    input's range (crop/resize with bicubic is clamped to it, blur averages)."""
    lo, hi = float(x.min()), float(x.max())
    x = random_resized_crop(x, cfg.crop_scale, gen).clamp(lo, hi)
    if float(torch.rand(1, generator=gen)) < cfg.blur_p:
        x = gaussian_blur(x, float(torch.empty(1).uniform_(*cfg.blur_sigma, generator=gen)))
    if float(torch.rand(1, generator=gen)) < cfg.grayscale_p:
        x = x.mean(dim=0, keepdim=True).expand_as(x).clone()
    return x
