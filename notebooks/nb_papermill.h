/* notebooks/nb_papermill.h: what papermill users rely on, without papermill.
 *
 * Parameters: typed like papermill's CLI (-p: True/False/None, int, float,
 * else str; -r: always str; -f: a JSON or YAML file), turned into code for
 * the kernel's language by papermill's translators (Python, R, bash) and
 * injected as a cell tagged "injected-parameters" after the first cell
 * tagged "parameters" (replacing an earlier injected cell; at the top, with
 * a warning, when there is none).
 *
 * Metadata: metadata.papermill (parameters, input/output paths, start/end
 * time, duration, exception...) and cell.metadata.papermill (start_time,
 * end_time, duration, status, exception) exactly as papermill's engine
 * writes them (naive UTC ISO times, durations in seconds as floats); on
 * failure the two red "papermill-error-cell-tag" markdown cells.
 *
 * Parameter sets are cJSON objects in insertion order (a Python dict); the
 * functions below borrow them. *err is owned.
 */
#ifndef NB_PAPERMILL_H
#define NB_PAPERMILL_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "base/buf.h"
#include "notebooks/nb_format.h"

/* -p NAME VALUE: papermill's _resolve_type(). Replaces an earlier value in
 * place (dict update). */
void nb_params_set_typed(cJSON *params, const char *name, const char *value);
/* -r NAME VALUE. */
void nb_params_set_raw(cJSON *params, const char *name, const char *value);
/* -f FILE: a JSON object (or, built with libyaml, a YAML mapping); its
 * keys are merged into params. 0 or -1 with *err. */
int nb_params_load_file(cJSON *params, const char *path, char **err);
/* -y TEXT: the same for inline text (UTF-8; an empty document or null adds
 * nothing). 0 or -1 with *err. */
int nb_params_load_text(cJSON *params, const char *text, size_t len, char **err);
/* -b TEXT: base64 of such a text (papermill's --parameters_base64; the
 * URL-safe alphabet and missing padding are accepted, whitespace ignored).
 * 0 or -1 with *err. */
int nb_params_load_base64(cJSON *params, const char *b64, char **err);
/* dict.update(): every key of more (copied) into params, an existing key
 * keeping its place. */
void nb_params_update(cJSON *params, const cJSON *more);
/* YAML text -> JSON value, papermill's NoDatesSafeLoader semantics (YAML
 * 1.1 scalars: null/~, true/yes/on, ints, floats, .inf/.nan; dates stay
 * strings). NULL + *err without libyaml or on a syntax error. */
cJSON *nb_yaml_parse(const char *text, size_t len, char **err);
bool nb_yaml_supported(void);

/* The translator papermill's registry gives for a kernel name (tried
 * first) or a language: "python", "R", "bash", or NULL when cellbox has
 * none. */
const char *nb_params_translator(const char *kernel_name, const char *language);

/* The injected cell's source ("# Parameters\nx = 1\n") for the kernel's
 * language; kernel_name is tried first, like papermill. NULL + *err when
 * no translator fits or a value cannot be expressed. */
char *nb_params_code(const cJSON *params, const char *kernel_name, const char *language, char **err);

/* papermill's parameterize_notebook(): upgrade to 4.5, inject, record
 * metadata.papermill.parameters. 0 or -1 with *err. */
int nb_params_inject(nb_notebook *nb, const cJSON *params, const char *kernel_name, const char *language,
                     char **err);

/* --report-mode: every code cell gets metadata.jupyter.source_hidden =
 * true (papermill's prepare_notebook_metadata). Other keys of
 * metadata.jupyter are kept (papermill replaces the whole object, a slip:
 * it reads cell.get('jupyter') instead of cell.metadata). */
void nb_pm_report_mode(nb_notebook *nb);

/* papermill's load_notebook_node() additions: upgrade to nbformat 4.5,
 * metadata.papermill defaults, tags [] and papermill {} on every cell. */
void nb_pm_load(nb_notebook *nb);
/* input/output paths; drops the error markers of an earlier failed run. */
void nb_pm_prepare(nb_notebook *nb, const char *input_path, const char *output_path);
void nb_pm_notebook_start(nb_notebook *nb);
void nb_pm_cell_start(cJSON *cell);
void nb_pm_cell_exception(nb_notebook *nb, cJSON *cell);
void nb_pm_cell_complete(cJSON *cell);
void nb_pm_notebook_complete(nb_notebook *nb);
/* raise_for_execution_errors(): a red markdown cell at the top and an
 * anchor cell before the failing one. */
void nb_pm_insert_error_cells(nb_notebook *nb, int cell_index);

/* --help-notebook (nb_inspect.c) -------------------------------------------
 *
 * The parameters a Python parameters cell defines, as papermill's
 * PythonTranslator.inspect() finds them: assignments of one name (also
 * inside if/for/with/try blocks, not inside def or class bodies), with the
 * annotation or "# type:" comment as the type ("None" when neither), the
 * right-hand side as the default (comments dropped, each line stripped,
 * lines joined), the comment after the statement as the help. IPython
 * lines (%magic, !shell, obj?) are ignored. An owned array of
 * {"name", "inferred_type_name", "default", "help"} (never NULL). */
cJSON *nb_params_inspect_python(const char *source);
/* papermill's display_notebook_help() text, from the blank line after the
 * usage line on, appended to out (stdout); a warning for a language
 * without introspection goes to the log. Returns the exit status papermill
 * gives: 0, or 1 when no cell is tagged "parameters". kernel_name and
 * language may be NULL (then the notebook's metadata, else Python). */
int nb_params_help(const nb_notebook *nb, const char *path, const char *kernel_name, const char *language,
                   cb_buf *out);

/* Parameterized paths (nb_pmpath.c) -----------------------------------------
 *
 * papermill's parameterize_path(): the path formatted like Python's
 * path.format(**params) with papermill's built-in `pm` mapping (run_uuid,
 * current_datetime_local, current_datetime_utc; a parameter named pm hides
 * it). Fields {name}, {name[key]}, {name[0]}, {pm[current_datetime_utc].year},
 * conversions !s !r !a and the format-spec mini-language (a datetime's spec
 * is strftime's, %f included); '{{' and '}}' are braces. Values print as
 * Python's str() does (True, None, 1.0). Owned result, or NULL + *err
 * ("Missing parameter 'x'", or what is unsupported). */
typedef struct nb_path_builtins {
    char run_uuid[37];
    long long now_s;    /* one instant for both datetimes */
    int now_us;
} nb_path_builtins;
void nb_path_builtins_init(nb_path_builtins *b);
char *nb_params_path(const char *path, const cJSON *params, const nb_path_builtins *builtins, char **err);

/* "2026-11-26T13:13:03.918002" (datetime.utcnow().isoformat()). */
void nb_pm_isotime(char *buf, size_t n, long long real_us);

#endif
