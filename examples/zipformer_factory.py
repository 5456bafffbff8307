"""icefall's streaming Zipformer2 (the PyPI `zipformer` package) as an
edge-speech model: copy this file, point it at your checkpoint, then

    edge-build --target android --model zipformer_factory.py:build

Install (the package pins torch<2.8 but its modules run on torch 2.13):
    pip install --no-deps zipformer && pip install kaldialign kaldifst simple-sentencepiece tensorboard

Environment: ZIPFORMER_CHECKPOINT=path/to/state_dict.pt (an AsrModel
state_dict, e.g. icefall's `checkpoint["model"]`), ZIPFORMER_TOKENS=tokens.txt.
Without them the weights are seeded random ones and the bundle says UNTRAINED.
"""

import os
import sys
import types

import torch

# The package imports atdataset and torchaudio at the top, but the model does
# not use them, and torchaudio's wheels do not load with torch 2.13.
for _name in ("atdataset", "torchaudio"):
    if _name not in sys.modules:
        _stub = sys.modules[_name] = types.ModuleType(_name)
        _stub.fix_random_seed = _stub.SpecAugment = _stub.time_warp = None

from zipformer.modules.model import AsrModel, OnnxStreamingEncoderWrapper  # noqa: E402

import edge  # noqa: E402

# icefall's "small" Zipformer2 (the size of sherpa-onnx's streaming 20 M models): chunk 16 frames
# after the 2x embed (320 ms), left context 64; about 23 M parameters with a 500-token vocabulary.
SHERPA_SIZE = dict(downsampling_factor="1,2,4,8,4,2", num_encoder_layers="2,2,2,2,2,2",
                   encoder_dim="192,256,256,256,256,256", encoder_unmasked_dim="192,192,192,192,192,192",
                   feedforward_dim="512,768,768,768,768,768", num_heads="4,4,4,8,4,4",
                   cnn_module_kernel="31,31,15,15,15,31", query_head_dim="32", value_head_dim="12",
                   pos_head_dim="4", pos_dim=48, decoder_dim=512, joiner_dim=512)
SMALL = dict(downsampling_factor="1,2,4,8,4,2", num_encoder_layers="1,1,1,1,1,1",
             encoder_dim="64,96,128,160,128,96", encoder_unmasked_dim="64,64,96,96,96,64",
             feedforward_dim="128,192,256,320,256,192", num_heads="2,2,2,4,2,2",
             cnn_module_kernel="31,31,15,15,15,31", query_head_dim="16", value_head_dim="12", pos_head_dim="4",
             pos_dim=48, decoder_dim=256, joiner_dim=256)
CHUNK, LEFT = 16, 64  # frames at 50 Hz (after encoder_embed)
STATE_KINDS = ("cached_key", "cached_nonlin_attn", "cached_val1", "cached_val2", "cached_conv1", "cached_conv2")


def _asr_model(size: dict, head: str) -> AsrModel:
    with torch.random.fork_rng():  # seeded initial weights: the same factory gives the same graphs
        torch.manual_seed(0)
        model = _new_model(size, head)
    return model


def _new_model(size: dict, head: str) -> AsrModel:
    model = AsrModel(**size, causal=True, chunk_size=str(CHUNK), left_context_frames=str(LEFT), vocab_size=500,
                     use_transducer=head == "transducer", use_ctc=head == "ctc")
    path = os.environ.get("ZIPFORMER_CHECKPOINT")
    if path:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    else:  # a stack's layers are deep copies: perturb them, or int8 sees shared weights and skips them
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _tokens(n: int = 500):
    return os.environ.get("ZIPFORMER_TOKENS") or ["<blk>"] + [f"\u2581t{i}" for i in range(1, n)]


def build(size: dict = SHERPA_SIZE, head: str = "transducer"):
    m = _asr_model(size, head)
    proj = m.joiner.encoder_proj if head == "transducer" else m.ctc_output
    wrapper = OnnxStreamingEncoderWrapper(m.encoder, m.encoder_embed, proj)
    n = len(wrapper.get_init_states(1)) - 2
    names = [f"{STATE_KINDS[i % 6]}_{i // 6}" for i in range(n)] + ["embed_states", "processed_lens"]
    encoder = edge.Step(wrapper, states=wrapper.get_init_states,  # fn(batch): batch axes are inferred
                        names=names, returns=("encoder_out" if head == "transducer" else "log_probs", edge.STATES),
                        counters={"processed_lens": LEFT})  # only compared with the left context: saturate there
    heads = {}
    if head == "transducer":  # icefall trains (and sherpa-onnx decodes) from [-1, blank]: -1 embeds to zeros
        heads["decoder_start"] = [-1] * (m.decoder.context_size - 1) + [m.decoder.blank_id]
        heads.update(
            decoder=edge.Step(lambda y: m.joiner.decoder_proj(m.decoder(y, need_pad=False)),
                              args=(edge.TOKENS,), returns="decoder_out"),
            joiner=edge.Step(lambda e, d: m.joiner(e, d, project_input=False),
                             args=(edge.ENCODER_OUT, edge.DECODER_OUT), returns="logits"))
    return edge.declare("zipformer" if head == "transducer" else "zipformer-ctc", encoder=encoder, **heads,
                        head=head, chunk=2 * CHUNK + 13, shift=2 * CHUNK,  # 13 frames: the embed's right context
                        # icefall (lhotse) computes fbank on float samples in [-1, 1], not int16-scaled ones:
                        # sherpa-onnx's normalize_samples=True. A real checkpoint needs the same here.
                        frontend=edge.FrontendSpec(sample_scale=1.0),
                        tokens=_tokens(), context_size=m.decoder.context_size if m.decoder else 2,
                        trained=bool(os.environ.get("ZIPFORMER_CHECKPOINT")))


def build_small():
    """About 3 M parameters: what the test suite builds."""
    return build(SMALL)


def build_small_ctc():
    return build(SMALL, head="ctc")
