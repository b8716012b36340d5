# notebooks/: nbformat read/validate/write, the headless executor and
# `cellbox run` (prefix nb_).
libcellbox_a_SOURCES += \
	notebooks/nb_json.c notebooks/nb_json.h \
	notebooks/nb_format.c notebooks/nb_format.h \
	notebooks/nb_exec.c notebooks/nb_exec.h \
	notebooks/nb_papermill.c notebooks/nb_papermill.h \
	notebooks/nb_yaml.c notebooks/nb_inspect.c notebooks/nb_pmpath.c \
	notebooks/nb_run.c

# The example notebooks the README shows.
EXTRA_DIST += notebooks/examples/tour.ipynb notebooks/examples/report.ipynb notebooks/examples/fails.ipynb

# A helper the format tests use: read + write one notebook.
check_PROGRAMS += tests/t_nb_rewrite
tests_t_nb_rewrite_SOURCES = tests/t_nb_rewrite.c
tests_t_nb_rewrite_LDADD = libcellbox.a $(CB_LIBS)

# Integration tests (Debian's python3 + nbclient/nbformat, real kernels).
NB_CORPUS = \
	tests/notebooks/corpus/01_expressions.ipynb \
	tests/notebooks/corpus/02_print.ipynb \
	tests/notebooks/corpus/03_stderr.ipynb \
	tests/notebooks/corpus/04_stream_big.ipynb \
	tests/notebooks/corpus/05_display.ipynb \
	tests/notebooks/corpus/06_display_update.ipynb \
	tests/notebooks/corpus/07_clear_output.ipynb \
	tests/notebooks/corpus/08_errors_allowed.ipynb \
	tests/notebooks/corpus/09_skip_execution.ipynb \
	tests/notebooks/corpus/10_markdown_raw.ipynb \
	tests/notebooks/corpus/11_unicode.ipynb \
	tests/notebooks/corpus/12_matplotlib.ipynb \
	tests/notebooks/corpus/13_numpy_pandas.ipynb \
	tests/notebooks/corpus/14_json_output.ipynb \
	tests/notebooks/corpus/15_result_types.ipynb \
	tests/notebooks/corpus/16_functions_classes.ipynb \
	tests/notebooks/corpus/17_empty_cells.ipynb \
	tests/notebooks/corpus/18_magics_shell.ipynb \
	tests/notebooks/corpus/19_cwd_files.ipynb \
	tests/notebooks/corpus/20_subprocess.ipynb \
	tests/notebooks/corpus/21_parameters_cell.ipynb \
	tests/notebooks/corpus/22_carriage_returns.ipynb \
	tests/notebooks/corpus/23_mimebundles.ipynb \
	tests/notebooks/corpus/24_execution_count.ipynb \
	tests/notebooks/corpus/25_stdin_disallowed.ipynb \
	tests/notebooks/corpus/26_widget_comms.ipynb \
	tests/notebooks/corpus/27_shell_escape.ipynb \
	tests/notebooks/corpus/28_output_widget.ipynb \
	tests/notebooks/corpus/corpus_data.txt
NB_BAD = \
	tests/notebooks/bad/bad_execution_count.ipynb \
	tests/notebooks/bad/bad_id.ipynb \
	tests/notebooks/bad/bad_output_type.ipynb \
	tests/notebooks/bad/bad_utf8.ipynb \
	tests/notebooks/bad/expected.json \
	tests/notebooks/bad/missing_outputs.ipynb \
	tests/notebooks/bad/no_cells.ipynb \
	tests/notebooks/bad/not_an_object.ipynb \
	tests/notebooks/bad/not_json.ipynb \
	tests/notebooks/bad/source_number.ipynb \
	tests/notebooks/bad/stream_without_name.ipynb \
	tests/notebooks/bad/tags_not_list.ipynb \
	tests/notebooks/bad/truncated.ipynb \
	tests/notebooks/bad/unknown_cell_type.ipynb
NB_TESTS = tests/nb_format.py tests/nb_params.py tests/nb_run_cli.py tests/nb_examples.py \
	tests/nb_corpus.py tests/nb_corpus_cellbox.py tests/nb_nbclient_files.py tests/nb_other_kernels.py \
	tests/nb_hostile.py tests/nb_audit.py tests/nb_v3.py
NB_V3 = tests/notebooks/v3/cells.ipynb tests/notebooks/v3/outputs.ipynb tests/notebooks/v3/bad_nbformat2.ipynb \
	tests/notebooks/v3/bad_no_cell_type.ipynb tests/notebooks/v3/bad_worksheets_not_list.ipynb
TESTS += $(NB_TESTS)
EXTRA_DIST += $(NB_TESTS) tests/nb_common.py tests/notebooks/make_corpus.py $(NB_CORPUS) $(NB_BAD) $(NB_V3)

# C unit tests (TAP).
check_PROGRAMS += tests/t_nb_json tests/t_nb_outputs tests/t_nb_params
tests_t_nb_json_SOURCES = tests/t_nb_json.c
tests_t_nb_json_LDADD = libcellbox.a $(CB_LIBS)
tests_t_nb_outputs_SOURCES = tests/t_nb_outputs.c
tests_t_nb_outputs_LDADD = libcellbox.a $(CB_LIBS)
tests_t_nb_params_SOURCES = tests/t_nb_params.c
tests_t_nb_params_LDADD = libcellbox.a $(CB_LIBS)
TESTS += tests/t_nb_json tests/t_nb_outputs tests/t_nb_params

# bench/notebook: cellbox run vs jupyter execute (not part of make check).
EXTRA_DIST += bench/notebook/bench.py bench/notebook/README.md
