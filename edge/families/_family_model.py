"""The built-in families' base: a StreamingModel whose signature and graph
modules come from its plan and step functions through edge.declare, the same
path as a user's own model.

Kept apart from base.py so that the declaration API (which builds on
StreamingModel) and the families (which build on the declaration API) do not
import each other. The leading "_" keeps it out of the family names, which
edge.cliutil reads from this folder's file names.
"""

from __future__ import annotations

from torch import nn

from ..signature import Signature
from .base import StreamingModel


class FamilyModel(StreamingModel):
    def declared(self):
        """This model through edge.declare, made once (not a submodule: it holds this model)."""
        d = self.__dict__.get("_declared")
        if d is None:
            # imported here: edge.declaration imports the families package, which imports this module
            from ..declaration import declare_family
            d = self.__dict__["_declared"] = declare_family(self)
        return d

    def signature(self) -> Signature:
        return self.declared().signature()

    def graph_module(self, name: str) -> nn.Module:
        """A module with forward(*inputs, *states) -> (*outputs, *next_states)."""
        return self.declared().graph_module(name)
