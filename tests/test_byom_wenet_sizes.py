"""The WeNet-style conformer's two sizes: the toy of the default suite keeps
its graph and weights, and the deploy-size declaration (the one
docs/benchmarks.md times) has the sizes of WeNet's U2++ recipe it claims.
No export or build here: declaring the 34 M-parameter model takes ~2 s."""

from __future__ import annotations

import torch

from byom_wenet import DEPLOY, TOY, declare_wenet_style, declare_wenet_style_deploy


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _states(model) -> dict:
    return {s.name: tuple(s.shape) for s in model.signature().graph("encoder").states}


def test_the_toy_keeps_its_size():
    model = declare_wenet_style()
    # 191 776 before the size became a config (the bundles and tables of docs/exporting.md are of this model)
    assert _params(model) == 191_776
    assert _states(model) == {"att_cache": (2, 4, 8, 32), "cnn_cache": (2, 1, 64, 6), "offset": ()}
    sig = model.signature()
    assert (sig.chunk_frames, sig.shift_frames, sig.vocab_size, sig.frontend.num_mel_bins) == (19, 16, 32, 20)


def test_the_deploy_size_has_the_u2pp_recipe_sizes():
    torch.manual_seed(0)
    model = declare_wenet_style_deploy()
    sig = model.signature()
    # d_model 256, 12 blocks, ffn 2048: ~2.63 M a block, 31.6 M in all; conv front end 1.8 M; CTC 256 x 4233
    assert 33_000_000 <= _params(model) <= 36_000_000, _params(model)
    # 4 left chunks of 16 frames cached per block; kernel 8 leaves 7 frames of conv cache
    assert _states(model) == {"att_cache": (12, 4, 64, 128), "cnn_cache": (12, 1, 256, 7), "offset": ()}
    # 16 encoder frames a chunk at 4x subsampling: 64 feature frames a step, 67 with the front end's context
    assert (sig.chunk_frames, sig.shift_frames, sig.vocab_size, sig.frontend.num_mel_bins) == (67, 64, 4233, 80)
    assert (DEPLOY.d, DEPLOY.layers, DEPLOY.ffn, DEPLOY.heads) == (256, 12, 2048, 4) and TOY != DEPLOY
