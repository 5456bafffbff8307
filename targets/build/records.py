"""Parity records of a build: the int8 check that something was quantised,
and the one-line description of a record for the progress output."""

from __future__ import annotations

from pathlib import Path

from ..backends import Backend


def check_quantised(backend: Backend, files: dict[str, Path], records: dict) -> None:
    """An int8 file in which nothing was quantised is an fp32 file under an
    int8 name: report it as such and fail it, whatever its parity. The
    backend's Int8Recipe counts, and reads its record back from the file."""
    check = backend.int8
    if check is None:
        return
    for g, p in files.items():
        n = check.count(p)
        records[g]["quantized_ops"] = n
        if check.record is not None:
            records[g]["int8_recipe"] = check.record(p)
        if n == 0:
            records[g]["passed"] = False
            records[g]["why"] = (f"no weight of graph {g!r} was quantised (no MatMul/Gemm/Conv/LSTM with "
                                 "constant weights); the file is fp32 under an int8 name")


def describe(rec: dict) -> str:
    text = _describe(rec)
    fi = rec.get("features_in")
    if fi:  # an audio-in encoder against the features-in model (targets/audio_in_parity.py)
        agree = "" if fi.get("decoded_agreement") is None else f", agreement {fi['decoded_agreement']:.3f}"
        text += (f"; vs features-in max|diff| {fi['max_abs_diff']:.2e}"
                 + (f" <= {fi['tolerance']:.0e}" if fi.get("tolerance") else "") + agree
                 + ("" if fi["passed"] else " FAILED"))
    return text


def _describe(rec: dict) -> str:
    flag = "" if rec["passed"] else " FAILED"
    if rec.get("quantized_ops") == 0:
        return f"int8 quantised nothing: {rec['why']} FAILED"
    if rec.get("judged_by") == "relative_error":
        return (f"relative error {rec['relative_error']:.2e} <= {rec['relative_error_bar']:.0e}, "
                f"cosine {rec['cosine']:.4f} ({rec['why'].split(',')[0]}){flag}")
    if rec.get("tolerance") is None:
        return (f"decoded agreement {rec['decoded_agreement']:.3f} (bar {rec['agreement_bar']}), "
                f"max|diff| {rec['max_abs_diff']:.2e}{'' if rec['passed'] else ' FAILED'}")
    return f"max|diff| {rec['max_abs_diff']:.2e} <= {rec['tolerance']:.0e}{'' if rec['passed'] else ' FAILED'}"
