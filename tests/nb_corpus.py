#!/usr/bin/python3
"""The corpus (tests/notebooks/corpus, >= 20 notebooks) executed by
`cellbox run --kernel python3` and by nbclient with the same kernel:
after normalising ids, timings, addresses and stream chunking the executed
notebooks must be identical. Every file cellbox writes must also be exactly
what nbformat.write() makes of it (indent 1, sorted keys, non-ASCII kept,
trailing newline). The corpus is run by cellbox in one command with -j 2,
which tests parallel runs too."""
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
        t.ok(len(notebooks) >= 20, "the corpus has at least 20 notebooks (%d)" % len(notebooks))
        out = os.path.join(tmp, "cellbox")
        r = C.run(["run", "-j", "2", "--kernel", "python3", "--output-dir", out] + notebooks, env=env, timeout=600)
        t.ok(r.returncode == 0, "cellbox run -j 2 --kernel python3 on the corpus exits 0", r.stderr)
        for nbpath in notebooks:
            name = os.path.basename(nbpath)
            mine = os.path.join(out, name)
            if not os.path.exists(mine):
                t.ok(False, "%s: cellbox wrote the executed notebook" % name)
                continue
            text = C.read_text(mine)
            t.ok(text == C.nbformat_rewrite(mine), "%s: the file is byte-identical to nbformat.write()" % name)
            try:
                ref = C.nbclient_execute(nbpath, "python3", work)
            except Exception as e:  # nbclient itself failing is a broken test notebook
                t.ok(False, "%s: nbclient ran it" % name, "%s: %s" % (type(e).__name__, e))
                continue
            a, b = C.normalize(C.load(mine)), C.normalize(ref)
            d = C.first_difference(a, b)
            t.ok(d is None, "%s: cellbox run (python3) == nbclient (python3)" % name, d)
    finally:
        C.rmtree(tmp)
    return t.done()


if __name__ == "__main__":
    sys.exit(C.tap_main(main))
