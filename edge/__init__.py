"""edge-speech's PyTorch side. The public bring-your-own-model API is
re-exported here (imported on first use, so `import edge` stays light):

    import edge
    model = edge.declare("my-model", encoder=edge.Step(fn, states=...), head="ctc", chunk=16, tokens=...)
"""

_API = ("declare", "Step", "State", "Const", "Counter", "Derived", "FEATURES", "STATES", "LENGTHS", "TOKENS",
        "ENCODER_OUT", "DECODER_OUT", "DeclarationError", "DeclaredModel")


def __getattr__(name):
    if name in _API:
        from . import declaration
        return getattr(declaration, name)
    if name == "audio_in":  # the model with its frontend in the encoder graph (docs/audio-in.md)
        from .audio_in import audio_in
        return audio_in
    if name == "FrontendSpec":
        from .signature import FrontendSpec
        return FrontendSpec
    raise AttributeError(f"module 'edge' has no attribute {name!r}")


__all__ = list(_API) + ["FrontendSpec", "audio_in"]
