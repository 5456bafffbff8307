"""One view of an ONNX graph for the rewrite passes of both routes (the TFLite
route's targets/tflite/rewrite.py, the .ort route's targets/ort_rewrite.py and
targets/ort_chains.py): names, constants, producers and static shapes, fresh
names for what a rewrite adds, and the clean-up of initializers nothing reads."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


class Graph:
    """Names, constants, producers and static shapes of one graph, and
    fresh names for what the rewrites add."""

    def __init__(self, model: onnx.ModelProto):
        self.model, self.g = model, model.graph
        self.consts = {i.name: numpy_helper.to_array(i) for i in self.g.initializer}
        for n in self.g.node:
            if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
                self.consts[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
        self.producer = {o: n for n in self.g.node for o in n.output}
        inferred = onnx.shape_inference.infer_shapes(model).graph
        self.shapes = {}
        for v in list(inferred.input) + list(inferred.value_info) + list(inferred.output):
            dims = v.type.tensor_type.shape.dim
            if v.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
                self.shapes[v.name] = tuple(d.dim_value for d in dims)
        self.shapes.update({k: v.shape for k, v in self.consts.items()})
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"edge_rw/{hint}_{self._n}"

    def const(self, value: np.ndarray, hint: str) -> str:
        name = self.name(hint)
        self.g.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        self.consts[name] = np.asarray(value)
        return name

    def node(self, op: str, inputs: list, hint: str, output: str | None = None, **attrs) -> helper.NodeProto:
        return helper.make_node(op, inputs, [output or self.name(hint)], name=self.name(hint), **attrs)


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
