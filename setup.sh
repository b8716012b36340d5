#!/bin/sh
# setup.sh: set up cellbox on Debian 12 (bookworm) from a fresh checkout.
#
#   sh setup.sh          install the Debian packages, build, install (to /usr/local),
#                        install the Jupyter kernelspec, then run the demo: a real
#                        Jupyter client (jupyter console) runs code on the cellbox kernel,
#                        and `cellbox run` executes the example tour notebook
#   sh setup.sh test     install the packages the tests need, build, run the whole test suite
#
# Runs apt-get and `make install` through sudo when not root. Safe to re-run.
set -eu
cd "$(dirname "$0")"
MODE=${1:-main}

# What building needs.
BUILD_DEPS="build-essential autoconf automake pkg-config libzmq3-dev libsodium-dev libcjson-dev
  libpng-dev python3-dev libmicrohttpd-dev libyaml-dev"
# What running the kernels with the usual scientific stack and frontends needs
# (nodejs and node-typescript: the JavaScript and TypeScript kernels;
# python3-debugpy: JupyterLab's visual debugger; git: the sandboxes'
# git/checkout, which runs the host's git inside the sandbox; s3fs: buckets
# mounted into sandboxes, POST …/mounts).
RUN_DEPS="python3 python3-jupyter-client jupyter-console python3-nbclient python3-nbformat
  python3-ipython python3-jedi python3-numpy python3-matplotlib python3-pandas python3-comm
  python3-ipywidgets python3-debugpy nodejs node-typescript git s3fs"
# What the test suite needs on top (real peers and real clients).
TEST_DEPS="python3-jupyter-kernel-test python3-ipykernel python3-zmq python3-pil python3-line-profiler python3-memory-profiler cython3 python3-sympy python3-plotly python3-altair python3-seaborn python3-rich python3-tqdm python3-click r-cran-irkernel xpython curl
  iproute2 iptables bubblewrap valgrind nftables util-linux e2fsprogs procps chromium jupyter-notebook python3-websocket"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

pkgs="$BUILD_DEPS $RUN_DEPS"
[ "$MODE" = test ] && pkgs="$pkgs $TEST_DEPS"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "== installing Debian packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

echo "== building"
[ -x configure ] || autoreconf -fi
[ -f Makefile ] || ./configure --quiet
make -j"$(nproc)"

case "$MODE" in
test)
    # the browser test: playwright-core from npm drives Debian's chromium (skipped without it)
    if ! command -v npm >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
    fi
    [ -d "$(npm root -g)/playwright-core" ] || $SUDO npm install -g --no-fund --no-audit playwright-core@1.61.1
    # xterm.js for the terminal's browser test (docs/api.md's example)
    [ -d "$(npm root -g)/@xterm/xterm" ] || $SUDO npm install -g --no-fund --no-audit @xterm/xterm@6.0.0
    echo "== running the test suite"
    if ! make -j"$(nproc)" check; then
        # what failed and why, from the failing tests' own logs (CI shows
        # only this terminal output)
        for trs in $(grep -l -E '^:global-test-result: (FAIL|ERROR)' tests/*.trs 2>/dev/null); do
            log="${trs%.trs}.log"
            echo "== $log"
            grep -E -A30 '^not ok|^Traceback|^Bail out' "$log" | head -120
            echo "-- its last lines:"
            tail -n 15 "$log"
        done
        exit 1
    fi
    ;;
main)
    echo "== installing"
    $SUDO make install
    $SUDO /usr/local/bin/cellbox kernelspec install
    $SUDO /usr/local/bin/cellbox kernelspec install --language javascript
    $SUDO /usr/local/bin/cellbox kernelspec install --language typescript
    echo "== demo: jupyter console running cells on the cellbox kernel"
    /usr/bin/jupyter-console --kernel cellbox --simple-prompt <<'CELLS'
import sys, platform; print("Python", platform.python_version(), "in", sys.executable)
sum(i * i for i in range(10))
from IPython.display import display, Markdown; display(Markdown("**rich** output"))
1 / 0
import numpy as np; np.linspace(0, 1, 5)
CELLS
    out=$(mktemp -d)
    echo "== demo: cellbox run notebooks/examples/tour.ipynb -o $out/tour.ipynb --log-output"
    /usr/local/bin/cellbox run notebooks/examples/tour.ipynb -o "$out/tour.ipynb" --log-output
    echo "== the executed notebook is in $out/tour.ipynb"
    ;;
*)
    echo "usage: sh setup.sh [test]" >&2
    exit 2
    ;;
esac
