"""Per-frame latency of the vidseg segmenter vs `transformers`' Mask2Former, same config and weights.

A randomly initialised HF `Mask2FormerForUniversalSegmentation` (Swin backbone, Mask2Former defaults:
hidden 256, 6 encoder layers, 9+1 decoder layers, 100 queries) is converted with `vidseg.models.convert`;
both models then run the same normalised frames, interleaved, in one process. Prints JSON with the median
milliseconds per frame and the ratio vidseg / transformers (< 1 means vidseg is faster), on CPU and, when
CUDA is available, on GPU in fp32 and bf16 (autocast). Also reports the largest logit difference.

    python benchmarks/segmenter_latency.py --iters 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
from _timing import sync

from vidseg.io.checkpoint import load_weights
from vidseg.models.convert import convert_hf_state_dict, model_config_from_hf
from vidseg.models.segmenter import build_segmenter

_SWIN = {
    "swin_t": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
    "swin_s": dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
}


def build_pair(backbone: str, num_labels: int, seed: int = 0):
    """(HF model, converted vidseg model), both in eval mode on CPU."""
    import transformers

    torch.manual_seed(seed)
    swin = transformers.SwinConfig(
        **_SWIN[backbone], window_size=7, drop_path_rate=0.0, out_features=["stage1", "stage2", "stage3", "stage4"]
    )
    hf = transformers.Mask2FormerForUniversalSegmentation(
        transformers.Mask2FormerConfig(backbone_config=swin, num_labels=num_labels)
    ).eval()
    model = build_segmenter(model_config_from_hf(hf.config.to_dict())).eval()
    load_weights(model, convert_hf_state_dict(hf.state_dict()), "hf")  # strict: every key must match
    return hf, model


def time_pair(
    run_a: Callable[[], object], run_b: Callable[[], object], device: torch.device, iters: int, warmup: int
) -> tuple[float, float]:
    """Median ms of a and b, alternating a/b every iteration so drift affects both alike."""
    for _ in range(warmup):
        run_a()
        run_b()
    times_a, times_b = [], []
    for _ in range(iters):
        for run, times in ((run_a, times_a), (run_b, times_b)):
            sync(device)
            t0 = time.perf_counter()
            run()
            sync(device)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times_a), statistics.median(times_b)


def bench(hf, model, pixels: torch.Tensor, device: torch.device, dtype: torch.dtype | None, iters: int,
          warmup: int) -> dict:
    hf, model, pixels = hf.to(device), model.to(device), pixels.to(device)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else torch.autocast(
        device.type, enabled=False
    )

    def run_vidseg():
        with torch.inference_mode(), autocast:
            return model.forward_normalized(pixels)

    def run_hf():
        with torch.inference_mode(), autocast:
            return hf(pixel_values=pixels)

    ours, theirs = run_vidseg(), run_hf()
    diff_cls = (ours.class_logits.float() - theirs.class_queries_logits.float()).abs().max().item()
    diff_mask = (ours.mask_logits.float() - theirs.masks_queries_logits.float()).abs().max().item()
    ms_vidseg, ms_hf = time_pair(run_vidseg, run_hf, device, iters, warmup)
    return {
        "vidseg_ms": round(ms_vidseg, 2),
        "transformers_ms": round(ms_hf, 2),
        "ratio_vidseg_over_transformers": round(ms_vidseg / ms_hf, 3),
        "max_abs_diff_class_logits": diff_cls,
        "max_abs_diff_mask_logits": diff_mask,
    }


def breakdown(hf, model, pixels: torch.Tensor, iters: int, warmup: int) -> dict:
    """CPU ms per component (backbone, pixel decoder, decoder + heads), each fed the same inputs."""
    out: dict = {}
    with torch.inference_mode():
        hf_feats = hf.model.pixel_level_module.encoder(pixels).feature_maps
        feats = model.backbone(pixels)
        hf_pd = hf.model.pixel_level_module.decoder(hf_feats)
        pd = model.pixel_decoder(feats)
        parts = {
            "backbone": (lambda: model.backbone(pixels), lambda: hf.model.pixel_level_module.encoder(pixels)),
            "pixel_decoder": (
                lambda: model.pixel_decoder(feats),
                lambda: hf.model.pixel_level_module.decoder(hf_feats),
            ),
            "decoder_and_heads": (
                lambda: model.decode(pd),
                lambda: [
                    hf.class_predictor(h.transpose(0, 1))
                    for h in hf.model.transformer_module(
                        hf_pd.multi_scale_features, hf_pd.mask_features, output_hidden_states=True
                    ).intermediate_hidden_states
                ],
            ),
        }
        for name, (ours, theirs) in parts.items():
            a, b = time_pair(ours, theirs, torch.device("cpu"), iters, warmup)
            out[name] = {"vidseg_ms": round(a, 2), "transformers_ms": round(b, 2), "ratio": round(a / b, 3)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=int, default=384)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--backbone", choices=sorted(_SWIN), default="swin_t")
    p.add_argument("--num-labels", type=int, default=80)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument("--no-cpu", action="store_true", help="skip the CPU measurement")
    p.add_argument("--breakdown", action="store_true", help="also time each component on CPU")
    p.add_argument("--smoke", action="store_true", help="tiny input, one iteration (tests that the script runs)")
    args = p.parse_args()
    if args.smoke:
        args.height, args.width, args.iters, args.warmup = 64, 64, 1, 0
    if args.threads:
        torch.set_num_threads(args.threads)

    hf, model = build_pair(args.backbone, args.num_labels)
    pixels = torch.randn(1, 3, args.height, args.width, generator=torch.Generator().manual_seed(0))
    result: dict = {
        "input": [args.height, args.width],
        "backbone": args.backbone,
        "iters": args.iters,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if not args.no_cpu:
        result["cpu_fp32"] = bench(hf, model, pixels, torch.device("cpu"), None, args.iters, args.warmup)
    if args.breakdown:
        result["cpu_fp32_components"] = breakdown(hf.cpu(), model.cpu(), pixels, args.iters, args.warmup)
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        result["gpu"] = torch.cuda.get_device_name(gpu)
        result["gpu_fp32"] = bench(hf, model, pixels, gpu, None, args.iters * 4, args.warmup * 2)
        result["gpu_bf16"] = bench(hf, model, pixels, gpu, torch.bfloat16, args.iters * 4, args.warmup * 2)
    else:
        result["gpu"] = "not run: no CUDA device"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
