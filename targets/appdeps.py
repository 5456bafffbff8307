"""The libraries an app adds to run a bundle's files: their Gradle, CocoaPods
and Swift Package Manager coordinates and the version to pin. The one place
these strings are written: the model card's dependency list, its Kotlin and
Swift comments, the card's "Run with" line (targets/loads.py) and
`edge-build --list` all take them from here.

The version is the release of the Python package that wrote and checked the
bundle's files (the manifest's `tools`): onnxruntime-android / -objc share
their release numbers and runtime core with the `onnxruntime` wheel that
wrote the `.ort` files and ran their parity; LiteRT's Android library
shares its release with the `ai-edge-litert` wheel that ran the `.tflite`
parity. A bundle whose manifest lacks the tool falls back to the version
constraints.txt pins (tests/test_snippets.py checks the two agree).
Nothing here was compiled or run on a phone: see docs/mobile-apps.md.
"""

from __future__ import annotations

from dataclasses import dataclass

# constraints.txt's pins: the fallback when a manifest does not record the tool
PINNED = {"onnxruntime": "1.31.1", "ai-edge-litert": "2.3.0"}


@dataclass(frozen=True)
class Library:
    name: str  # what a developer searches for
    api: str  # the class the app calls
    tool: str | None  # the Python package whose release this library shares; None: part of the OS
    gradle: str | None = None  # group:artifact
    pod: str | None = None  # CocoaPods pod name
    spm: str | None = None  # Swift package (repository) and product
    swift_import: str | None = None  # the module CocoaPods (or the OS) gives
    spm_import: str | None = None  # the module the Swift package gives, when it differs

    def version(self, tools: dict | None) -> str | None:
        if self.tool is None:
            return None
        return (tools or {}).get(self.tool) or PINNED[self.tool]


LIBRARIES = {
    ("android", "ort"): Library("onnxruntime-android", "OrtSession", "onnxruntime",
                                gradle="com.microsoft.onnxruntime:onnxruntime-android"),
    ("android", "tflite"): Library("LiteRT", "Interpreter", "ai-edge-litert", gradle="com.google.ai.edge.litert:litert"),
    ("ios", "ort"): Library("onnxruntime-objc", "ORTSession", "onnxruntime", pod="onnxruntime-objc",
                            spm="github.com/microsoft/onnxruntime-swift-package-manager, product onnxruntime",
                            swift_import="onnxruntime_objc", spm_import="OnnxRuntimeBindings"),
    ("ios", "coreml"): Library("Core ML", "MLModel", None, swift_import="CoreML"),
}
LIBRARIES[("android", "onnx")] = LIBRARIES[("android", "ort")]
LIBRARIES[("ios", "onnx")] = LIBRARIES[("ios", "ort")]


def library(target: str, backend: str) -> Library | None:
    return LIBRARIES.get((target, backend))


def gradle_line(lib: Library, tools: dict | None) -> str:
    """implementation("group:artifact:version"), for build.gradle.kts."""
    return f'implementation("{lib.gradle}:{lib.version(tools)}")'


def pod_line(lib: Library, tools: dict | None) -> str:
    return f"pod '{lib.pod}', '{lib.version(tools)}'"


def swift_imports(lib: Library) -> str:
    """The import lines of a library: the Swift package's module is not the
    pod's (onnxruntime-objc: `onnxruntime_objc` from CocoaPods,
    `OnnxRuntimeBindings` from Swift Package Manager), so the code imports
    whichever the app has."""
    if not lib.spm_import or lib.spm_import == lib.swift_import:
        return f"import {lib.swift_import}"
    return (f"#if canImport({lib.swift_import})\nimport {lib.swift_import}  // CocoaPods\n#else\n"
            f"import {lib.spm_import}  // Swift Package Manager\n#endif")


def runtime_name(target: str, backend: str) -> str | None:
    """'onnxruntime-android OrtSession': the card's and edge-build's "run with"
    words (no coordinate: those, with their version, are in the card's Libraries)."""
    lib = library(target, backend)
    if lib is None:
        return None
    return f"{lib.name} {lib.api}" if lib.tool else f"{lib.name} {lib.api}.prediction"


def coordinates(target: str, backends, tools: dict | None) -> list[str]:
    """One line per library the bundle's files need: what to add and why this version."""
    out = []
    for b in dict.fromkeys(backends):
        lib = library(target, b)
        if lib is None or any(line.startswith(f"- {lib.name}:") for line in out):
            continue
        if lib.tool is None:
            out.append(f"- {lib.name}: part of iOS (`import {lib.swift_import}`); nothing to add.")
            continue
        v = lib.version(tools)
        how = []
        if lib.gradle:
            how.append(f"Gradle `{gradle_line(lib, tools)}`")
        if lib.pod:
            how.append(f"CocoaPods `{pod_line(lib, tools)}`")
        if lib.spm:
            how.append(f"or Swift Package Manager {lib.spm}, version {v}"
                       + (f" (its module is `{lib.spm_import}`, not `{lib.swift_import}`: the Swift below imports "
                          "whichever the app has)" if lib.spm_import and lib.spm_import != lib.swift_import else ""))
        out.append(f"- {lib.name}: " + ", ".join(how) + f". {v} is the release of the Python `{lib.tool}` this "
                   "bundle's files were checked with (manifest.json `tools`); after changing it, re-run the golden "
                   "check below.")
    return out


__all__ = ["LIBRARIES", "PINNED", "Library", "coordinates", "gradle_line", "library", "pod_line", "runtime_name",
           "swift_imports"]
