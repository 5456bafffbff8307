"""A bundle's manifest.json: reading it safely, and the one place its fields
are written (`new_manifest`, `manifest_text`; see docs/bundle-format.md).

Torch-free: this is what a Raspberry Pi runs. Every path in a manifest must
stay inside the bundle; every file is checked against its sha256 before use;
a malformed manifest gets one `ManifestError` naming the field. edge-build
(targets/build/) fills `new_manifest`, and targets/bundle.py adds the file
records and writes it with `manifest_text`, so the schema the reader checks
below and the one the build writes live in one module.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .formats import FORMATS, PRECISIONS
from .limits import check_client
from .signature import Signature, SignatureError

MANIFEST = "manifest.json"
SCHEMA_VERSION = 1
_CHUNK = 1 << 20


class ManifestError(ValueError):
    pass


def sha256_path(path: Path) -> str:
    """sha256 of a file; for a folder (an .mlpackage), of the sorted list of
    `relative/path\\0sha256\\n` lines of the files inside it."""
    path = Path(path)
    if path.is_dir():
        lines = []
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            lines.append(f"{f.relative_to(path).as_posix()}\0{sha256_path(f)}\n")
        return hashlib.sha256("".join(lines).encode()).hexdigest()
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def size_of(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def file_record(root: Path, rel: str) -> dict:
    p = Path(root) / rel
    return {"path": rel, "sha256": sha256_path(p), "bytes": size_of(p)}


def confined(root: Path, rel: str) -> Path:
    """Resolve a manifest path, refusing anything that leaves the bundle."""
    if not isinstance(rel, str) or not rel:
        raise ManifestError(f"manifest path {rel!r} must be a non-empty string")
    pure = PurePosixPath(rel)
    if not pure.parts:  # "." or "./"
        raise ManifestError(f"manifest path {rel!r} names the bundle folder itself, not a file in it")
    if pure.is_absolute() or rel.startswith(("/", "\\")) or ":" in pure.parts[0] or ".." in pure.parts:
        raise ManifestError(f"manifest path {rel!r} leaves the bundle (absolute or '..'); refusing it")
    root = Path(root).resolve()
    p = (root / pure).resolve()
    if root != p and root not in p.parents:
        raise ManifestError(f"manifest path {rel!r} resolves outside the bundle (a symlink?); refusing it")
    return p


@dataclass(frozen=True)
class Artifact:
    path: str
    graph: str
    backend: str
    precision: str
    sha256: str
    bytes: int
    parity: dict


class Bundle:
    """A validated bundle folder."""

    def __init__(self, root: Path | str, verify: bool = True):
        self.root = Path(root)
        mpath = self.root / MANIFEST
        if not self.root.is_dir():
            raise ManifestError(f"bundle {self.root} is not a folder (build one with edge-build)")
        if not mpath.exists():
            raise ManifestError(f"{self.root} has no {MANIFEST}; is it a bundle made by edge-build?")
        try:
            self.manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, or a number of over 4300 digits
            raise ManifestError(f"{mpath} is not valid JSON: {e}") from None
        self._validate()
        self._verified: set[str] = set()
        if verify:
            self.check_tokens()

    # -- validation ---------------------------------------------------------
    def _require(self, obj, key, kind, where="manifest"):
        if not isinstance(obj, dict) or key not in obj:
            raise ManifestError(f"{where}: missing field {key!r}")
        if not isinstance(obj[key], kind):
            raise ManifestError(f"{where}.{key}: expected {getattr(kind, '__name__', kind)}, "
                                f"got {type(obj[key]).__name__}")
        return obj[key]

    def _validate(self) -> None:
        m = self.manifest
        if not isinstance(m, dict):
            raise ManifestError("manifest must be a JSON object")
        version = self._require(m, "schema_version", int)
        if version != SCHEMA_VERSION:
            raise ManifestError(f"manifest schema_version {version} is not {SCHEMA_VERSION}; rebuild the bundle")
        for key in ("name", "family", "target", "tokens"):
            self._require(m, key, str)
        try:
            self.signature = Signature.from_dict(self._require(m, "signature", dict))
        except SignatureError as e:
            raise ManifestError(f"manifest.signature: {e}") from None
        self.artifacts = []
        graphs = {g.name for g in self.signature.graphs}
        for i, a in enumerate(self._require(m, "artifacts", list)):
            where = f"manifest.artifacts[{i}]"
            for key, kind in (("path", str), ("graph", str), ("backend", str), ("precision", str),
                              ("sha256", str), ("bytes", int), ("parity", dict)):
                self._require(a, key, kind, where)
            if a["backend"] not in FORMATS:
                raise ManifestError(f"{where}.backend {a['backend']!r} not in {tuple(FORMATS)}")
            if a["precision"] not in PRECISIONS:
                raise ManifestError(f"{where}.precision {a['precision']!r} not in {PRECISIONS}")
            if a["graph"] not in graphs:
                raise ManifestError(f"{where}.graph {a['graph']!r} is not a graph of the signature {sorted(graphs)}")
            confined(self.root, a["path"])
            self.artifacts.append(Artifact(**{k: a[k] for k in Artifact.__dataclass_fields__}))
        self.files = []
        files = m.get("files", [])
        if not isinstance(files, list):
            raise ManifestError(f"manifest.files: expected list, got {type(files).__name__}")
        for i, f in enumerate(files):
            for key, kind in (("path", str), ("sha256", str), ("bytes", int)):
                self._require(f, key, kind, f"manifest.files[{i}]")
            confined(self.root, f["path"])
            self.files.append(f)
        confined(self.root, m["tokens"])
        try:  # before any stream allocates what the signature declares (runtime_py.limits)
            check_client(self.signature, self.model_bytes())
        except SignatureError as e:
            raise ManifestError(f"manifest.signature: {e}") from None

    def model_bytes(self) -> int:
        """The largest model here: the files of one (backend, precision) as
        they are on disk (the manifest's own `bytes` could say anything)."""
        sizes: dict[tuple[str, str], int] = {}
        for a in self.artifacts:
            p = confined(self.root, a.path)
            if p.exists():
                key = (a.backend, a.precision)
                sizes[key] = sizes.get(key, 0) + size_of(p)
        return max(sizes.values(), default=0)

    # -- access ---------------------------------------------------------------
    def path(self, rel: str, expected_sha256: str | None = None) -> Path:
        """The file at `rel`, checked against its sha256 (once per bundle)."""
        p = confined(self.root, rel)
        if not p.exists():
            raise ManifestError(f"bundle file {rel} is listed in the manifest but missing")
        sha = expected_sha256 or self._sha_of(rel)
        if sha is not None and rel not in self._verified:
            got = sha256_path(p)
            if got != sha:
                raise ManifestError(f"bundle file {rel} is corrupted or was changed: sha256 {got[:12]}… "
                                    f"does not match the manifest's {sha[:12]}…; rebuild or re-copy the bundle")
            self._verified.add(rel)
        return p

    def _sha_of(self, rel: str) -> str | None:
        for rec in list(self.files) + [a.__dict__ for a in self.artifacts]:
            if rec["path"] == rel:
                return rec["sha256"]
        return None

    def check_tokens(self) -> list[str]:
        return self.tokens()

    def tokens(self) -> list[str]:
        p = self.path(self.manifest["tokens"])
        if not p.is_file():
            raise ManifestError(f"manifest.tokens {self.manifest['tokens']!r} is not a file")
        table: dict[int, str] = {}
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ManifestError(f"{p.name} is not UTF-8 text ({e.reason} at byte {e.start}); "
                                "rebuild or re-copy the bundle") from None
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.rsplit(" ", 1)
            if len(parts) != 2 or not (parts[1].isascii() and parts[1].isdigit()) or not parts[0]:
                raise ManifestError(f"{p.name} line {n}: expected 'symbol id', got {line!r}")
            if int(parts[1]) in table:
                raise ManifestError(f"{p.name} line {n}: token id {parts[1]} appears twice")
            table[int(parts[1])] = parts[0]
        if sorted(table) != list(range(len(table))):
            raise ManifestError(f"{p.name}: token ids must be 0..N-1 without gaps")
        if len(table) != self.signature.vocab_size:
            raise ManifestError(f"{p.name} has {len(table)} tokens, the signature says {self.signature.vocab_size}")
        return [table[i] for i in range(len(table))]

    def find(self, graph: str, backend: str | None = None, precision: str | None = None) -> Artifact:
        hits = [a for a in self.artifacts if a.graph == graph and (backend is None or a.backend == backend)
                and (precision is None or a.precision == precision)]
        if not hits:
            have = sorted({(a.backend, a.precision) for a in self.artifacts if a.graph == graph})
            raise ManifestError(f"bundle has no {backend or 'any'}/{precision or 'any'} artifact for graph "
                                f"{graph!r}; it has {have}")
        return hits[0]

    def backends(self) -> list[tuple[str, str]]:
        return sorted({(a.backend, a.precision) for a in self.artifacts})


def load_bundle(root: Path | str, verify: bool = True) -> Bundle:
    return Bundle(root, verify)


# -- writing (edge-build) ---------------------------------------------------------

GOLDEN = {"audio": "golden/audio.wav", "features": "golden/features.npy",
          "inputs": {"encoder": "golden/encoder_inputs.npz"}, "outputs": {"encoder": "golden/encoder_outputs.npz"},
          "transcript": "golden/transcript.txt",
          # the utterance cut after its last word, for an app's test of the tail padding (targets/golden.py)
          "cut": {"audio": "golden/cut.wav", "transcript": "golden/cut_transcript.txt"}}  # the golden files' places
TOKENS = "tokens.txt"
UNTRAINED = "UNTRAINED: seeded random weights; outputs are meaningless"


def new_manifest(*, name: str, target: str, signature: Signature, source: str, trained: bool, reference: str,
                 tools: dict, utterance: str, golden_chunks: int, proofs: dict, not_converted: list,
                 parity_stream: dict) -> dict:
    """Every field of a manifest but the file records (`artifacts`, `files`)
    and `schema_version`, which `complete` adds when the files are written."""
    return {
        "name": name, "family": signature.family, "target": target,
        "signature": signature.to_dict(),
        "model": {"source": source, "trained": trained, "reference": reference, "note": "" if trained else UNTRAINED},
        "tokens": TOKENS,
        "tools": tools,
        "golden": {**GOLDEN, "utterance": utterance, "chunks": golden_chunks},
        "proofs": proofs,
        "not_converted": not_converted,
        "parity_stream": parity_stream,
    }


def complete(manifest: dict, artifacts: list[dict], files: list[dict]) -> dict:
    """The manifest with its schema version and file records (artifacts sorted by path)."""
    return {**manifest, "schema_version": SCHEMA_VERSION,
            "artifacts": sorted(artifacts, key=lambda a: a["path"]), "files": files}


def manifest_text(manifest: dict) -> str:
    """The manifest's bytes: sorted keys, so the same build gives the same file."""
    return json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
