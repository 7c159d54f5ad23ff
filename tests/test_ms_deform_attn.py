"""Deformable attention: the embedding_bag path vs a naive per-point reference, and its coordinate convention."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from torch import Tensor

from vidseg.models.ops.ms_deform_attn import MultiScaleDeformableAttention, ms_deform_attn

SHAPES = [(7, 5), (4, 9), (3, 3)]  # odd, non-square levels


def ms_deform_attn_naive(
    value: Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Reference for `ms_deform_attn`: explicit bilinear interpolation of every sampling point, level by
    level and corner by corner (gathers, masks and weights by hand). Same arguments and result."""
    batch, _, heads, head_dim = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    values = value.split([h * w for h, w in spatial_shapes], dim=1)
    out = value.new_zeros(batch, num_queries, heads, head_dim)
    for level, (h, w) in enumerate(spatial_shapes):
        v = values[level].permute(0, 2, 1, 3)  # [B, M, HW, D]
        loc = sampling_locations[:, :, :, level].permute(0, 2, 1, 3, 4)  # [B, M, N_q, P, 2]
        att = attention_weights[:, :, :, level].permute(0, 2, 1, 3)  # [B, M, N_q, P]
        # Continuous pixel coordinates: pixel (i, j) has its centre at (j + 0.5, i + 0.5) / (W, H).
        x = loc[..., 0] * w - 0.5
        y = loc[..., 1] * h - 0.5
        x0 = torch.floor(x)
        y0 = torch.floor(y)
        acc = value.new_zeros(batch, heads, num_queries, num_points, head_dim)
        for dx in (0, 1):
            for dy in (0, 1):
                xi = x0 + dx
                yi = y0 + dy
                weight = (1 - (x - xi).abs()) * (1 - (y - yi).abs())
                inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)
                index = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long()  # [B, M, N_q, P]
                gathered = torch.gather(
                    v, 2, index.reshape(batch, heads, -1, 1).expand(-1, -1, -1, head_dim)
                ).view(batch, heads, num_queries, num_points, head_dim)
                acc = acc + gathered * (weight * inside)[..., None]
        out = out + (acc * att[..., None]).sum(3).permute(0, 2, 1, 3)
    return out.reshape(batch, num_queries, heads * head_dim)


def _random_inputs(gen: torch.Generator, batch=2, queries=11, heads=4, head_dim=8, points=3, shapes=SHAPES):
    n = sum(h * w for h, w in shapes)
    value = torch.randn(batch, n, heads, head_dim, generator=gen, dtype=torch.float64)
    # Locations partly outside [0, 1] so the zero padding at the borders is exercised.
    loc = torch.rand(batch, queries, heads, len(shapes), points, 2, generator=gen, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(batch, queries, heads, len(shapes) * points, generator=gen, dtype=torch.float64)
    weights = weights.softmax(-1).view(batch, queries, heads, len(shapes), points)
    return value, loc, weights


def test_fast_path_matches_naive_reference():
    gen = torch.Generator().manual_seed(0)
    value, loc, weights = _random_inputs(gen)
    fast = ms_deform_attn(value.float(), SHAPES, loc.float(), weights.float())
    ref = ms_deform_attn_naive(value, SHAPES, loc, weights)
    assert fast.shape == (2, 11, 4 * 8)
    assert torch.allclose(fast.double(), ref, atol=1e-5, rtol=0)


def test_fast_path_gradients_match_naive_reference():
    # Through the values, the sampling positions (bilinear weights) and the attention weights.
    value, loc, weights = _random_inputs(torch.Generator().manual_seed(4))
    inputs = [t.requires_grad_(True) for t in (value, loc, weights)]
    fast = torch.autograd.grad(ms_deform_attn(inputs[0], SHAPES, inputs[1], inputs[2]).square().sum(), inputs)
    ref = torch.autograd.grad(ms_deform_attn_naive(inputs[0], SHAPES, inputs[1], inputs[2]).square().sum(), inputs)
    for f, r in zip(fast, ref):
        assert torch.allclose(f, r, atol=1e-10, rtol=0)


def test_nan_location_gives_nan_not_an_index_error():
    value, loc, weights = _random_inputs(torch.Generator().manual_seed(5))
    loc[0, 3, 1, 2, 0] = float("nan")
    loc[1, 0, 0, 0, 1, 0] = float("inf")
    out = ms_deform_attn(value, SHAPES, loc, weights)
    assert out[0, 3, 8:16].isnan().all()  # head 1 of query 3
    assert out[0, :3].isfinite().all()


def test_naive_reference_follows_pixel_centre_convention():
    # One level 2x3, one head of width 1, value = pixel index; single point with weight 1.
    shapes = [(2, 3)]
    value = torch.arange(6, dtype=torch.float64).view(1, 6, 1, 1)

    def sample(x: float, y: float) -> float:
        loc = torch.tensor([x, y], dtype=torch.float64).view(1, 1, 1, 1, 1, 2)
        w = torch.ones(1, 1, 1, 1, 1, dtype=torch.float64)
        naive = ms_deform_attn_naive(value, shapes, loc, w).item()
        fast = ms_deform_attn(value, shapes, loc, w).item()
        assert naive == pytest.approx(fast, abs=1e-12)
        return naive

    assert sample(0.5 / 3, 0.5 / 2) == pytest.approx(0.0)  # centre of pixel (0, 0)
    assert sample(2.5 / 3, 1.5 / 2) == pytest.approx(5.0)  # centre of pixel (1, 2)
    assert sample(1.0 / 3, 0.5 / 2) == pytest.approx(0.5)  # halfway between pixels 0 and 1
    assert sample(3.0 / 3, 0.5 / 2) == pytest.approx(1.0)  # right edge: half of pixel 2, half zero padding
    assert sample(1.5, 0.5) == pytest.approx(0.0)  # far outside


def _module_inputs(gen: torch.Generator, batch=2, queries=13, dim=32):
    n = sum(h * w for h, w in SHAPES)
    query = torch.randn(batch, queries, dim, generator=gen)
    value = torch.randn(batch, n, dim, generator=gen)
    ref = torch.rand(batch, queries, len(SHAPES), 2, generator=gen)
    return query, value, ref


def _module_reference(attn: MultiScaleDeformableAttention, query, ref, value, padding_mask):
    """The module's math spelled out with the naive sampler, in float64."""
    a = attn.double()
    b, nq, c = query.shape
    m, lv, p = a.num_heads, a.num_levels, a.num_points
    v = a.value_proj(value.double()).masked_fill(padding_mask[..., None], 0.0).view(b, -1, m, c // m)
    off = a.sampling_offsets(query.double()).view(b, nq, m, lv, p, 2)
    w = a.attention_weights(query.double()).view(b, nq, m, lv * p).softmax(-1).view(b, nq, m, lv, p)
    norm = torch.tensor([[wd, h] for h, wd in SHAPES], dtype=torch.float64)
    loc = ref.double()[:, :, None, :, None, :] + off / norm[None, None, None, :, None, :]
    return a.output_proj(ms_deform_attn_naive(v, SHAPES, loc, w))


def test_module_matches_reference_with_padding_mask():
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    attn = MultiScaleDeformableAttention(32, num_heads=4, num_levels=3, num_points=4)
    # The default init has zero offset/attention weights; randomise so queries actually matter.
    for p in attn.parameters():
        p.data.normal_(0, 0.3, generator=gen)
    query, value, ref = _module_inputs(gen)
    padding = torch.zeros(2, value.shape[1], dtype=torch.bool)
    padding[0, -5:] = True  # bottom-right of the finest level in sample 0
    padding[1, :6] = True
    out = attn(query, ref, value, SHAPES, padding)
    expected = _module_reference(attn, query, ref, value, padding)
    assert torch.allclose(out.double(), expected, atol=1e-5, rtol=0)
    attn.float()
    # Padded positions carry no information: changing them changes nothing.
    value2 = value.clone()
    value2[padding] = 100.0
    assert torch.allclose(attn(query, ref, value2, SHAPES, padding), out, atol=1e-6)
    # ...while without the mask it does.
    assert not torch.allclose(attn(query, ref, value2, SHAPES), out, atol=1e-3)


def test_module_gradients_reach_all_parameters():
    gen = torch.Generator().manual_seed(2)
    attn = MultiScaleDeformableAttention(32, num_heads=4, num_levels=3, num_points=2)
    # Non-zero offset/attention weights (the init zeroes them) so the query steers the sampling.
    with torch.no_grad():
        attn.sampling_offsets.weight.normal_(0, 0.1, generator=gen)
        attn.attention_weights.weight.normal_(0, 0.1, generator=gen)
    query, value, ref = _module_inputs(gen)
    query.requires_grad_(True)
    value.requires_grad_(True)
    attn(query, ref, value, SHAPES).square().sum().backward()
    for name, p in attn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    # Gradients flow through the bilinear sampling positions and the sampled values.
    assert query.grad is not None and query.grad.abs().sum() > 0
    assert value.grad is not None and value.grad.abs().sum() > 0


def test_spatial_shapes_must_match_value_length():
    attn = MultiScaleDeformableAttention(32, num_heads=4, num_levels=3, num_points=2)
    query, value, ref = _module_inputs(torch.Generator().manual_seed(3))
    with pytest.raises(ValueError, match="do not add up"):
        attn(query, ref, value[:, :-1], SHAPES)
