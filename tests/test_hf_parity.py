"""Parity with `transformers`' Mask2Former: converted weights give the same logits (dev extra)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from vidseg.cli import main  # noqa: E402
from vidseg.config import BackboneConfig, ModelConfig  # noqa: E402
from vidseg.errors import CheckpointError  # noqa: E402
from vidseg.io.checkpoint import load_weights  # noqa: E402
from vidseg.models.backbones.base import RES_NAMES  # noqa: E402
from vidseg.models.backbones.swin import SwinTransformer  # noqa: E402
from vidseg.models.convert import (  # noqa: E402
    convert_hf_state_dict,
    model_config_from_hf,
)
from vidseg.models.model import load_model  # noqa: E402
from vidseg.models.segmenter import build_segmenter, segmenter_from_backbone  # noqa: E402

TOL = 1e-4
SWIN = dict(embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4], window_size=4)


def _hf_model(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    swin = transformers.SwinConfig(
        **SWIN, out_features=["stage1", "stage2", "stage3", "stage4"], drop_path_rate=0.0
    )
    args = dict(
        backbone_config=swin, feature_size=64, mask_feature_size=64, hidden_dim=64, encoder_feedforward_dim=96,
        dim_feedforward=96, encoder_layers=2, decoder_layers=5, num_attention_heads=4, num_queries=12,
        num_labels=7,
    )
    args.update(overrides)
    return transformers.Mask2FormerForUniversalSegmentation(transformers.Mask2FormerConfig(**args)).eval()


def _hf_predictions(hf, pixels):
    with torch.no_grad():
        out = hf(pixel_values=pixels, output_auxiliary_logits=True)
    layers = [(a["class_queries_logits"], a["masks_queries_logits"]) for a in out.auxiliary_logits]
    return layers + [(out.class_queries_logits, out.masks_queries_logits)], out


def _all_layers(model, run):
    """Our predictions of every layer, `run()` being the model's forward: eval mode returns only the last,
    training mode (no dropout, so the same values) all of them; the last must be the same either way."""
    with torch.no_grad():
        final = run()
        model.train()
        ours = run()
    model.eval()
    assert final.aux == [] and torch.equal(final.class_logits, ours.class_logits)
    assert (final.mask_logits - ours.mask_logits).abs().max() < 1e-5
    return ours


def _assert_same_predictions(ours, theirs):
    preds = [*ours.aux, ours]
    assert len(preds) == len(theirs)
    for i, (p, (cls, mask)) in enumerate(zip(preds, theirs)):
        assert p.class_logits.shape == cls.shape and p.mask_logits.shape == mask.shape, i
        assert (p.class_logits - cls).abs().max() < TOL, f"class logits of layer {i}"
        assert (p.mask_logits - mask).abs().max() < TOL, f"mask logits of layer {i}"


def _vidseg_model(hf) -> torch.nn.Module:
    hf_cfg = hf.config.to_dict()
    cfg = model_config_from_hf(hf_cfg, backbone_name="swin_t")  # name unused: the backbone is built below
    swin = SwinTransformer(SWIN["embed_dim"], tuple(SWIN["depths"]), tuple(SWIN["num_heads"]),
                           SWIN["window_size"], drop_path_rate=0.0)
    model = segmenter_from_backbone(swin, cfg).eval()
    load_weights(model, convert_hf_state_dict(hf.state_dict()), "hf")
    return model


def test_full_model_matches_transformers():
    hf = _hf_model()
    model = _vidseg_model(hf)
    torch.manual_seed(1)
    images = torch.rand(2, 3, 96, 160) * 255  # multiples of 32: no padding on either side
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # the HF image processor's constants
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    theirs, hf_out = _hf_predictions(hf, (images / 255 - mean) / std)
    ours = _all_layers(model, lambda: model(images))  # 0-255 in, normalised inside (ImageNet constants)
    _assert_same_predictions(ours, theirs)
    assert (ours.raw_queries - hf_out.transformer_decoder_last_hidden_state).abs().max() < TOL
    # The masks really gate the cross-attention (neither all open nor all closed), so masking is tested.
    attend = model.decoder.attention_mask(ours.aux[1].mask_logits, ours.memory[1].shape[-2:])
    assert 0.05 < attend.float().mean() < 0.95


def test_pixel_decoder_and_decoder_match_given_backbone_features():
    # Different sizes (feature 32 -> hidden 64 needs the decoder input projection) and odd map sizes.
    hf = _hf_model(seed=2, feature_size=32, mask_feature_size=32, enforce_input_projection=True)
    cfg = model_config_from_hf(hf.config.to_dict(), backbone_name="tiny_cnn")
    swin = SwinTransformer(SWIN["embed_dim"], tuple(SWIN["depths"]), tuple(SWIN["num_heads"]),
                           SWIN["window_size"], drop_path_rate=0.0)
    model = segmenter_from_backbone(swin, cfg).eval()
    state = convert_hf_state_dict(hf.state_dict(), include_backbone=False)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert unexpected == [] and all(k.startswith("backbone.") for k in missing)
    pixels = torch.randn(1, 3, 100, 136)  # res5 4x5, res4 7x9, res3 13x17
    theirs, _ = _hf_predictions(hf, pixels)
    with torch.no_grad():
        feats = hf.model.pixel_level_module.encoder(pixels).feature_maps
    ours = _all_layers(model, lambda: model.decode(model.pixel_decoder(dict(zip(RES_NAMES, feats)))))
    _assert_same_predictions(ours, theirs)


def test_converter_rejects_what_it_cannot_represent():
    hf = _hf_model()
    state = dict(hf.state_dict())
    with pytest.raises(CheckpointError, match="unexpected keys"):
        convert_hf_state_dict({**state, "model.something_new.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="no pixel decoder"):
        convert_hf_state_dict({k: v for k, v in state.items() if not k.startswith("class_predictor")})
    cfg = hf.config.to_dict()
    with pytest.raises(CheckpointError, match="is not a vidseg backbone"):
        model_config_from_hf(cfg)  # this tiny Swin is no Swin-T/S/B/L
    with pytest.raises(CheckpointError, match="common_stride"):
        model_config_from_hf({**cfg, "common_stride": 8}, backbone_name="swin_t")
    with pytest.raises(CheckpointError, match="enforce_input_projection"):
        model_config_from_hf({**cfg, "enforce_input_projection": True}, backbone_name="swin_t")
    # Shape mismatches name the key.
    model = build_segmenter(ModelConfig(backbone=BackboneConfig(name="tiny_cnn")))  # hidden 256, not 64
    with pytest.raises(CheckpointError, match="shape mismatch|missing"):
        load_weights(model, convert_hf_state_dict(state, include_backbone=False), "hf")


def test_convert_weights_cli_on_a_saved_checkpoint(tmp_path, capsys):
    # A real Swin-T backbone (the converter maps HF Swin configs to swin_t..swin_l); small heads.
    torch.manual_seed(3)
    swin = transformers.SwinConfig(
        embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7,
        out_features=["stage1", "stage2", "stage3", "stage4"], drop_path_rate=0.0,
    )
    hf = transformers.Mask2FormerForUniversalSegmentation(
        transformers.Mask2FormerConfig(
            backbone_config=swin, feature_size=32, mask_feature_size=32, hidden_dim=32,
            encoder_feedforward_dim=32, dim_feedforward=32, encoder_layers=1, decoder_layers=3,
            num_attention_heads=2, num_queries=4, num_labels=3,
        )
    ).eval()
    src = tmp_path / "hf"
    hf.save_pretrained(src)
    dst = tmp_path / "out" / "m2f"
    assert main(["convert-weights", "--from", "hf", str(src), "--out", str(dst)]) == 0
    assert str(dst) in capsys.readouterr().out
    loaded = load_model(dst)
    cfg = loaded.config.model
    assert loaded.stage == "segmenter" and cfg.backbone.name == "swin_t" and cfg.decoder.num_layers == 2
    model = loaded.model.segmenter
    pixels = torch.randn(1, 3, 64, 96)
    theirs, _ = _hf_predictions(hf, pixels)
    ours = _all_layers(model, lambda: model.forward_normalized(pixels))
    _assert_same_predictions(ours, theirs)
    # User errors: one line, exit code 2.
    assert main(["convert-weights", "--from", "hf", str(tmp_path / "nope"), "--out", str(dst)]) == 2
    assert "not a directory" in capsys.readouterr().err
    (tmp_path / "taken").write_text("x")
    assert main(["convert-weights", "--from", "hf", str(src), "--out", str(tmp_path / "taken")]) == 2
    assert "not a vidseg checkpoint" in capsys.readouterr().err
