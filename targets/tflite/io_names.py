"""The converted file's I/O must be the signature's: names, shapes, order.

onnx2tf may hand some outputs back in another layout (e.g. the LSTM states
batch-major): `_find_permutation` finds the axes order by comparing onnx2tf's
Keras output with onnxruntime's on the same inputs, and the wrapper transposes
back. `_set_signature` then writes the "serving_default" SignatureDef with the
signature's names and proves the output order numerically against ONNX."""

from __future__ import annotations

import numpy as np

from .base import SIGNATURE_KEY, TfliteConversionError


def _find_permutation(got: np.ndarray, want: np.ndarray):
    """Axes permutation p with transpose(got, p) == want (numerically)."""
    import itertools

    if got.shape == want.shape and np.allclose(got, want, rtol=1e-3, atol=1e-3):
        return None
    if got.ndim == want.ndim:
        for p in itertools.permutations(range(got.ndim)):
            if tuple(got.shape[i] for i in p) == want.shape and np.allclose(
                    np.transpose(got, p), want, rtol=1e-3, atol=1e-3):
                return list(p)
    if got.size == want.size and np.allclose(got.reshape(want.shape), want, rtol=1e-3, atol=1e-3):
        return "reshape"
    raise TfliteConversionError(
        f"no layout of onnx2tf's output {got.shape} matches the ONNX output {want.shape}")


def _tensor_name(sub, i: int) -> str:
    n = sub.tensors[i].name
    n = n.decode() if isinstance(n, bytes) else n
    n = n.split(":")[0]
    return n[len(SIGNATURE_KEY) + 1:] if n.startswith(SIGNATURE_KEY + "_") else n


def _input_indices(sub, g: dict) -> dict[str, int]:
    """Signature input name -> tensor index, matched by name."""
    by_name = {_tensor_name(sub, i): int(i) for i in sub.inputs}
    want = [n for n, _, _ in g["inputs"]]
    if sorted(by_name) != sorted(want):
        raise TfliteConversionError(f"TFLite inputs {sorted(by_name)} are not the signature's {want}")
    return by_name


def _output_indices(model, g: dict) -> list[int]:
    """Tensor index of each signature output, by the wrapper's tuple order."""
    sub = model.subgraphs[0]
    n_out = len(g["outputs"])
    if len(sub.outputs) != n_out:
        raise TfliteConversionError(f"TFLite has {len(sub.outputs)} outputs, signature {n_out}")
    if not model.signatureDefs:
        return [int(i) for i in sub.outputs]  # the wrapper's tuple order
    # the converter's own signature: outputs named output_<k>
    kept = {(tm.name.decode() if isinstance(tm.name, bytes) else tm.name): tm.tensorIndex
            for tm in model.signatureDefs[0].outputs}
    if sorted(kept) != sorted(f"output_{k}" for k in range(n_out)):
        raise TfliteConversionError(f"unexpected converter signature outputs {sorted(kept)}")
    return [int(kept[f"output_{k}"]) for k in range(n_out)]


def _signature_def(g: dict, by_name: dict, out_idx: list):
    from tensorflow.lite.python import schema_py_generated as schema

    sig = schema.SignatureDefT()
    sig.signatureKey = SIGNATURE_KEY
    sig.subgraphIndex = 0
    sig.inputs = [schema.TensorMapT() for _ in g["inputs"]]
    for tm, (name, _, _) in zip(sig.inputs, g["inputs"]):
        tm.name, tm.tensorIndex = name, by_name[name]
    sig.outputs = [schema.TensorMapT() for _ in g["outputs"]]
    for tm, (name, _, _), idx in zip(sig.outputs, g["outputs"], out_idx):
        tm.name, tm.tensorIndex = name, idx
    return sig


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / max(float(np.linalg.norm(want)), 1e-12))


def _prove_outputs(data: bytes, g: dict, feeds: dict, ref: list, exact: bool) -> None:
    """Outputs are matched by position: prove it on the probe inputs. exact:
    loose tolerance (this also runs for fp16 and dynamic-range int8; a swap is
    off by O(1)). Otherwise (full-integer int8, whose error on a trained model
    can exceed any such tolerance): each output must be finite and nearer, in
    relative error, to its own ONNX output than to any other of its shape."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=data, num_threads=1)
    res = it.get_signature_runner(SIGNATURE_KEY)(**{n: feeds[n] for n, _, _ in g["inputs"]})
    for (name, shape, _), r in zip(g["outputs"], ref):
        got = np.asarray(res[name])
        if got.shape != tuple(shape):
            raise TfliteConversionError(f"TFLite output {name!r} has shape {got.shape}, signature {tuple(shape)}")
        if exact:
            ok = np.allclose(got, r, atol=0.1, rtol=0.1)
        else:
            others = [_relative_error(got, o) for o in ref if o is not r and o.shape == got.shape]
            own = _relative_error(got, r)
            ok = bool(np.isfinite(got).all()) and own < 1.0 and all(own < e for e in others)
        if not ok:
            raise TfliteConversionError(f"TFLite output {name!r} does not match ONNX on the probe input")


def _set_signature(flatbuffer: bytes, g: dict, feeds: dict, ref: list, exact: bool = True) -> bytes:
    """Write the "serving_default" SignatureDef with the signature's names.
    The converter keeps its own for some graphs (inputs re-sorted, named
    `serving_default_<name>:0`, outputs `output_<k>`) and drops it for others
    (the conformer's). Inputs are mapped by name, outputs by the wrapper's
    tuple order, and the result is checked numerically against ONNX."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    by_name = _input_indices(model.subgraphs[0], g)
    out_idx = _output_indices(model, g)
    model.signatureDefs = [_signature_def(g, by_name, out_idx)]
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    _prove_outputs(data, g, feeds, ref, exact)
    return data
