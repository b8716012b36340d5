#!/usr/bin/python3
"""The corpus executed by `cellbox run` with cellbox's own kernel, compared
with nbclient + ipykernel (python3): for the features both kernels support
the executed notebooks must be identical after normalisation (ids, timings,
addresses, stream chunking; kernel metadata and traceback formatting are
kernel-specific and not compared, ename/evalue are). A notebook whose
metadata.cellbox_test.cellbox says "skip: why" is reported as a TAP skip with
that reason."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nb_common as C  # noqa: E402


def main():
    C.quiet_logs()
    t = C.Tap()
    tmp = C.tempdir()
    try:
        env = C.kernelspec_env(tmp)
        work, notebooks = C.copy_corpus(tmp)
        out = os.path.join(tmp, "cellbox")
        r = C.run(["run", "-j", "2", "--kernel", "cellbox", "--output-dir", out] + notebooks, env=env, timeout=600)
        for nbpath in notebooks:
            name = os.path.basename(nbpath)
            expect = C.load(nbpath)["metadata"].get("cellbox_test", {}).get("cellbox", "same")
            if expect.startswith("skip"):
                t.skip("%s: cellbox kernel == ipykernel" % name, expect[5:].strip())
                continue
            mine = os.path.join(out, name)
            if not os.path.exists(mine):
                t.ok(False, "%s: cellbox run -k cellbox wrote it" % name, r.stderr)
                continue
            nb = C.load(mine)
            t.ok(nb["metadata"].get("kernelspec", {}).get("name") == "cellbox"
                 and nb["metadata"].get("language_info", {}).get("name") == "python",
                 "%s: kernelspec and language_info filled from the cellbox kernel" % name)
            ref = C.nbclient_execute(nbpath, "python3", work)
            d = C.first_difference(C.normalize(nb, kernel_neutral=True), C.normalize(ref, kernel_neutral=True))
            t.ok(d is None, "%s: cellbox kernel == ipykernel" % name, d)
    finally:
        C.rmtree(tmp)
    return t.done()


if __name__ == "__main__":
    sys.exit(C.tap_main(main))
