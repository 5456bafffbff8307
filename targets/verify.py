"""edge-verify BUNDLE: re-check a bundle where it landed.

0. the manifest is read as every client reads it, which bounds what it can
   make a client allocate (runtime_py.limits);
1. every file's sha256 and size against the manifest;
2. every model file's own inputs and outputs (names, shapes, dtypes) against
   the graph the manifest declares for it (runtime_py.modelio; a CoreML spec
   where coremltools is installed): a disagreement is one error line, exit 2;
3. the golden check on every artifact this host can execute: the encoder
   re-run on golden/encoder_inputs.npz (states carried) against PyTorch's
   golden/encoder_outputs.npz within the tolerance of its precision, and the
   decoded golden utterance against golden/transcript.txt;
4. artifacts this host cannot execute (CoreML on Linux) are listed as such;
5. per artifact whose graph our rewrites changed, the build's recorded check
   of the rewritten graph (read from the manifest, not re-run).

Torch-free: it uses the client's own runners, so it runs on a Raspberry Pi.
Exit status 0 when everything checkable passed, 1 on any mismatch, 2 on a
bundle that cannot be read.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from runtime_py.backends import BackendError, IOMismatch, check_artifacts
from runtime_py.decoding import agreement, tokens_to_text
from runtime_py.manifest import Bundle, ManifestError, confined, sha256_path, size_of
from runtime_py.stateloop import INT8_AGREEMENT_BAR, RELATIVE_ERROR_BARS, TOLERANCES, RolloutError
from runtime_py.stream import Model


def check_files(bundle: Bundle) -> list[str]:
    problems = []
    records = [(a.path, a.sha256, a.bytes) for a in bundle.artifacts]
    records += [(f["path"], f["sha256"], f["bytes"]) for f in bundle.files]
    for rel, sha, nbytes in records:
        p = confined(bundle.root, rel)
        if not p.exists():
            problems.append(f"{rel}: missing")
            continue
        got = sha256_path(p)
        if got != sha:
            problems.append(f"{rel}: sha256 {got[:16]}… does not match the manifest's {sha[:16]}… "
                            f"(size {size_of(p)} vs {nbytes} bytes): the file is corrupted or was changed")
    return problems


def _load_npz(bundle: Bundle, rel: str) -> dict:
    z = np.load(bundle.path(rel))
    if not isinstance(z, np.lib.npyio.NpzFile):  # a manifest naming a .npy (or any file) here
        raise ManifestError(f"{rel} is not an .npz archive of golden tensors")
    with z:
        return {k: z[k] for k in z.files}


def golden_check(bundle: Bundle, backend: str, precision: str) -> tuple[bool, str]:
    from runtime_py.backends import open_runner

    sig = bundle.signature
    runs = {g.name: open_runner(bundle.path(bundle.find(g.name, backend, precision).path), g, backend)
            for g in sig.graphs}
    enc = sig.graph("encoder")
    golden = bundle.manifest["golden"]
    inputs = _load_npz(bundle, golden["inputs"]["encoder"])
    expected = _load_npz(bundle, golden["outputs"]["encoder"])
    x_name = enc.inputs[0].name
    n = len([k for k in inputs if k.startswith(x_name + "_")])
    stream = Model(sig, runs, batch=False).create_stream()
    worst = err2 = ref2 = 0.0
    for i in range(n):
        out = stream.step(inputs[f"{x_name}_{i:04d}"])
        for name, value in out.items():
            ref = expected[f"{name}_{i:04d}"].astype(np.float64)
            diff = np.asarray(value, np.float64) - ref
            worst = max(worst, float(np.max(np.abs(diff)))) if diff.size else worst
            err2, ref2 = err2 + float(np.sum(diff ** 2)), ref2 + float(np.sum(ref ** 2))
    tokens = bundle.tokens()
    want = bundle.path(golden["transcript"]).read_text(encoding="utf-8").split()
    got_text = tokens_to_text(stream.tokens, tokens)
    got = got_text.split()
    record = bundle.find("encoder", backend, precision).parity
    if record.get("judged_by") == "relative_error":  # as the build judged it, and for the reason it gives
        rel = float(np.sqrt(err2 / ref2)) if ref2 > 0 else float(np.sqrt(err2))
        bar = RELATIVE_ERROR_BARS[precision]
        return rel <= bar, (f"{n} chunks, relative error {rel:.2e} (bar {bar:g}; {record.get('why', '')})"
                            + (f", transcript {got_text!r}" if sig.decoder != "none" else ""))
    if precision == "int8":
        agree = agreement(want, got)
        ok = agree >= INT8_AGREEMENT_BAR
        return ok, f"{n} chunks, max|diff| {worst:.2e} (int8: not bounded), transcript agreement {agree:.2f} " \
                   f"(bar {INT8_AGREEMENT_BAR}) {got_text!r}"
    tol = TOLERANCES[precision]
    ok = worst <= tol and got == want
    return ok, f"{n} chunks, max|diff| {worst:.2e} (tolerance {tol:g}), transcript {got_text!r}" + \
        ("" if got == want else f" != golden {' '.join(want)!r}")


def _matches(counts: dict) -> str:
    ran = [f"{name} x{n}" for name, n in counts.items() if n]
    return ", ".join(ran) or "none matched"


def rewrite_lines(manifest: dict) -> list[tuple[str, str]]:
    """(mark, line) per artifact whose manifest record says how our graph rewrites went
    (`conversion.route`: the .ort pass, targets/ort_rewrite.py, and the TFLite route's): what ran, the
    build's check of the rewritten graph against the unrewritten one (passed or refused, the figure, the
    tolerance), or that none was allowed (edge-build --ort-rewrites). Read from the manifest, not re-run:
    the golden check above judges the shipped file itself. Mark "x": the record contradicts itself."""
    lines = []
    for a in manifest.get("artifacts", []):
        route = (a.get("conversion") or {}).get("route") or {}
        check, name = route.get("rewrite_check"), a.get("path", "?")
        if not isinstance(check, dict):
            if route.get("rewrites_selected") == []:
                lines.append(("-", f"{name}: no graph rewrite ran (built with --ort-rewrites none)"))
            continue
        refused = "rewrites_refused" in route
        diff, tol = check.get("max_abs_diff"), check.get("tolerance")
        within = isinstance(diff, (int, float)) and isinstance(tol, (int, float)) and diff <= tol
        passed = check.get("passed", within and not refused)  # the TFLite route records no flag: within is passed
        figure = (f"max|diff| {diff:.2e}" if isinstance(diff, (int, float)) else "max|diff| ?") + (
            f", states {check['state_max_scaled_diff']:.2e}" if "state_max_scaled_diff" in check else "") + (
            f" (tolerance {tol:g})" if isinstance(tol, (int, float)) else "")
        where = f"over {check.get('chunks', '?')} chunks against {check.get('against', 'the unrewritten graph')}"
        if refused:
            lines.append(("!", f"{name}: graph rewrites refused ({_matches(route['rewrites_refused'])}): the build's "
                          f"check failed, {figure} {where}; the unrewritten graph ships"))
        elif passed and within:
            lines.append(("✓", f"{name}: graph rewrites {_matches(route.get('rewrites', {}))}; the build's check "
                          f"passed, {figure} {where} (from the manifest, not re-run)"))
        else:
            lines.append(("x", f"{name}: graph rewrites {_matches(route.get('rewrites', {}))}; the manifest says "
                          f"passed={passed} but {figure}: the record contradicts itself"))
    return lines


def verify(bundle_dir: Path | str, out=print) -> int:
    from edge.errors import fail  # one line on stderr, exit 2, like every command's error

    try:
        bundle = Bundle(bundle_dir, verify=False)
        if not bundle.artifacts:  # an OK over nothing would be worse than no check
            raise ManifestError(f"{bundle.root}: the manifest lists no model files (artifacts is empty)")
    except ManifestError as e:
        return fail(str(e))
    failures = 0
    problems = check_files(bundle)
    for p in problems:
        out(f"  [x] {p}")
    failures += len(problems)
    n_files = len(bundle.artifacts) + len(bundle.files)
    unchecked: dict[str, str] = {}
    if not problems:
        try:
            unchecked = check_artifacts(bundle)
            bundle.check_tokens()  # what every client reads first (edge-demo refuses the bundle without it)
        except (IOMismatch, ManifestError) as e:
            return fail(str(e))
        out(f"  [✓] sha256 of {n_files} files match the manifest")
        for rel, why in unchecked.items():
            out(f"  [-] {rel}: inputs and outputs not checked ({why})")
        if len(unchecked) < len(bundle.artifacts):
            out(f"  [✓] inputs and outputs of {len(bundle.artifacts) - len(unchecked)} model file(s) match "
                "the manifest's signature")
    for backend, precision in bundle.backends():
        label = f"{backend} {precision}"
        if backend == "coreml":
            checked = not any(a.path in unchecked for a in bundle.artifacts if a.backend == backend)
            out(f"  [-] {label}: not executable on this host (CoreML runs on Apple platforms); its spec's I/O "
                + ("was checked above" if checked and not problems else "was checked at build time"))
            continue
        if problems:
            out(f"  [-] {label}: golden check skipped (files do not match the manifest)")
            continue
        try:
            ok, msg = golden_check(bundle, backend, precision)
        except ImportError as e:
            out(f"  [-] {label}: not checked, runtime missing here ({e})")
            continue
        except (ManifestError, BackendError, RolloutError, KeyError, ValueError, OSError) as e:  # e.g. golden/ gone
            ok, msg = False, f"{type(e).__name__}: {e}"
        out(f"  [{'✓' if ok else 'x'}] {label} golden: {msg}")
        failures += not ok
    for mark, line in rewrite_lines(bundle.manifest):
        out(f"  [{mark}] {line}")
        failures += mark == "x"
    from .loads import not_converted_line
    missing = not_converted_line(bundle.manifest, bundle.artifacts)
    if missing:  # not a failure of what the bundle holds, but what the app gets differs from the target's default
        out(f"  [!] {missing}")
    out(f"{'FAILED' if failures else 'OK'}: {bundle.root}" + (f" ({failures} problem(s))" if failures else "")
        + (f"; {missing.split(';')[0]}" if missing else ""))
    return 1 if failures else 0


def build_parser():
    from edge.cliutil import add_verbose, make_parser

    p = make_parser("edge-verify", __doc__)
    p.add_argument("bundle", type=Path, help="bundle folder made by edge-build")
    add_verbose(p)
    return p


def main(argv=None) -> int:
    from edge.cliutil import quiet_libraries

    args = build_parser().parse_args(argv)
    quiet_libraries(args.verbose)
    return verify(args.bundle)


if __name__ == "__main__":
    sys.exit(main())
