# tests/: C unit tests (TAP via tests/tap.h) and integration tests that drive
# the real binary with real clients (Python scripts printing TAP, run with
# Debian's /usr/bin/python3).
EXTRA_DIST += tests/tap.h

check_PROGRAMS += tests/t_base
tests_t_base_SOURCES = tests/t_base.c
tests_t_base_LDADD = libcellbox.a $(CB_LIBS)
TESTS += tests/t_base
