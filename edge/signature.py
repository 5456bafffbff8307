"""Re-export of the signature types. They live in the torch-free runtime so a
Raspberry Pi reads the same declaration the exporter wrote."""
from runtime_py.signature import (  # noqa: F401
    DTYPES, NEXT_SUFFIX, RESET_SCOPES, SCHEMA_VERSION, FrontendSpec, GraphSpec,
    Signature, SignatureError, StateSpec, TensorSpec,
)
