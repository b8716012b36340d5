# interp/: the embedded CPython (execution, capture, display, images, completion).
# The Python side (interp/py/**.py) is compiled at build time by the
# matching python and embedded as marshalled code (interp/embed.py).
IP_PYFILES = \
	interp/py/_cellbox_boot.py \
	interp/py/cellbox/__init__.py \
	interp/py/cellbox/_kernel.py \
	interp/py/cellbox/_aio.py \
	interp/py/cellbox/_transform.py \
	interp/py/cellbox/_magics.py \
	interp/py/cellbox/_autoreload.py \
	interp/py/cellbox/_complete.py \
	interp/py/cellbox/_inspect.py \
	interp/py/cellbox/_traceback.py \
	interp/py/cellbox/_pretty.py \
	interp/py/cellbox/_comm.py \
	interp/py/cellbox/_inline.py \
	interp/py/cellbox/_ipython.py \
	interp/py/cellbox/_hooks.py \
	interp/py/cellbox/_debugger.py \
	interp/py/cellbox/display.py

libcellbox_a_SOURCES += \
	interp/interp.h \
	interp/capture.c interp/capture.h \
	interp/python.c \
	interp/png.c interp/png.h \
	interp/pymodules.h
nodist_libcellbox_a_SOURCES = interp/pymodules.c
BUILT_SOURCES += interp/pymodules.c
CLEANFILES += interp/pymodules.c
EXTRA_DIST += interp/embed.py $(IP_PYFILES)

# JavaScript / TypeScript (`cellbox kernel --language javascript|typescript`):
# interp/node.c drives a node child running interp/js/runner.js, which is
# embedded as a C string (interp/noderunner.c) and handed to node at start.
libcellbox_a_SOURCES += interp/node.c
nodist_libcellbox_a_SOURCES += interp/noderunner.c
BUILT_SOURCES += interp/noderunner.c
CLEANFILES += interp/noderunner.c
EXTRA_DIST += interp/js/runner.js

interp/noderunner.c: interp/js/runner.js
	$(AM_V_GEN)$(MKDIR_P) interp && $(PYTHON3) -c 'import sys; d = open(sys.argv[1], "rb").read(); \
	print("/* generated from interp/js/runner.js (interp/local.mk) */\n#include <stddef.h>"); \
	print("extern const char ip_node_runner[]; extern const size_t ip_node_runner_len;"); \
	print("const char ip_node_runner[] = {" + ",".join(str(b) for b in d) + ",0};"); \
	print("const size_t ip_node_runner_len = %d;" % len(d))' $(srcdir)/interp/js/runner.js > $@.tmp && mv $@.tmp $@
AM_CPPFLAGS += -DCB_PYTHON3='"$(PYTHON3)"'

interp/pymodules.c: interp/embed.py $(IP_PYFILES)
	$(AM_V_GEN)$(MKDIR_P) interp && cd $(srcdir) && $(PYTHON3) interp/embed.py $(abs_builddir)/$@ interp/py $(IP_PYFILES)

# Rich outputs: parity with ipykernel, the PNG encoder, comms and widgets,
# tracebacks, a real browser (tests/display_*, tests/t_png*, tests/browser_*).
# The real-browser test (Chromium via playwright-core) keeps its screenshot
# as tests/browser_notebook.png in the build folder.
check_PROGRAMS += tests/t_png
tests_t_png_SOURCES = tests/t_png.c
tests_t_png_LDADD = libcellbox.a $(CB_LIBS)
IP_TESTS = \
	tests/display_pretty.py \
	tests/display_parity.py \
	tests/display_libraries.py \
	tests/display_detect.py \
	tests/display_api.py \
	tests/display_traceback.py \
	tests/display_png.py \
	tests/display_updates.py \
	tests/display_widgets.py \
	tests/browser_notebook.py
TESTS += tests/t_png $(IP_TESTS)
EXTRA_DIST += $(IP_TESTS) tests/display_util.py tests/browser_notebook.js \
	bench/images/README.md bench/images/png_bench.py bench/images/image_bench.py
CLEANFILES += tests/browser_notebook.png
