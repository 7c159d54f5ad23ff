"""AdamW with a backbone learning-rate multiplier, warm-up + step/poly schedules, lr scaling."""

from __future__ import annotations

import torch
from torch import nn

from vidseg.config import OptimConfig

# Normalisation and embedding parameters get no weight decay, as in Mask2Former.
_NO_DECAY_KEYWORDS = ("norm", "bn", "bias", "embed", "relative_position_bias_table", "level_embed")


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over trainable parameters.

    Parameters of a `backbone` submodule (`backbone.*`, `segmenter.backbone.*`) use
    `lr * backbone_lr_multiplier`; norms, biases and embeddings use weight decay 0.
    """
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        in_backbone = name.startswith("backbone.") or ".backbone." in name
        lr = cfg.lr * (cfg.backbone_lr_multiplier if in_backbone else 1.0)
        no_decay = param.ndim <= 1 or any(k in name for k in _NO_DECAY_KEYWORDS)
        groups.setdefault((lr, 0.0 if no_decay else cfg.weight_decay), []).append(param)
    if not groups:
        raise ValueError("model has no trainable parameters")
    param_groups = [{"params": ps, "lr": lr, "base_lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]
    return torch.optim.AdamW(param_groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(iteration: int, cfg: OptimConfig) -> float:
    """Multiplier of the base lr at `iteration`: linear warm-up, then step, poly (power 0.9) or constant."""
    warm = 1.0
    if cfg.warmup_iters > 0 and iteration < cfg.warmup_iters:
        warm = 0.001 + (1 - 0.001) * iteration / cfg.warmup_iters
    if cfg.schedule == "step":
        decay = cfg.gamma ** sum(iteration >= s for s in cfg.steps)
    elif cfg.schedule == "poly":
        decay = (1 - min(iteration, cfg.max_iters) / cfg.max_iters) ** 0.9
    else:
        decay = 1.0
    return warm * decay


def set_lr(optimizer: torch.optim.Optimizer, iteration: int, cfg: OptimConfig) -> None:
    """Set every group's lr for `iteration` from its base lr.

    The schedule is a pure function of the iteration, so a resumed run needs no scheduler state.
    """
    for group in optimizer.param_groups:
        group.setdefault("base_lr", group["lr"])
        group["lr"] = group["base_lr"] * lr_factor(iteration, cfg)


def scale_for_batch(cfg: OptimConfig, batch_size: int) -> OptimConfig:
    """Linear scaling rule: a recipe for `cfg.batch_size` run with `batch_size` instead.

    lr scales with the batch; iterations and schedule steps scale inversely so the number of epochs
    stays the same (DVIS++ on one GPU: lr 1e-4 × 1/8, iterations × 8).
    """
    import dataclasses

    ratio = batch_size / cfg.batch_size
    return dataclasses.replace(
        cfg,
        lr=cfg.lr * ratio,
        batch_size=batch_size,
        max_iters=round(cfg.max_iters / ratio),
        warmup_iters=round(cfg.warmup_iters / ratio),
        steps=tuple(round(s / ratio) for s in cfg.steps),
    )
