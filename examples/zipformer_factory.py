"""icefall's streaming Zipformer2 (the PyPI `zipformer` package) as an
edge-speech model: copy this file, point it at your checkpoint, then

    edge-build --target android --model zipformer_factory.py:build

Install (the package pins torch<2.8 but its modules run on torch 2.13):
    pip install --no-deps zipformer && pip install kaldialign kaldifst simple-sentencepiece tensorboard

Environment: ZIPFORMER_CHECKPOINT=path/to/state_dict.pt (an AsrModel
state_dict, e.g. icefall's `checkpoint["model"]`), ZIPFORMER_TOKENS=tokens.txt
(default: the checkpoint's own "tokens", which edge-train saves).
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
from edge.checkpoint import SHIPPED_DIR  # noqa: E402
from edge.declaration import read_tokens  # noqa: E402

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


SHIPPED = SHIPPED_DIR / "zipformer"  # the demo checkpoint `build_small` loads (edge-train made it)


def _checkpoint(shipped: bool):
    """(weights path, tokens) to load: ZIPFORMER_CHECKPOINT (+ ZIPFORMER_TOKENS) first; then, for
    `shipped` sizes, the demo checkpoint when it is there; else (None, 500 placeholder tokens)."""
    path = os.environ.get("ZIPFORMER_CHECKPOINT")
    if path:
        return path, os.environ.get("ZIPFORMER_TOKENS") or _saved_tokens(path) or _placeholder_tokens()
    if shipped and (SHIPPED / "model.pt").is_file():
        return str(SHIPPED / "model.pt"), str(SHIPPED / "tokens.txt")
    return None, _placeholder_tokens()


def _saved_tokens(path: str) -> list | None:
    """The tokens an edge-train checkpoint saves beside its weights ({"model", "tokens", "meta"}): a
    checkpoint of a 47-token run must not be loaded into the 500 placeholder tokens' shapes."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    tokens = state.get("tokens") if isinstance(state, dict) else None
    return list(tokens) if tokens else None


def _placeholder_tokens(n: int = 500):
    return ["<blk>"] + [f"\u2581t{i}" for i in range(1, n)]


def _asr_model(size: dict, head: str, checkpoint: str | None, vocab_size: int) -> AsrModel:
    with torch.random.fork_rng():  # seeded initial weights: the same factory gives the same graphs
        torch.manual_seed(0)
        model = new_asr_model(size, head, vocab_size)
    if checkpoint:  # an AsrModel state_dict, bare or as icefall's / edge-train's {"model": state_dict, ...}
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state))
    else:  # a stack's layers are deep copies: perturb them, or int8 sees shared weights and skips them
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return model.eval()


def new_asr_model(size: dict, head: str = "transducer", vocab_size: int = 500) -> AsrModel:
    """The package's AsrModel with our streaming settings (causal, chunk 16, left context 64)."""
    return AsrModel(**size, causal=True, chunk_size=str(CHUNK), left_context_frames=str(LEFT),
                    vocab_size=vocab_size, use_transducer=head == "transducer", use_ctc=head == "ctc")


def build(size: dict = SHERPA_SIZE, head: str = "transducer", shipped: bool = False):
    checkpoint, tokens = _checkpoint(shipped and size == SMALL and head == "transducer")
    tokens = read_tokens(tokens)
    return declare(_asr_model(size, head, checkpoint, len(tokens)), head, tokens, trained=checkpoint is not None)


def declare(m: AsrModel, head: str, tokens: list, trained: bool):
    """The streaming model over m's modules (shared, not copied: edge-train validates through it)."""
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
                        tokens=tokens, context_size=m.decoder.context_size if m.decoder else 2, trained=trained)


def build_small():
    """About 3 M parameters: what the test suite builds. It loads the demo checkpoint trained on our
    corpus (edge/checkpoints/zipformer: 46 words and blank) when that is there; else random weights."""
    return build(SMALL, shipped=True)


def build_small_untrained():
    """build_small with seeded random weights and 500 placeholder tokens even where the demo
    checkpoint is shipped: for checks that need a model emitting tokens on most frames."""
    return build(SMALL)


def build_small_ctc():
    return build(SMALL, head="ctc")


def trainable_small(tokens):
    """SMALL in training form for `edge-train --model examples/zipformer_factory.py:trainable_small`
    (docs/accuracy.md): the package's encoder, decoder and joiner, trained with edge-train's RNN-T
    loss (its own training forward needs k2). `build_small` loads what it saves."""
    from edge.training.external import Trainable, TrainableConfig

    with torch.random.fork_rng():  # the same initial weights for the same factory
        torch.manual_seed(0)
        m = new_asr_model(SMALL, "transducer", len(tokens))

    def decoder(ctx):  # [B, U+1, C] token contexts -> [B, U+1, J], as the streaming decoder step computes it
        b, u1, c = ctx.shape
        return m.joiner.decoder_proj(m.decoder(ctx.reshape(b * u1, c), need_pad=False)).reshape(b, u1, -1)

    config = TrainableConfig(hidden=max(int(d) for d in SMALL["encoder_dim"].split(",")),
                             context_size=m.decoder.context_size, blank_id=m.decoder.blank_id, size=SMALL)
    return Trainable(config, m, encode=m.forward_encoder, encoder_proj=m.joiner.encoder_proj, decoder=decoder,
                     joiner=lambda e, d: m.joiner(e, d, project_input=False),
                     streaming=lambda: declare(m, "transducer", list(tokens), trained=True),
                     on_step=lambda step: _set_batch_count(m, step * BATCH_COUNT_PER_STEP))


# The package's regularisation (dropout, layer skipping, balancer limits) follows ScheduledFloat
# schedules over icefall's "batch count", which end by 20 000 batches of its 100k+ step runs. A run
# here is a few thousand steps: count 10 per step, so they end by step 2 000 (about 4 epochs).
BATCH_COUNT_PER_STEP = 10


def _set_batch_count(model, count: float) -> None:
    for module in model.modules():  # as icefall's set_batch_count
        if hasattr(module, "batch_count"):
            module.batch_count = count
