"""Segments: sparse-product sums and gathers equal index_add / indexing, with exact first and second derivatives."""

import pytest
import torch

from se3mol.nn.layers import Segments, scatter_sum


@pytest.fixture
def seg():
    g = torch.Generator().manual_seed(0)
    index = torch.randint(0, 7, (40,), generator=g)  # unsorted, with empty bins (size 9)
    return Segments(index, 9)


def test_sum_and_gather_equal_index_add_and_indexing(seg):
    src = torch.randn(40, 3, 2, dtype=torch.float64)
    ref = torch.zeros(9, 3, 2, dtype=torch.float64).index_add_(0, seg.index, src)
    assert torch.allclose(seg.sum(src), ref, atol=1e-12)
    assert torch.equal(seg.sum(src)[7:], torch.zeros(2, 3, 2, dtype=torch.float64))  # empty bins are 0
    x = torch.randn(9, 4)
    assert torch.equal(seg.gather(x), x[seg.index])
    assert torch.allclose(scatter_sum(src.float(), seg.index, 9), ref.float(), atol=1e-5)


def test_first_and_second_derivatives(seg):
    src = torch.randn(40, 3, dtype=torch.float64, requires_grad=True)
    x = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(seg.sum, (src,))
    assert torch.autograd.gradgradcheck(lambda s: seg.sum(s) ** 2, (src,))
    assert torch.autograd.gradcheck(seg.gather, (x,))
    assert torch.autograd.gradgradcheck(lambda t: seg.gather(t) ** 2, (x,))


def test_other_dtypes_fall_back_and_autocast_keeps_the_sum_exact(seg):
    src = torch.randn(40, 5)
    ref = torch.zeros(9, 5).index_add_(0, seg.index, src)
    half = seg.sum(src.bfloat16())  # no sparse bfloat16 product on the CPU: index_add_
    assert half.dtype == torch.bfloat16 and torch.allclose(half.float(), ref, atol=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.allclose(seg.sum(src), ref, atol=1e-5)  # float32 in, float32 sum out


def test_no_rows_gives_zeros_and_empty_gradients():
    seg = Segments(torch.zeros(0, dtype=torch.long), 3)  # e.g. a batch of lone atoms: no edges
    src = torch.zeros(0, 4, requires_grad=True)
    out = seg.sum(src)
    assert out.shape == (3, 4) and not out.any()
    out.sum().backward()
    assert src.grad.shape == (0, 4)
    x = torch.randn(3, 4, requires_grad=True)
    g = seg.gather(x)
    assert g.shape == (0, 4)
    g.sum().backward()
    assert not x.grad.any()
