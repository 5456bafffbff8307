"""Modified beam search (runtime_py.beam_search) on the shipped trained
transducer, run through PyTorch step functions by the client's own Stream,
and the decoder start a signature declares."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from runtime_py.audio import read_wav
from runtime_py.beam_search import ModifiedBeamSearch
from runtime_py.decoding import TransducerGreedy, make_decoder
from runtime_py.signature import SignatureError
from runtime_py.stream import Model

SAMPLES = Path(__file__).resolve().parent.parent / "edge" / "checkpoints" / "samples"


@pytest.fixture(scope="module")
def transducer():
    from edge.checkpoint import load_or_init
    from edge.export import torch_runner

    model, info = load_or_init("transducer")
    model.eval()
    sig = model.signature()
    return sig, {g.name: torch_runner(model, g) for g in sig.graphs}, info["tokens"]


def _decode(sig, runs, tokens, audio, **search) -> tuple[list[int], str, list]:
    stream = Model(sig, runs, tokens, batch=False, **search).create_stream()
    stream.accept_waveform(sig.frontend.sample_rate, audio)
    stream.input_finished()
    outs = []
    while stream.is_ready():
        stream.step(stream._take_chunk())
        outs.append(stream.outputs[stream.output_name])
    return list(stream.tokens), stream.text, outs


def test_beam_search_on_the_trained_transducer(transducer):
    """Beam 4 reads the sample's words; beam 1 is greedy search with one symbol
    per frame, token for token, on every shipped sample (a trained model)."""
    sig, runs, tokens = transducer
    wavs = sorted(SAMPLES.glob("*.wav"))
    assert len(wavs) >= 3
    for wav in wavs:
        audio = read_wav(wav)[0]
        greedy1, _, _ = _decode(sig, runs, tokens, audio, max_symbols_per_frame=1)
        beam1, _, _ = _decode(sig, runs, tokens, audio, search="modified_beam_search", beam=1)
        assert beam1 == greedy1 and greedy1, wav.name
    _, text, _ = _decode(sig, runs, tokens, read_wav(SAMPLES / "one_two_three.wav")[0],
                         search="modified_beam_search", beam=4)
    assert text == "one two three"


def test_beam_search_streams_exactly(transducer):
    """Hypotheses carry over between chunks: chunk by chunk == all frames in one
    call, and reset() starts afresh."""
    sig, runs, tokens = transducer
    _, _, outs = _decode(sig, runs, tokens, read_wav(SAMPLES / "one_two_three.wav")[0])
    chunked = make_decoder(sig, runs, search="modified_beam_search", beam=4)
    for o in outs:
        chunked.accept(o)
    whole = make_decoder(sig, runs, search="modified_beam_search", beam=4)
    whole.accept(np.concatenate([np.asarray(o).reshape(-1, o.shape[-1]) for o in outs]))
    assert chunked.tokens == whole.tokens and chunked.frames == whole.frames and chunked.tokens
    assert len(chunked.hyps) > 1  # a real beam, not one path
    chunked.reset()
    assert chunked.tokens == [] and len(chunked.hyps) == 1


def test_decoder_starts_from_the_declared_context():
    """Greedy and beam search both feed the signature's decoder_start first, and
    again after reset; without one, all blanks."""
    seen = []

    def decoder(y):
        seen.append(tuple(y[0].tolist()))
        return np.zeros((1, 4), np.float32)

    def joiner(e, d):
        return np.array([[0.0, -1.0, -2.0]], np.float32)  # always blank

    for cls in (TransducerGreedy, ModifiedBeamSearch):
        seen.clear()
        dec = cls(decoder, joiner, 2, 0, start=[-1, 0])
        dec.accept(np.zeros((3, 4), np.float32))
        assert seen[0] == (-1, 0), cls.__name__
        seen.clear()
        dec.reset()
        dec.accept(np.zeros((1, 4), np.float32))
        assert seen[0] == (-1, 0) and dec.tokens == [], cls.__name__
        seen.clear()
        cls(decoder, joiner, 2, 0).accept(np.zeros((1, 4), np.float32))
        assert seen[0] == (0, 0)


def test_decoder_start_is_checked_and_serialised(transducer):
    sig = transducer[0]
    icefall = dataclasses.replace(sig, decoder_start=[-1, 0])
    assert icefall.decoder_start == (-1, 0) and icefall.start_context() == [-1, 0]
    assert type(sig).from_json(icefall.to_json()) == icefall
    assert "decoder_start" not in sig.to_dict() and sig.start_context() == [0, 0]
    for bad in ([0], [0, 0, 0], [-2, 0], [0, sig.vocab_size], ["a", 0]):
        with pytest.raises(SignatureError, match="decoder_start"):
            dataclasses.replace(sig, decoder_start=bad)
