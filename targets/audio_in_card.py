"""The model card of an audio-in bundle: the generic card (targets/modelcard.py)
describes a features-in encoder; this rewrites its frontend, streaming and
on-device-features sections for a graph that takes PCM (docs/audio-in.md).
Sections are found by their headings; one the card does not have is left
alone (the I/O tables, generated from the signature, are right either way)."""

from __future__ import annotations

import re

from runtime_py.audio_in import AudioInPlan
from runtime_py.signature import Signature


def _frontend(plan: AudioInPlan, sig: Signature) -> str:
    fe = plan.frontend
    return (f"Inside the encoder graph: the app feeds PCM and computes no features. The graph computes kaldi "
            f"{fe.kind} with {fe.feature_dim} bins, {fe.sample_rate} Hz mono, window {fe.frame_length} samples "
            f"({fe.window}), hop {fe.frame_shift} samples, preemphasis {fe.preemphasis}, remove DC "
            f"{fe.remove_dc_offset}, dither {fe.dither}, snip_edges={fe.snip_edges}, mel range {fe.low_freq} Hz to "
            f"{fe.high_freq} Hz (a value <= 0 counts down from Nyquist, kaldi's convention), float samples scaled by "
            f"{fe.sample_scale:g} (record: `signature.extra.audio_in`). Its features equal kaldi-native-fbank's "
            "with these options up to float32 (`docs/audio-in.md` in the toolchain's repository).")


def _streaming(plan: AudioInPlan, sig: Signature) -> str:
    ms = 1000 * plan.samples_per_call / plan.frontend.sample_rate
    right = plan.chunk_frames - plan.shift_frames
    reach = [f"the last {plan.lag_frames} frame(s) a call could start need samples of the next call (a window of "
             f"{plan.frontend.frame_length} samples, a hop of {plan.frontend.frame_shift})"] if plan.lag_frames else []
    if right:
        reach.append(f"an encoder step of {plan.chunk_frames} frames reads {right} frames of right context past "
                     f"the {plan.shift_frames} it consumes")
    why = " and ".join(reach) or "the graph keeps that much history"
    return (f"Feed {plan.samples_per_call} samples in [-1, 1] per encoder call ({ms:.0f} ms), input "
            f"`[1, {plan.samples_per_call}, 1]`, with every state carried (`audio_samples`, `audio_frames` and "
            f"`audio_calls` are the frontend's history). After each reset decode nothing from the first "
            f"{plan.warmup_calls} call(s): {why}, so the graph completes its first encoder step on call "
            f"{plan.warmup_calls + 1}. At the end of an utterance append zeros so that the utterance and its zeros "
            f"fill whole calls (the rule is under Endpointing and stop).")


FEATURES = ("The encoder takes audio: there is no feature code to write. The code above is the whole loop from PCM "
            "to text (so is `examples/js/transcribe.mjs` in the toolchain's repository, on a WAV file).")


def _replace_paragraph(card: str, heading: str, text: str) -> str:
    """The first paragraph under `heading` becomes `text`."""
    pattern = re.compile(rf"(^{re.escape(heading)}\n\n)(.*?)(\n\n|\Z)", re.S | re.M)
    return pattern.sub(lambda m: m.group(1) + text + m.group(3), card, count=1)


def _replace_section(card: str, heading: str, text: str) -> str:
    """Everything under `heading` up to the next heading of its level or
    above (outside code blocks, whose comments may start with '#') becomes `text`."""
    lines = card.split("\n")
    if heading not in lines:
        return card
    start = lines.index(heading)
    level = len(heading.split(" ")[0])
    end, fenced = len(lines), False
    for i in range(start + 1, len(lines)):
        if lines[i].startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(rf"#{{1,{level}}} ", lines[i]):
            end = i
            break
    return "\n".join(lines[: start + 1] + ["", text, ""] + lines[end:])


def adapt(card: str, signature: Signature) -> str:
    plan = AudioInPlan.of(signature)
    if plan is None:
        return card
    card = _replace_paragraph(card, "## Audio frontend", _frontend(plan, signature))
    card = _replace_paragraph(card, "## Streaming", _streaming(plan, signature))
    card = _replace_section(card, "### Features on the device", FEATURES)
    # the snippets' comments name the input of a features-in graph
    n = plan.samples_per_call
    return card.replace(f"{n}, 1] fbank frames", f"{n}, 1] PCM samples in [-1, 1]").replace(
        f"{n} x 1 fbank values", f"{n} PCM samples in [-1, 1]")


__all__ = ["adapt"]
