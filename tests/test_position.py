"""Sine position embeddings and the MLP."""

from __future__ import annotations

import math

import pytest
import torch

from vidseg.models.position import MLP, box_sine_embedding, sine_position_embedding_2d


def test_grid_embedding_values_follow_the_formula():
    h, w, f = 3, 5, 8
    pe = sine_position_embedding_2d(h, w, f)
    assert pe.shape == (1, 2 * f, h, w)
    i, j = 1, 3  # row 2, column 4 (1-based positions)
    y = (i + 1) / (h + 1e-6) * 2 * math.pi
    x = (j + 1) / (w + 1e-6) * 2 * math.pi
    for k in range(f):
        t = 10000 ** (2 * (k // 2) / f)
        fn = math.sin if k % 2 == 0 else math.cos
        assert pe[0, k, i, j].item() == pytest.approx(fn(y / t), abs=1e-5)  # y channels first
        assert pe[0, f + k, i, j].item() == pytest.approx(fn(x / t), abs=1e-5)
    # Rows share the x half, columns share the y half.
    assert torch.equal(pe[0, f:, 0], pe[0, f:, 2])
    assert torch.equal(pe[0, :f, :, 0], pe[0, :f, :, 4])


def test_grid_embedding_dtype():
    assert sine_position_embedding_2d(2, 2, 4, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_box_embedding_order_and_values():
    boxes = torch.tensor([[0.2, 0.7, 0.1, 0.4]])  # cx, cy, w, h
    emb = box_sine_embedding(boxes, num_feats=4)
    assert emb.shape == (1, 16)
    # Blocks are (y, x, w, h); first channel of each block is sin(2*pi*v).
    for block, v in enumerate([0.7, 0.2, 0.1, 0.4]):
        assert emb[0, 4 * block].item() == pytest.approx(math.sin(2 * math.pi * v), abs=1e-6)
        assert emb[0, 4 * block + 1].item() == pytest.approx(math.cos(2 * math.pi * v), abs=1e-6)
    points = box_sine_embedding(boxes[:, :2], num_feats=4)
    assert torch.equal(points, emb[:, :8])
    with pytest.raises(ValueError):
        box_sine_embedding(torch.zeros(3))


def test_mlp_structure():
    mlp = MLP(4, 8, 3, num_layers=3)
    assert [layer.out_features for layer in mlp.layers] == [8, 8, 3]
    x = torch.randn(2, 5, 4)
    expected = mlp.layers[2](torch.relu(mlp.layers[1](torch.relu(mlp.layers[0](x)))))
    assert torch.allclose(mlp(x), expected)
    with pytest.raises(ValueError):
        MLP(4, 8, 3, num_layers=0)
