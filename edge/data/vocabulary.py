"""The corpus's words and tokens: 46 command words, one token per word
("\u2581word", sentencepiece's word mark), the blank first."""

from __future__ import annotations

from pathlib import Path

SAMPLE_RATE = 16000
BLANK = "<blk>"
WORD_MARK = "\u2581"  # sentencepiece word-boundary mark: token joining gives spaces

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COMMANDS = (
    "oh", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go",
    "start", "next", "back", "open", "close", "play", "pause", "louder",
    "quieter", "forward", "cancel", "help", "home", "lights", "music", "volume",
    "call", "answer", "repeat", "select", "menu", "enter", "delete", "save", "wait",
)
# All 46 words have distinct espeak-ng phoneme strings (checked with `espeak-ng -x`).
VOCABULARY = DIGITS + COMMANDS


def tokens() -> list[str]:
    """Token list: 0 is the blank, then one "▁word" per VOCABULARY word."""
    return [BLANK] + [WORD_MARK + w for w in VOCABULARY]


def write_tokens(path) -> Path:
    """Write sherpa-onnx style tokens.txt ("symbol id" per line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{t} {i}\n" for i, t in enumerate(tokens())), encoding="utf-8")
    return path
