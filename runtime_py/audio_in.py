"""Audio-in bundles: the frontend inside the encoder graph (torch-free part).

An audio-in encoder takes `samples_per_call` PCM samples in [-1, 1] per call
(one encoder shift: shift_frames * frame_shift) and computes the fbank/MFCC
frames itself (edge/audio_in.py builds the graph). Its signature says so:
the frontend is kind "raw" (samples, sample_scale 1: the graph scales them),
chunk_frames = shift_frames = samples_per_call, and `extra["audio_in"]` holds
the in-graph frontend's settings and the layout below, so a client knows not
to compute features and how long the graph lags.

Layout (frames numbered from the stream's start; S = shift_frames, C =
chunk_frames of the features-in model, N = S * frame_shift samples):
- A frame needs samples up to its window's end, so call k can complete only
  frames up to (k+1)S - 1 - lag. Call k computes the S frames
  kS - lag .. (k+1)S - 1 - lag, from `history_samples` samples kept from the
  previous call (a state) and the call's N samples.
- The encoder step j needs frames jS .. jS + C - 1: it runs at call
  k = j + warmup_calls, on `history_frames` frames kept from earlier calls (a
  state) and the S new ones. So the first `warmup_calls` calls of an
  utterance produce no encoder step: the graph leaves the encoder's states at
  their initial values (a call counter state gates them) and the client
  ignores those calls' outputs.
- With snip_edges=False the first frames' windows reach before sample 0;
  kaldi mirrors them (-1 -> 0, -2 -> 1, ...). The graph does the same on the
  first call (the counter is 0), so its frames equal runtime_py.frontend's
  features of the whole signal.
- At the end the client appends zeros (`tail_padding`): the features-in
  client's tail, rounded up to whole calls, plus the warmup calls.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .frontend import first_sample_of_frame, num_frames
from .signature import FrontendSpec, Signature

AUDIO_IN_KEY = "audio_in"  # the key in Signature.extra
STATE_SAMPLES = "audio_samples"  # [1, history_samples]: samples the next call's first frames need
STATE_FRAMES = "audio_frames"  # [1, history_frames, dim]: frames the next encoder chunk needs
STATE_CALLS = "audio_calls"  # [1]: calls since the utterance began, saturating at warmup_calls
# The in-graph frontend's module name in the encoder (edge/audio_in.py): its
# ONNX nodes are named "/fbank/...", and quantisers leave them in float.
FRONTEND_SCOPE = "fbank"
# ... and its traced variables are named fbank_*: a CoreML fp16 model keeps
# the ops named so, and those reading them, in float32 (targets/coreml.py).
FRONTEND_OP_PREFIX = "fbank_"
INPUT_NAME = "audio"  # the encoder's input: [1, samples_per_call, 1] float32 in [-1, 1]


@dataclass(frozen=True)
class AudioInPlan:
    frontend: FrontendSpec  # the in-graph features (the features-in model's frontend)
    chunk_frames: int  # feature frames per encoder step (C)
    shift_frames: int  # feature frames consumed per step (S)
    samples_per_call: int  # N = S * frame_shift
    lag_frames: int  # frames a call cannot complete yet
    warmup_calls: int  # calls before the first encoder step
    history_samples: int  # samples kept from one call for the next
    history_frames: int  # feature frames kept for the next chunk

    @classmethod
    def for_features(cls, frontend: FrontendSpec, chunk_frames: int, shift_frames: int) -> "AudioInPlan":
        if frontend.kind not in ("fbank", "mfcc"):
            raise ValueError(f"audio-in needs an fbank or mfcc frontend to put in the graph; this model's is "
                             f"{frontend.kind!r} (a raw-sample model already takes audio)")
        if frontend.dither != 0.0:
            raise ValueError(f"audio-in needs dither=0 (a graph is deterministic); this frontend has "
                             f"dither={frontend.dither}")
        shift, n = frontend.frame_shift, shift_frames * frontend.frame_shift
        # first_sample_of_frame is f * shift + constant: one call's offsets hold for every call
        lag = 0
        while first_sample_of_frame(shift_frames - 1 - lag, frontend) + frontend.frame_length > n:
            lag += 1
        warmup = -(-(chunk_frames + lag) // shift_frames) - 1  # smallest D with (D+1)S >= C + lag
        history_samples = -first_sample_of_frame(-lag, frontend)
        if not 0 <= history_samples <= n:
            raise ValueError(f"audio-in: a call of {n} samples is shorter than one frame's window "
                             f"({frontend.frame_length}); use a longer shift")
        return cls(frontend, chunk_frames, shift_frames, n, lag, warmup, history_samples,
                   warmup * shift_frames - lag)

    @classmethod
    def of(cls, signature: Signature) -> "AudioInPlan | None":
        """The plan an audio-in signature records; None for a features-in one."""
        rec = (signature.extra or {}).get(AUDIO_IN_KEY)
        if not rec:
            return None
        plan = cls.for_features(FrontendSpec(**rec["frontend"]), rec["chunk_frames"], rec["shift_frames"])
        if plan.record() != rec:
            raise ValueError(f"signature extra[{AUDIO_IN_KEY!r}] does not match its own frontend and chunk: "
                             f"recorded {rec}, derived {plan.record()}")
        return plan

    def record(self) -> dict:
        return {**asdict(self), "frontend": asdict(self.frontend)}

    def first_frame(self, call: int) -> int:
        """The first frame call `call` computes (negative: not a frame of the stream)."""
        return call * self.shift_frames - self.lag_frames

    def tail_padding(self, num_samples: int, features_pad: int) -> int:
        """Zeros after an utterance of `num_samples`, given the features-in
        client's tail (`features_pad`, runtime_py.stream.tail_padding_samples
        with this plan's frontend and chunk): whole calls, enough that every
        step that client runs also runs here, after the warmup calls."""
        if num_samples <= 0:
            return 0
        c, s = self.chunk_frames, self.shift_frames
        total = num_frames(num_samples + features_pad, self.frontend, flush=True)
        steps = (total - c) // s + 1 if total >= c else 0
        # steps * S >= the real frames and warmup >= 1 (a window is longer than
        # its shift), so these calls cover every real sample
        return (steps + self.warmup_calls) * self.samples_per_call - num_samples


def warmup_calls(signature: Signature) -> int:
    """Calls whose outputs a client ignores after each reset (0: features-in)."""
    plan = AudioInPlan.of(signature)
    return plan.warmup_calls if plan else 0


__all__ = ["AudioInPlan", "AUDIO_IN_KEY", "FRONTEND_SCOPE", "FRONTEND_OP_PREFIX", "STATE_SAMPLES", "STATE_FRAMES",
           "STATE_CALLS", "INPUT_NAME", "warmup_calls"]
