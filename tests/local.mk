# tests/: C unit tests (TAP via tests/tap.h) and integration tests that drive
# the real binary with real clients (Python scripts printing TAP, run with
# Debian's /usr/bin/python3).
EXTRA_DIST += tests/tap.h

check_PROGRAMS += tests/t_base
tests_t_base_SOURCES = tests/t_base.c
tests_t_base_LDADD = libcellbox.a $(CB_LIBS)
TESTS += tests/t_base

check_PROGRAMS += tests/t_wire
tests_t_wire_SOURCES = tests/t_wire.c
tests_t_wire_LDADD = libcellbox.a $(CB_LIBS)
TESTS += tests/t_wire

# Integration tests of the kernel with Debian's jupyter_client & co.
EXTRA_DIST += tests/kutil.py tests/ports.py tests/kernel_conformance.py tests/kernel_exec.py \
	tests/kernel_interrupt.py tests/kernel_badinput.py tests/kernel_frontends.py \
	tests/kernel_extensions.py tests/kernel_magics.py tests/kernel_asyncio.py tests/kernel_env.py tests/kernel_input.py tests/kernel_complete.py tests/kernel_magics2.py \
	tests/kernel_magics3.py tests/kernel_debugger.py tests/kernel_audit.py tests/kernel_crash.py
TESTS += \
	tests/kernel_conformance.py \
	tests/kernel_exec.py \
	tests/kernel_extensions.py \
	tests/kernel_magics.py \
	tests/kernel_asyncio.py \
	tests/kernel_env.py \
	tests/kernel_input.py \
	tests/kernel_complete.py \
	tests/kernel_magics2.py \
	tests/kernel_magics3.py \
	tests/kernel_debugger.py \
	tests/kernel_audit.py \
	tests/kernel_interrupt.py \
	tests/kernel_badinput.py \
	tests/kernel_crash.py

check_PROGRAMS += tests/t_kernel
tests_t_kernel_SOURCES = tests/t_kernel.c
tests_t_kernel_LDADD = libcellbox.a $(CB_LIBS)
TESTS += tests/t_kernel
TESTS += tests/kernel_frontends.py

# The JavaScript and TypeScript kernels (--language javascript|typescript,
# interp/node.c): needs node (Debian: nodejs) and node-typescript.
EXTRA_DIST += tests/kernel_js.py
TESTS += tests/kernel_js.py

# Fuzz targets, replayed over their seed corpora by make check (any
# compiler); tests/fuzz/run.sh fuzzes them for real with clang's libFuzzer.
check_PROGRAMS += tests/fuzz_wire_replay tests/fuzz_notebook_replay
tests_fuzz_wire_replay_SOURCES = tests/fuzz/driver.c tests/fuzz/fuzz_wire.c tests/fuzz/fuzz.h
tests_fuzz_wire_replay_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_CORPUS='"tests/fuzz/corpus_wire"'
tests_fuzz_wire_replay_LDADD = libcellbox.a $(CB_LIBS)
tests_fuzz_notebook_replay_SOURCES = tests/fuzz/driver.c tests/fuzz/fuzz_notebook.c tests/fuzz/fuzz.h
tests_fuzz_notebook_replay_CPPFLAGS = $(AM_CPPFLAGS) -DFUZZ_CORPUS='"tests/notebooks/corpus:tests/notebooks/bad:tests/fuzz/corpus_notebook"'
tests_fuzz_notebook_replay_LDADD = libcellbox.a $(CB_LIBS)
TESTS += tests/fuzz_wire_replay tests/fuzz_notebook_replay
EXTRA_DIST += tests/fuzz/run.sh tests/fuzz/corpus_wire tests/fuzz/corpus_notebook

fuzz:
	@test -n "$(FUZZ_TARGET)" || { echo "make fuzz FUZZ_TARGET=wire|notebook [FUZZ_SECONDS=60]"; exit 2; }
	$(SHELL) $(srcdir)/tests/fuzz/run.sh $(FUZZ_TARGET) $(FUZZ_SECONDS)
.PHONY: fuzz

# Code contexts of `cellbox serve` (a cellbox kernel per context, inside the
# sandbox); with the other sandbox tests (tests/sandbox_lib.py, needs root).
EXTRA_DIST += tests/sandbox_contexts.py
TESTS += tests/sandbox_contexts.py

# File watching of `cellbox serve` (POST .../files/watch, inotify as SSE).
EXTRA_DIST += tests/sandbox_watch.py
TESTS += tests/sandbox_watch.py
# File names that are not UTF-8 (U+FFFD + …Base64 in replies, pathBase64 in
# requests) and bodies holding \u0000; needs root.
EXTRA_DIST += tests/sandbox_names.py
TESTS += tests/sandbox_names.py
# The egress policy (allowOut/denyOut, default-denied ranges) with real
# connections to addresses of each range; needs root, ip and nft.
EXTRA_DIST += tests/sandbox_netpolicy.py
TESTS += tests/sandbox_netpolicy.py

# gitCheckout and directory backups of `cellbox serve` (git clone and tar run
# inside the sandbox); with the other sandbox tests (needs root; git for the
# first: the sandbox's /usr is the host's).
EXTRA_DIST += tests/sandbox_git.py tests/sandbox_backup.py tests/sandbox_fork.py tests/sandbox_mount.py tests/s3_server.py tests/sandbox_meta.py tests/sandbox_capacity.py tests/sandbox_audit.py tests/sandbox_upgrade.py tests/sandbox_shared.py
TESTS += tests/sandbox_git.py tests/sandbox_backup.py tests/sandbox_fork.py tests/sandbox_mount.py tests/sandbox_meta.py tests/sandbox_capacity.py tests/sandbox_audit.py tests/sandbox_upgrade.py tests/sandbox_shared.py

# Terminals of `cellbox serve` over WebSocket (sandbox/sb_pty.c): the frame
# codec alone (sandbox/sb_ws.c), then the real server (needs root).
check_PROGRAMS += tests/t_sb_ws
tests_t_sb_ws_SOURCES = tests/t_sb_ws.c
tests_t_sb_ws_LDADD = libcellbox.a $(CB_LIBS)
TESTS += tests/t_sb_ws
EXTRA_DIST += tests/sandbox_pty.py
TESTS += tests/sandbox_pty.py
# ... and docs/api.md's xterm.js example in headless Chromium (playwright-core
# and @xterm/xterm from npm; skipped without them); the screenshot is kept.
EXTRA_DIST += tests/browser_terminal.py tests/browser_terminal.js tests/browser_util.py
TESTS += tests/browser_terminal.py
CLEANFILES += tests/browser_terminal.png
