"""Writing a bundle atomically.

The bundle is built in a hidden sibling folder and renamed into place at the
end, so an interrupted or failed build leaves the previous bundle intact and
never a half-written one. The manifest is sorted-key JSON with relative paths
and no timestamps: building twice gives the same bytes.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
from pathlib import Path

from runtime_py.manifest import MANIFEST, SCHEMA_VERSION, file_record

TOOLS = ("torch", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "tensorflow-cpu", "ai-edge-litert",
         "coremltools", "numpy", "edge-speech")


def tool_versions() -> dict[str, str]:
    out = {}
    for name in TOOLS:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def dump_json(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


class BundleWriter:
    """Use as a context manager: files go to `.tmp`, `commit()` swaps it in;
    leaving the block without commit (an error, Ctrl-C) removes the partial folder."""

    def __init__(self, final_dir: Path | str):
        self.final = Path(final_dir)
        self.tmp = self.final.parent / f".{self.final.name}.partial"
        self.artifacts: list[dict] = []
        self.files: list[str] = []
        self.committed = False

    def __enter__(self) -> "BundleWriter":
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        self.tmp.mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb):
        if not self.committed and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def path(self, rel: str) -> Path:
        p = self.tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def add_file(self, rel: str) -> None:
        if not (self.tmp / rel).exists():
            raise FileNotFoundError(f"bundle file {rel} was not written")
        self.files.append(rel)

    def write_text(self, rel: str, text: str) -> None:
        self.path(rel).write_text(text, encoding="utf-8")
        self.add_file(rel)

    def add_artifact(self, rel: str, graph: str, backend: str, precision: str, parity: dict) -> dict:
        rec = file_record(self.tmp, rel)
        rec.update(graph=graph, backend=backend, precision=precision, parity=parity)
        self.artifacts.append(rec)
        return rec

    def commit(self, manifest: dict) -> Path:
        manifest = dict(manifest)
        manifest["schema_version"] = SCHEMA_VERSION
        manifest["artifacts"] = sorted(self.artifacts, key=lambda a: a["path"])
        manifest["files"] = [file_record(self.tmp, rel) for rel in sorted(set(self.files))]
        (self.tmp / MANIFEST).write_text(dump_json(manifest), encoding="utf-8")
        old = self.final.parent / f".{self.final.name}.old"
        if old.exists():
            shutil.rmtree(old)
        if self.final.exists():
            os.replace(self.final, old)
        os.replace(self.tmp, self.final)
        self.committed = True
        shutil.rmtree(old, ignore_errors=True)
        return self.final
