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
EXTRA_DIST += tests/kutil.py tests/kernel_conformance.py tests/kernel_exec.py \
	tests/kernel_interrupt.py tests/kernel_badinput.py tests/kernel_frontends.py
TESTS += \
	tests/kernel_conformance.py \
	tests/kernel_exec.py \
	tests/kernel_interrupt.py \
	tests/kernel_badinput.py

check_PROGRAMS += tests/t_kernel
tests_t_kernel_SOURCES = tests/t_kernel.c
tests_t_kernel_LDADD = libcellbox.a $(CB_LIBS)
TESTS += tests/t_kernel
TESTS += tests/kernel_frontends.py
