# notebooks/: nbformat read/validate/write, the headless executor and
# `cellbox run` (prefix nb_).
libcellbox_a_SOURCES += \
	notebooks/nb_json.c notebooks/nb_json.h \
	notebooks/nb_format.c notebooks/nb_format.h \
	notebooks/nb_exec.c notebooks/nb_exec.h \
	notebooks/nb_papermill.c notebooks/nb_papermill.h \
	notebooks/nb_yaml.c \
	notebooks/nb_run.c

# A helper the format tests use: read + write one notebook.
check_PROGRAMS += tests/nb_rewrite
tests_nb_rewrite_SOURCES = tests/nb_rewrite.c
tests_nb_rewrite_LDADD = libcellbox.a $(CB_LIBS)
