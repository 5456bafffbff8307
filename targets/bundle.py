"""Writing a bundle atomically, and never over the user's own files.

The bundle is built in a hidden sibling folder and renamed into place at the
end, so an interrupted or failed build leaves the previous bundle intact and
never a half-written one. The manifest is sorted-key JSON with relative paths
and no timestamps: building twice gives the same bytes.

Only a bundle we wrote is ever replaced: a folder whose every file is listed
in its own manifest.json. Anything else at the output path (a project folder,
a bundle the user added notes to) is refused before any work
(`check_output_dir`), and `commit` checks again; `--force` moves such a folder
aside (`move_aside`), it never deletes it. The working directory, its parents,
`/` and the home folder are refused always.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import secrets
from pathlib import Path

from edge.errors import UserError
from runtime_py.manifest import MANIFEST, complete, file_record, manifest_text

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


def foreign_files(folder: Path) -> list[str]:
    """Files in `folder` that are not part of a bundle we wrote: everything,
    when it has no readable manifest.json of ours; else the files its manifest
    does not list. An empty list means the folder is ours to replace."""
    folder = Path(folder)
    present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if not (isinstance(manifest, dict) and "signature" in manifest and "schema_version" in manifest):
            return present
        ours = {e["path"] for e in manifest["files"] + manifest["artifacts"]}
    except (OSError, ValueError, KeyError, TypeError):
        return present
    ours.add(MANIFEST)
    # an .mlpackage artifact is a folder: every file inside it is ours
    return [f for f in present if f not in ours and not any(f.startswith(o + "/") for o in ours)]


def _protected(path: Path) -> str | None:
    """Why `path` may never be a bundle folder (it would replace the working
    directory, one of its parents, / or the home folder), else None."""
    target = path.resolve()
    cwd = Path.cwd().resolve()
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError):  # no HOME and no passwd entry (some containers)
        home = None
    if target == Path(target.anchor):
        return "it is the file-system root"
    if target == cwd:
        return "it is the working directory"
    if target in cwd.parents:
        return "it holds the working directory"
    if home is not None and (target == home or target in home.parents):
        return "it is (or holds) your home folder"
    return None


def check_output_dir(path: Path | str, force: bool = False) -> bool:
    """Refuse, before any work, an output folder that is not ours to replace.
    Returns True when `path` exists and is not a bundle we wrote (then only
    `force` lets the build go on, by moving it aside)."""
    path = Path(path)
    why = _protected(path)
    if why:
        raise UserError(f"refusing to write a bundle to {str(path)!r}: {why}. "
                        "Name a new folder, e.g. -o dist/my-bundle")
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} exists and is a file, not a folder; choose another -o")
    if not path.is_dir():
        return False
    foreign = foreign_files(path)
    if foreign and not force:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UserError(f"{path} already exists and is not a bundle edge-build wrote (it holds {shown}); "
                        "nothing was changed. Choose another -o, or add --force to move it aside "
                        "(it is renamed, never deleted)")
    return bool(foreign)


def move_aside(path: Path | str) -> Path:
    """Rename a folder we may not replace to a free sibling name; returns it."""
    path = Path(path)
    for i in range(1, 1000):
        dest = path.with_name(f"{path.name}.before-edge-build" + (f"-{i}" if i > 1 else ""))
        if not dest.exists():
            os.replace(path, dest)
            return dest
    raise UserError(f"cannot find a free name to move {path} aside; move it yourself")


def _fresh_sibling(final: Path, kind: str) -> Path:
    """A new hidden folder next to `final` (made with the user's umask, unlike
    mkdtemp's 0700): a fresh name each time, so nothing already there is ever
    removed."""
    while True:
        p = final.parent / f".{final.name}.{kind}-{secrets.token_hex(4)}"
        try:
            p.mkdir()
            return p
        except FileExistsError:
            continue


class BundleWriter:
    """Use as a context manager: files go to `.tmp`, `commit()` swaps it in;
    leaving the block without commit (an error, Ctrl-C) removes the partial folder."""

    def __init__(self, final_dir: Path | str):
        self.final = Path(final_dir)
        self.tmp: Path | None = None
        self.artifacts: list[dict] = []
        self.files: list[str] = []
        self.committed = False

    def __enter__(self) -> "BundleWriter":
        check_output_dir(self.final)  # an API caller gets the same refusal as the CLI, before any work
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = _fresh_sibling(self.final, "partial")
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

    def add_artifact(self, rel: str, graph: str, backend: str, precision: str, parity: dict,
                     conversion: dict | None = None) -> dict:
        """`conversion`: how the converter made the file (e.g. the TFLite route and its rewrites)."""
        rec = file_record(self.tmp, rel)
        rec.update(graph=graph, backend=backend, precision=precision, parity=parity)
        if conversion:
            rec["conversion"] = conversion
        self.artifacts.append(rec)
        return rec

    def commit(self, manifest: dict) -> Path:
        manifest = complete(manifest, self.artifacts, [file_record(self.tmp, rel) for rel in sorted(set(self.files))])
        (self.tmp / MANIFEST).write_text(manifest_text(manifest), encoding="utf-8")
        old = None
        if self.final.exists():
            check_output_dir(self.final)  # again: the folder may have changed during the build
            old = _fresh_sibling(self.final, "old")
            os.replace(self.final, old / "bundle")
        os.replace(self.tmp, self.final)
        self.committed = True
        if old is not None:  # the previous bundle, checked above to hold only files we wrote
            shutil.rmtree(old, ignore_errors=True)
        return self.final
