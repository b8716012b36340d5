/* notebooks/nb_run.c: `cellbox run`, the headless notebook executor.
 *
 * The story of one run:
 *   1. options are parsed from a table (papermill's spellings are aliases),
 *      then checked as a whole (-o with one input, --inplace alone...);
 *      --help-notebook only reads the notebooks and prints their parameters
 *   2. every input gets its output path up front, so that a bad
 *      combination (an input overwritten without --inplace, two inputs
 *      writing the same file) fails before any kernel starts
 *   3. N workers (-j) take notebooks in order; each reads and validates
 *      its notebook, picks the kernel, injects parameters (papermill mode),
 *      executes it (nb_execute, which hands back the partial notebook to
 *      save now and then, papermill's request_save_on_cell_execute and
 *      autosave_cell_every) and writes the result atomically; stream text
 *      goes to --stdout-file/--stderr-file as it arrives
 *   4. the main thread draws the progress bar on a TTY; results and
 *      failures are printed in input order at the end
 * SIGINT/SIGTERM/SIGHUP make every worker stop its cell, write what it has
 * and shut its kernel down (exit status 130).
 *
 * Exit status: 0 all notebooks ran cleanly, 1 at least one failed (its
 * reason is printed on one line naming the notebook and the cell), 2 bad
 * usage, 130 interrupted. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "kernel/client.h"
#include "kernel/kernelspec.h"
#include "main.h"
#include "notebooks/nb_exec.h"
#include "notebooks/nb_format.h"
#include "notebooks/nb_json.h"
#include "notebooks/nb_papermill.h"

/* ================================================================= options */

typedef struct run_opts {
    char **inputs;
    int n_inputs;
    const char *output;
    const char *output_dir;
    bool inplace;
    const char *kernel;
    const char *cwd;
    double timeout, startup_timeout, hb_timeout, interrupt_timeout;
    bool allow_errors, log_output, no_timing, prepare_only;
    char **allow_error_names;   /* NULL-terminated, owned */
    size_t n_allow_error_names;
    int progress;               /* -1 auto, 0 off, 1 on */
    int jobs;
    cJSON *params;              /* name -> value, insertion order */
    cJSON *param_rank;          /* name -> the papermill rank of the option that set it */
    bool have_params;
    bool inject_input, inject_output;  /* PAPERMILL_INPUT_PATH / PAPERMILL_OUTPUT_PATH */
    const char *language;       /* --language: for the parameters' translator */
    bool report_mode;
    const char *stream_file[2]; /* --stdout-file, --stderr-file */
    bool save_progress;         /* --request-save-on-cell-execute (default) */
    double autosave_every;      /* --autosave-cell-every, 0 = off */
    int log_level;              /* --log-level, -1 = CELLBOX_LOG or warnings */
    bool help, help_notebook, version;
} run_opts;

enum {
    O_OUTPUT = 1, O_OUTPUT_DIR, O_INPLACE, O_KERNEL, O_CWD, O_TIMEOUT, O_STARTUP, O_HB, O_INTERRUPT, O_ALLOW_ERRORS,
    O_LOG_OUTPUT, O_NO_TIMING, O_PROGRESS, O_NO_PROGRESS, O_JOBS, O_PARAM, O_PARAM_RAW, O_PARAM_FILE,
    O_PARAM_YAML, O_PREPARE_ONLY, O_HELP, O_ALLOW_ERROR_NAME, O_PARAM_B64, O_INJECT_INPUT, O_INJECT_OUTPUT,
    O_INJECT_PATHS, O_REPORT, O_NO_REPORT, O_HELP_NOTEBOOK, O_STDOUT_FILE, O_STDERR_FILE, O_SAVE, O_NO_SAVE,
    O_AUTOSAVE, O_LOG_LEVEL, O_LANGUAGE, O_ENGINE, O_NO_LOG_OUTPUT, O_PREPARE_EXECUTE, O_VERSION,
};

static const struct opt_def {
    const char *longname;   /* "--output" */
    char shortname;         /* 'o' or 0 */
    int id;
    int nargs;              /* 0, 1 or 2 */
} opt_defs[] = {
    {"output", 'o', O_OUTPUT, 1},
    {"output-dir", 0, O_OUTPUT_DIR, 1},
    {"inplace", 0, O_INPLACE, 0},
    {"kernel", 'k', O_KERNEL, 1},
    {"cwd", 0, O_CWD, 1},
    {"timeout", 't', O_TIMEOUT, 1},
    {"execution-timeout", 0, O_TIMEOUT, 1},        /* papermill */
    {"startup-timeout", 0, O_STARTUP, 1},
    {"start-timeout", 0, O_STARTUP, 1},            /* papermill */
    {"start_timeout", 0, O_STARTUP, 1},
    {"heartbeat-timeout", 0, O_HB, 1},
    {"interrupt-timeout", 0, O_INTERRUPT, 1},
    {"allow-errors", 0, O_ALLOW_ERRORS, 0},
    {"allow-error-name", 0, O_ALLOW_ERROR_NAME, 1},
    {"log-output", 0, O_LOG_OUTPUT, 0},
    {"no-log-output", 0, O_NO_LOG_OUTPUT, 0},       /* papermill */
    {"stdout-file", 0, O_STDOUT_FILE, 1},
    {"stderr-file", 0, O_STDERR_FILE, 1},
    {"log-level", 0, O_LOG_LEVEL, 1},
    {"no-timing", 0, O_NO_TIMING, 0},
    {"progress", 0, O_PROGRESS, 0},
    {"progress-bar", 0, O_PROGRESS, 0},            /* papermill */
    {"no-progress", 0, O_NO_PROGRESS, 0},
    {"no-progress-bar", 0, O_NO_PROGRESS, 0},      /* papermill */
    {"jobs", 'j', O_JOBS, 1},
    {"parameters", 'p', O_PARAM, 2},
    {"parameters_raw", 'r', O_PARAM_RAW, 2},
    {"parameters-raw", 0, O_PARAM_RAW, 2},
    {"parameters_file", 'f', O_PARAM_FILE, 1},
    {"parameters-file", 0, O_PARAM_FILE, 1},
    {"parameters_yaml", 'y', O_PARAM_YAML, 1},
    {"parameters-yaml", 0, O_PARAM_YAML, 1},
    {"parameters_base64", 'b', O_PARAM_B64, 1},
    {"parameters-base64", 0, O_PARAM_B64, 1},
    {"inject-input-path", 0, O_INJECT_INPUT, 0},
    {"inject-output-path", 0, O_INJECT_OUTPUT, 0},
    {"inject-paths", 0, O_INJECT_PATHS, 0},
    {"language", 'l', O_LANGUAGE, 1},
    {"prepare-only", 0, O_PREPARE_ONLY, 0},
    {"prepare-execute", 0, O_PREPARE_EXECUTE, 0},   /* papermill */
    {"report-mode", 0, O_REPORT, 0},
    {"no-report-mode", 0, O_NO_REPORT, 0},
    {"not-report-mode", 0, O_NO_REPORT, 0},         /* papermill 1.x */
    {"request-save-on-cell-execute", 0, O_SAVE, 0},
    {"no-request-save-on-cell-execute", 0, O_NO_SAVE, 0},
    {"autosave-cell-every", 0, O_AUTOSAVE, 1},
    {"engine", 0, O_ENGINE, 1},
    {"help-notebook", 0, O_HELP_NOTEBOOK, 0},
    {"help", 'h', O_HELP, 0},
    {"version", 0, O_VERSION, 0},
};

static void usage(FILE *out)
{
    fprintf(out,
        "usage: cellbox run [OPTIONS] NOTEBOOK.ipynb [MORE.ipynb ...]\n"
        "\n"
        "Execute notebooks headlessly, like nbclient/papermill, and write the executed\n"
        "notebooks. By default NAME.ipynb is written to NAME.out.ipynb next to it; the\n"
        "input is never overwritten without --inplace. Cells are numbered from 1.\n"
        "A notebook named '-' is read from stdin (and written to stdout by default).\n"
        "\n"
        "Output:\n"
        "  -o, --output PATH          where to write (one input only; '-' = stdout)\n"
        "      --output-dir DIR       write each result as DIR/NAME.ipynb\n"
        "      --inplace              overwrite the input notebooks\n"
        "  Paths may name parameters like papermill's: -o 'out/{region}_{n:03d}.ipynb'\n"
        "  -p region eu -p n 7; {pm[run_uuid]} and {pm[current_datetime_utc]:%%Y%%m%%d}\n"
        "  are built in; '{{' and '}}' are braces.\n"
        "Kernel:\n"
        "  -k, --kernel NAME          an installed kernelspec (python3, xpython, ir...), or\n"
        "                             cellbox, cellbox-javascript, cellbox-typescript: the\n"
        "                             kernels of this cellbox binary; default: the\n"
        "                             notebook's own kernelspec when it is installed, else\n"
        "                             cellbox's kernel for its language (Python, JavaScript,\n"
        "                             TypeScript)\n"
        "      --cwd DIR              the kernel's working directory (default: the\n"
        "                             notebook's folder)\n"
        "      --startup-timeout S    seconds for the kernel to become ready (default 60)\n"
        "      --heartbeat-timeout S  a kernel silent on its heartbeat this long is dead\n"
        "                             (default 10, 0 = off)\n"
        "Execution:\n"
        "  -t, --timeout S            per cell; on expiry the kernel is interrupted, the cell\n"
        "                             gets a CellTimeoutError and the run fails (default and\n"
        "                             0 or -1: none)\n"
        "      --interrupt-timeout S  a kernel still busy this long after that interrupt is\n"
        "                             stopped (default 10)\n"
        "      --allow-error-name NAME  go on after errors of this class only (e.g.\n"
        "                             ValueError; repeatable or comma-separated)\n"
        "      --allow-errors         go on after a cell raises (one cell: tag it\n"
        "                             raises-exception); cells tagged skip-execution are skipped\n"
        "  -j, --jobs N               run N notebooks at once, each with its own kernel\n"
        "      --no-timing            do not record cell.metadata.execution\n"
        "      --log-output           print cell outputs as they arrive\n"
        "      --stdout-file FILE     write the cells' stdout stream text to FILE as it\n"
        "                             arrives ('-' = stdout)\n"
        "      --stderr-file FILE     the same for their stderr\n"
        "      --progress, --no-progress  progress bar (default: on when stderr is a terminal)\n"
        "      --log-level LEVEL      DEBUG, INFO, WARNING (default), ERROR or CRITICAL\n"
        "Saving progress (a run that is killed leaves the notebook as far as it got):\n"
        "      --no-request-save-on-cell-execute  write the notebook only at the end\n"
        "                             (default: also after a cell, at most once a second)\n"
        "      --autosave-cell-every S  while a cell runs, write the notebook every S\n"
        "                             seconds (default 30, 0 = off)\n"
        "  Notebooks written to stdout (-o -) are written once, at the end.\n"
        "Parameters (papermill-compatible; they also turn on papermill's metadata):\n"
        "  -p, --parameters NAME VALUE       typed: True/False/None, int, float, else str\n"
        "  -r, --parameters_raw NAME VALUE   always a string\n"
        "  -f, --parameters_file FILE        a JSON%s file with a mapping of names to values\n"
        "  -y, --parameters_yaml TEXT        the same, inline\n"
        "  -b, --parameters_base64 TEXT      the same, base64-encoded\n"
        "      --inject-input-path           PAPERMILL_INPUT_PATH = the notebook's path\n"
        "      --inject-output-path          PAPERMILL_OUTPUT_PATH = the output's path\n"
        "      --inject-paths                both\n"
        "  -l, --language LANG               write the parameters in LANG (python, R, bash)\n"
        "                                    when the kernel's name does not say\n"
        "      --prepare-only                inject the parameters and write, do not execute\n"
        "      --report-mode                 hide the code cells' input (jupyter.source_hidden)\n"
        "      --help-notebook               print the parameters the notebook's cell tagged\n"
        "                                    parameters defines (type, default, help), exit\n"
        "  The values go into a cell tagged injected-parameters, after the first cell\n"
        "  tagged parameters, written in the kernel's language (Python, R or bash).\n"
        "  papermill's spellings work too: --start-timeout, --execution-timeout,\n"
        "  --progress-bar, --no-progress-bar, --engine nbclient. --version: the version.\n"
        "\n"
        "Exit status: 0 all notebooks ran cleanly; 1 one failed (a one-line reason names\n"
        "the notebook and the cell; the partial notebook is still written); 2 bad usage;\n"
        "130 interrupted.\n",
        nb_yaml_supported() ? " or YAML" : "");
}

static int bad_usage(const char *fmt, ...) CB_PRINTF(1, 2);
static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    fputs("cellbox run: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(see 'cellbox run --help')\n", stderr);
    return 2;
}

/* negative_none: a negative number means none (0), as nbclient's and
 * papermill's timeout of -1 */
static int parse_seconds(const char *opt, const char *v, double *out, bool negative_none)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (negative_none && !errno && end != v && !*end && d < 0)
        d = 0;
    /* NaN compares false with everything: as a timeout it never expired */
    if (errno || end == v || *end || !(d >= 0))
        return bad_usage("%s needs a number of seconds >= 0, not '%s'", opt, v);
    *out = d;
    return 0;
}

/* papermill builds its parameters kind by kind, whatever the order on the
 * command line: -b, then -f, then -y, then -p, then -r (each a dict update,
 * so `-p n 1 -f defaults.yaml` gives n = 1). A name keeps the place where it
 * first appeared; its value comes from the highest-ranked option that set
 * it (the last of them within one kind). */
static void params_merge(run_opts *o, const cJSON *got, int kind)
{
    int rank = kind == O_PARAM_B64 ? 1 : kind == O_PARAM_FILE ? 2 : kind == O_PARAM_YAML ? 3 : kind == O_PARAM ? 4 : 5;
    for (const cJSON *k = got->child; k; k = k->next) {
        const cJSON *had = cJSON_GetObjectItemCaseSensitive(o->param_rank, k->string);
        if (had && had->valueint > rank)
            continue;
        cb_json_set(o->params, k->string, nb_json_dup(k));  /* in place when the name is there */
        cb_json_set(o->param_rank, k->string, cJSON_CreateNumber(rank));
    }
}

static int apply_opt(run_opts *o, const struct opt_def *d, const char *spelled, char **vals)
{
    char *err = NULL;
    switch (d->id) {
    case O_OUTPUT: o->output = vals[0]; break;
    case O_OUTPUT_DIR: o->output_dir = vals[0]; break;
    case O_INPLACE: o->inplace = true; break;
    case O_KERNEL: o->kernel = vals[0]; break;
    case O_CWD: o->cwd = vals[0]; break;
    case O_TIMEOUT: return parse_seconds(spelled, vals[0], &o->timeout, true);
    case O_STARTUP: return parse_seconds(spelled, vals[0], &o->startup_timeout, false);
    case O_HB: return parse_seconds(spelled, vals[0], &o->hb_timeout, false);
    case O_INTERRUPT: return parse_seconds(spelled, vals[0], &o->interrupt_timeout, false);
    case O_ALLOW_ERRORS: o->allow_errors = true; break;
    case O_ALLOW_ERROR_NAME: {
        /* NAME or NAME,NAME...; repeatable */
        cb_autofree char *copy = cb_strdup(vals[0]);
        char *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            o->allow_error_names = cb_realloc(o->allow_error_names, (o->n_allow_error_names + 2) * sizeof(char *));
            o->allow_error_names[o->n_allow_error_names++] = cb_strdup(t);
            o->allow_error_names[o->n_allow_error_names] = NULL;
        }
        break;
    }
    case O_LOG_OUTPUT: o->log_output = true; break;
    case O_NO_TIMING: o->no_timing = true; break;
    case O_PROGRESS: o->progress = 1; break;
    case O_NO_PROGRESS: o->progress = 0; break;
    case O_JOBS: {
        char *end;
        long n = strtol(vals[0], &end, 10);
        if (*end || end == vals[0] || n < 1 || n > 256)
            return bad_usage("%s needs a number of jobs (1-256), not '%s'", spelled, vals[0]);
        o->jobs = (int)n;
        break;
    }
    case O_PARAM:
    case O_PARAM_RAW:
    case O_PARAM_FILE:
    case O_PARAM_YAML:
    case O_PARAM_B64: {
        cJSON *got = cJSON_CreateObject();
        int r = 0;
        if (d->id == O_PARAM)
            nb_params_set_typed(got, vals[0], vals[1]);
        else if (d->id == O_PARAM_RAW)
            nb_params_set_raw(got, vals[0], vals[1]);
        else if (d->id == O_PARAM_FILE)
            r = nb_params_load_file(got, vals[0], &err);
        else if (d->id == O_PARAM_YAML)
            r = nb_params_load_text(got, vals[0], strlen(vals[0]), &err);
        else
            r = nb_params_load_base64(got, vals[0], &err);
        if (r < 0) {
            cJSON_Delete(got);
            int rc = d->id == O_PARAM_FILE ? bad_usage("%s", err) : bad_usage("%s: %s", spelled, err);
            free(err);
            return rc;
        }
        params_merge(o, got, d->id);
        cJSON_Delete(got);
        o->have_params = true;
        break;
    }
    case O_INJECT_INPUT: o->inject_input = true; break;
    case O_INJECT_OUTPUT: o->inject_output = true; break;
    case O_INJECT_PATHS: o->inject_input = o->inject_output = true; break;
    case O_LANGUAGE:
        if (!*vals[0])
            return bad_usage("%s needs a language name (python, R, bash)", spelled);
        o->language = vals[0];
        break;
    case O_PREPARE_ONLY: o->prepare_only = true; break;
    case O_PREPARE_EXECUTE: o->prepare_only = false; break;
    case O_REPORT: o->report_mode = true; break;
    case O_NO_REPORT: o->report_mode = false; break;
    case O_NO_LOG_OUTPUT: o->log_output = false; break;
    case O_STDOUT_FILE:
    case O_STDERR_FILE:
        if (!*vals[0])
            return bad_usage("%s needs a file name", spelled);
        o->stream_file[d->id == O_STDERR_FILE] = vals[0];
        break;
    case O_SAVE: o->save_progress = true; break;
    case O_NO_SAVE: o->save_progress = false; break;
    case O_AUTOSAVE: return parse_seconds(spelled, vals[0], &o->autosave_every, false);
    case O_LOG_LEVEL: {
        /* papermill's choices (Python's logging levels); CRITICAL has no
         * level of its own here: errors are the least cellbox says */
        static const struct {
            const char *name;
            int level;
        } levels[] = {{"NOTSET", CB_LOG_DEBUG}, {"DEBUG", CB_LOG_DEBUG}, {"INFO", CB_LOG_INFO},
                      {"WARNING", CB_LOG_WARN}, {"WARN", CB_LOG_WARN},   {"ERROR", CB_LOG_ERROR},
                      {"CRITICAL", CB_LOG_ERROR}};
        o->log_level = -1;
        for (size_t k = 0; k < CB_ARRAY_LEN(levels) && o->log_level < 0; k++)
            if (strcasecmp(vals[0], levels[k].name) == 0)
                o->log_level = levels[k].level;
        if (o->log_level < 0)
            return bad_usage("%s needs one of NOTSET, DEBUG, INFO, WARNING, ERROR, CRITICAL, not '%s'", spelled,
                             vals[0]);
        break;
    }
    case O_ENGINE:
        /* papermill's default engine is nbclient, which cellbox's executor
         * follows; other engines are papermill plugins cellbox cannot load */
        if (strcmp(vals[0], "nbclient") != 0 && strcmp(vals[0], "cellbox") != 0)
            return bad_usage("%s '%s': cellbox run has one engine, nbclient's behaviour (--engine nbclient or "
                             "cellbox); papermill's engine plugins are not supported",
                             spelled, vals[0]);
        break;
    case O_HELP: o->help = true; break;
    case O_VERSION: o->version = true; break;
    case O_HELP_NOTEBOOK: o->help_notebook = true; break;
    }
    return 0;
}

/* A small argv parser: options may come after the notebooks (papermill's
 * habit), take 0-2 values, --long=value and -xVALUE work, "--" ends them. */
static int parse_args(run_opts *o, int argc, char **argv)
{
    o->inputs = cb_calloc((size_t)argc + 1, sizeof *o->inputs);
    bool only_positional = false;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_positional || a[0] != '-' || strcmp(a, "-") == 0) {
            o->inputs[o->n_inputs++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_positional = true;
            continue;
        }
        const struct opt_def *d = NULL;
        char *inline_val = NULL;
        if (a[1] == '-') {
            char *eq = strchr(a, '=');
            size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            for (size_t k = 0; k < CB_ARRAY_LEN(opt_defs) && !d; k++)
                if (strlen(opt_defs[k].longname) == n && strncmp(opt_defs[k].longname, a + 2, n) == 0)
                    d = &opt_defs[k];
            if (d && eq)
                inline_val = eq + 1;
        } else {
            for (size_t k = 0; k < CB_ARRAY_LEN(opt_defs) && !d; k++)
                if (opt_defs[k].shortname == a[1])
                    d = &opt_defs[k];
            if (d && a[2])
                inline_val = a + 2;
        }
        if (!d)
            return bad_usage("unknown option '%s'", a);
        if (inline_val && d->nargs != 1)
            return bad_usage("option '%s' does not take a value that way", a);
        char *vals[2] = {inline_val, NULL};
        int need = d->nargs - (inline_val ? 1 : 0);
        for (int k = 0; k < need; k++) {
            if (i + 1 >= argc)
                return bad_usage("option '%s' needs %d value%s", a, d->nargs, d->nargs > 1 ? "s" : "");
            vals[inline_val ? 1 : k] = argv[++i];
        }
        int rc = apply_opt(o, d, a, vals);
        if (rc)
            return rc;
    }
    return 0;
}

/* ============================================================ one notebook */

typedef struct job {
    int index;
    const char *input;          /* as given, or input_owned */
    char *input_owned;          /* the input path with its {parameters} filled in */
    const char *name;           /* for messages: the input, or "<stdin>" */
    char *output;               /* resolved output path ("-" = stdout) */
    const char *output_given;   /* as the user wrote it, for papermill's metadata */
    /* results */
    bool done, ok, written;
    char *error;                /* one line, owned */
    nb_status status;
    int cells_total, cells_done;
    int current_cell;
    char current_src[64];
    double started, finished;
    /* --log-output line buffers */
    cb_buf line[2];
} job;

typedef struct run_ctx {
    const run_opts *o;
    job *jobs;
    int n_jobs;
    int next;                   /* next job to take */
    pthread_mutex_t lock;       /* everything below, and the terminal */
    bool tty_progress;
    bool prefix_logs;
    int progress_len;           /* characters of the progress line on screen */
    int cancel_pipe[2];
    int stream_fd[2];           /* --stdout-file, --stderr-file; -1 = none */
    double t0;
} run_ctx;

static run_ctx *g_ctx;  /* for the signal handler */

/* A notebook named "-" is read from stdin, once, before the run starts. */
static cb_buf g_stdin_nb = CB_BUF_INIT;

static int read_stdin_notebook(void)
{
    if (nb_notebook_read_fd(STDIN_FILENO, &g_stdin_nb) < 0) {
        fprintf(stderr, "cellbox run: cannot read the notebook from stdin: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static nb_notebook *read_notebook(const char *path, char **err)
{
    if (strcmp(path, "-") == 0)
        return nb_notebook_parse(g_stdin_nb.data ? g_stdin_nb.data : "", g_stdin_nb.len, "<stdin>", err);
    return nb_notebook_read(path, err);
}

static void on_signal(int sig)
{
    (void)sig;
    if (g_ctx) {
        char c = 1;
        ssize_t w = write(g_ctx->cancel_pipe[1], &c, 1);
        (void)w;
    }
}

/* Installs sa for sig unless sig is ignored; *old gets the disposition to
 * restore either way. */
static void catch_signal(int sig, const struct sigaction *sa, struct sigaction *old)
{
    sigaction(sig, NULL, old);
    if (old->sa_handler != SIG_IGN)
        sigaction(sig, sa, NULL);
}

/* The pipe is written by the signal handler and never drained: once
 * readable it stays readable, for every worker and kernel client. */
static bool cancel_requested(run_ctx *c)
{
    struct pollfd p = {.fd = c->cancel_pipe[0], .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

/* ---------------------------------------------------------- terminal output */

static void progress_clear_locked(run_ctx *c)
{
    if (c->tty_progress && c->progress_len) {
        fputs("\r\033[K", stderr);
        c->progress_len = 0;
    }
}

static void progress_draw_locked(run_ctx *c)
{
    if (!c->tty_progress)
        return;
    int nb_done = 0, cells_done = 0, cells_total = 0, running = 0;
    const job *cur = NULL;
    for (int i = 0; i < c->n_jobs; i++) {
        const job *j = &c->jobs[i];
        nb_done += j->done;
        cells_done += j->cells_done;
        cells_total += j->cells_total;
        if (j->started > 0 && !j->done) {
            running++;
            cur = j;
        }
    }
    char bar[21];
    int filled = cells_total ? (int)(20.0 * cells_done / cells_total) : 0;
    for (int i = 0; i < 20; i++)
        bar[i] = i < filled ? '#' : '-';
    bar[20] = '\0';
    cb_buf line = CB_BUF_INIT;
    if (c->n_jobs > 1)
        cb_buf_printf(&line, "[%d/%d notebooks] ", nb_done, c->n_jobs);
    cb_buf_printf(&line, "[%s] %d/%d cells %.1fs", bar, cells_done, cells_total, cb_mono_s() - c->t0);
    if (cur) {
        const char *base = strrchr(cur->name, '/');
        cb_buf_printf(&line, "  %s", base ? base + 1 : cur->name);
        if (cur->current_cell >= 0)
            cb_buf_printf(&line, " cell %d: %s", cur->current_cell + 1, cur->current_src);
        else
            cb_buf_puts(&line, " starting kernel");
    }
    /* keep it on one terminal line */
    int width = 100;
    const char *cols = getenv("COLUMNS");
    if (cols && atoi(cols) > 20)
        width = atoi(cols) - 1;
    if ((int)line.len > width)
        line.data[width] = '\0', line.len = (size_t)width;
    fprintf(stderr, "\r\033[K%s", line.data);
    fflush(stderr);
    c->progress_len = (int)line.len;
    cb_buf_clear(&line);
}

/* Prints whole lines of a stream (--log-output); the rest waits. */
static void log_text(run_ctx *c, job *j, int which, const char *text, bool flush_partial)
{
    cb_buf *b = &j->line[which];
    cb_buf_puts(b, text);
    FILE *out = which == 0 && strcmp(j->output, "-") != 0 ? stdout : stderr;
    pthread_mutex_lock(&c->lock);
    progress_clear_locked(c);
    for (;;) {
        char *nl = b->len ? memchr(b->data, '\n', b->len) : NULL;
        size_t n = nl ? (size_t)(nl - b->data) + 1 : (flush_partial ? b->len : 0);
        if (!n)
            break;
        if (c->prefix_logs) {
            const char *base = strrchr(j->name, '/');
            fprintf(out, "[%s] ", base ? base + 1 : j->name);
        }
        fwrite(b->data, 1, n, out);
        if (!nl)
            fputc('\n', out);
        cb_buf_consume(b, n);
    }
    fflush(out);
    progress_draw_locked(c);
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------------- hooks */

static void hook_message(void *ctx, int index, const kn_client_msg *m)
{
    job *j = ((void **)ctx)[1];
    run_ctx *c = ((void **)ctx)[0];
    (void)index;
    const char *t = m->msg_type;
    if (strcmp(t, "stream") == 0) {
        const char *name = cb_json_str(m->content, "name", "");
        const char *text = cb_json_str(m->content, "text", "");
        bool err = strcmp(name, "stderr") == 0;
        /* papermill writes each stream message to --stdout-file/--stderr-file as it comes */
        int fd = strcmp(name, "stdout") == 0 ? c->stream_fd[0] : err ? c->stream_fd[1] : -1;
        if (fd >= 0 && *text) {
            pthread_mutex_lock(&c->lock);
            if (cb_write_all(fd, text, strlen(text)) < 0)
                cb_warn("notebooks", "cannot write to the %s file: %s", name, strerror(errno));
            pthread_mutex_unlock(&c->lock);
        }
        if (c->o->log_output)
            log_text(c, j, err ? 1 : 0, text, false);
        return;
    }
    if (!c->o->log_output)
        return;
    if (strcmp(t, "display_data") == 0 || strcmp(t, "execute_result") == 0) {
        const char *plain = cb_json_str(cb_json_obj(m->content, "data"), "text/plain", NULL);
        if (plain) {
            log_text(c, j, 0, plain, false);
            log_text(c, j, 0, "\n", false);
        }
    } else if (strcmp(t, "error") == 0) {
        const cJSON *tb = cb_json_arr(m->content, "traceback");
        for (const cJSON *l = tb ? tb->child : NULL; l; l = l->next)
            if (cJSON_IsString(l)) {
                log_text(c, j, 1, l->valuestring, false);
                log_text(c, j, 1, "\n", false);
            }
    }
}

static void hook_cell_start(void *ctx, int index, const cJSON *cell)
{
    run_ctx *c = ((void **)ctx)[0];
    job *j = ((void **)ctx)[1];
    pthread_mutex_lock(&c->lock);
    j->current_cell = index;
    const char *src = nb_cell_source(cell);
    size_t k = 0;
    for (const char *p = src; *p && k < sizeof j->current_src - 1; p++)
        if (*p != '\n' && *p != '\r' && *p != '\t')
            j->current_src[k++] = *p;
        else if (k && j->current_src[k - 1] != ' ')
            j->current_src[k++] = ' ';
    j->current_src[k] = '\0';
    progress_draw_locked(c);
    pthread_mutex_unlock(&c->lock);
}

/* Saving progress: the partial notebook, atomically, where the final one goes. */
static int hook_save(void *ctx, const nb_notebook *nb)
{
    job *j = ((void **)ctx)[1];
    char *err = NULL;
    if (nb_notebook_write(nb, j->output, &err) < 0) {
        cb_warn("notebooks", "saving progress: %s", err);
        free(err);
        return -1;
    }
    return 0;
}

static void hook_cell_done(void *ctx, int index, const cJSON *cell)
{
    run_ctx *c = ((void **)ctx)[0];
    job *j = ((void **)ctx)[1];
    (void)index;
    (void)cell;
    if (c->o->log_output) {
        log_text(c, j, 0, "", true);
        log_text(c, j, 1, "", true);
    }
    pthread_mutex_lock(&c->lock);
    j->cells_done++;
    progress_draw_locked(c);
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------ kernel choice */

static bool is_python(const char *lang)
{
    return !lang || !*lang || strncasecmp(lang, "python", 6) == 0;
}

/* The language of one of cellbox's own kernels, from a kernel name
 * ("cellbox", "cellbox-javascript", "cellbox-typescript") or a notebook's
 * language; NULL when it is none of them. */
static const char *builtin_language(const char *name_or_lang, bool is_name)
{
    static const struct {
        const char *name, *lang;
    } own[] = {{"cellbox", "python"}, {"cellbox-python", "python"}, {"cellbox-javascript", "javascript"},
               {"cellbox-typescript", "typescript"}};
    if (!name_or_lang)
        return NULL;
    for (size_t i = 0; i < CB_ARRAY_LEN(own); i++)
        if (strcmp(name_or_lang, is_name ? own[i].name : own[i].lang) == 0)
            return own[i].lang;
    if (!is_name && (strcasecmp(name_or_lang, "javascript") == 0 || strcasecmp(name_or_lang, "js") == 0))
        return "javascript";
    if (!is_name && (strcasecmp(name_or_lang, "typescript") == 0 || strcasecmp(name_or_lang, "ts") == 0))
        return "typescript";
    return NULL;
}

/* cellbox's own kernel for lang (python, javascript, typescript), launched
 * from this very binary. */
static kn_kernelspec *builtin_spec(const char *lang)
{
    bool py = !lang || strcmp(lang, "python") == 0;
    kn_kernelspec *ks = cb_calloc(1, sizeof *ks);
    ks->name = py ? cb_strdup("cellbox") : cb_printf_new("cellbox-%s", lang);
    ks->resource_dir = cb_strdup("");
    char *exe = cb_self_exe();
    const char *argv[] = {exe ? exe : "cellbox", "kernel", "-f", "{connection_file}", "--language", lang};
    ks->argc = py ? 4 : 6;
    ks->argv = cb_calloc((size_t)ks->argc + 1, sizeof *ks->argv);
    for (int i = 0; i < ks->argc; i++)
        ks->argv[i] = cb_strdup(argv[i]);
    free(exe);
    ks->display_name = cb_strdup(py ? "Python 3 (cellbox)" : strcmp(lang, "javascript") == 0 ? "JavaScript (cellbox)"
                                                                                            : "TypeScript (cellbox)");
    ks->language = cb_strdup(py ? "python" : lang);
    ks->interrupt_mode = cb_strdup("signal");
    return ks;
}

static void spec_add_arg(kn_kernelspec *ks, const char *arg)
{
    ks->argv = cb_realloc(ks->argv, (size_t)(ks->argc + 2) * sizeof *ks->argv);
    ks->argv[ks->argc++] = cb_strdup(arg);
    ks->argv[ks->argc] = NULL;
}

/* nbclient keeps history out of the way of headless runs: ipykernel gets
 * an in-memory history file; cellbox's kernel gets --no-history. */
static void spec_headless_args(kn_kernelspec *ks)
{
    const char *n = ks->name;
    const char *base = strrchr(ks->argv[0], '/');
    base = base ? base + 1 : ks->argv[0];
    if (strcmp(n, "python") == 0 || strcmp(n, "python2") == 0 || strcmp(n, "python3") == 0)
        spec_add_arg(ks, "--HistoryManager.hist_file=:memory:");
    else if (strcmp(base, "cellbox") == 0 && ks->argc >= 2 && strcmp(ks->argv[1], "kernel") == 0)
        spec_add_arg(ks, "--no-history");
}

/* "cellbox" (and cellbox-javascript, cellbox-typescript) is this very
 * binary's kernel, whatever kernelspec of that name is installed (it may
 * point at another, older cellbox). */
static kn_kernelspec *find_spec(const char *name, char **err)
{
    const char *own = builtin_language(name, true);
    if (own)
        return builtin_spec(own);
    return kn_kernelspec_find(name, err);
}

static kn_kernelspec *choose_kernel(const run_opts *o, const nb_notebook *nb, char **err)
{
    if (o->kernel)
        return find_spec(o->kernel, err);
    const cJSON *ks = cb_json_obj(nb->metadata, "kernelspec");
    const char *name = cb_json_str(ks, "name", NULL);
    const char *lang = o->language ? o->language : cb_json_str(ks, "language", NULL);
    if (!lang)
        lang = cb_json_str(cb_json_obj(nb->metadata, "language_info"), "name", NULL);
    if (name && *name) {
        char *why = NULL;
        kn_kernelspec *spec = find_spec(name, &why);
        if (spec)
            return spec;
        const char *own = is_python(lang) ? "python" : builtin_language(lang, false);
        if (!own) {
            *err = cb_printf_new("%s (the notebook's kernel, for %s; choose one with -k)", why, lang);
            free(why);
            return NULL;
        }
        cb_info("notebooks", "kernel '%s' is not installed: using cellbox's %s kernel", name, own);
        free(why);
        return builtin_spec(own);
    }
    if (!is_python(lang)) {
        const char *own = builtin_language(lang, false);
        if (own)
            return builtin_spec(own);
        *err = cb_printf_new("the notebook is written in %s and names no kernel: choose one with -k", lang);
        return NULL;
    }
    return builtin_spec("python");
}

/* ----------------------------------------------------------------- the run */

static void job_fail(job *j, nb_status st, const char *fmt, ...) CB_PRINTF(3, 4);
static void job_fail(job *j, nb_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    free(j->error);
    j->error = cb_vprintf_new(fmt, ap);
    va_end(ap);
    j->ok = false;
    j->status = st;
}

static void run_job(run_ctx *c, job *j)
{
    const run_opts *o = c->o;
    char *err = NULL;
    nb_notebook *nb = read_notebook(j->input, &err);
    if (!nb) {
        job_fail(j, NB_START_FAILED, "%s", err);
        free(err);
        return;
    }
    pthread_mutex_lock(&c->lock);
    j->cells_total = nb_cell_count(nb);
    pthread_mutex_unlock(&c->lock);

    kn_kernelspec *spec = choose_kernel(o, nb, &err);
    bool inject = o->have_params || o->inject_input || o->inject_output;
    bool papermill = inject || o->prepare_only || cb_json_obj(nb->metadata, "papermill");
    const char *output_path = j->output_given ? j->output_given : j->output;  /* as papermill records it */
    /* --prepare-only starts no kernel: as papermill, the parameters are
     * written for the kernel's name and language, installed here or not */
    if (!spec && !o->prepare_only) {
        job_fail(j, NB_START_FAILED, "%s: %s", j->name, err);
        goto out;
    }
    if (papermill) {
        nb_pm_load(nb);
        if (inject) {
            /* papermill's order: the paths first, then the parameters given */
            cJSON *params = cJSON_CreateObject();
            if (o->inject_input)
                cJSON_AddStringToObject(params, "PAPERMILL_INPUT_PATH", j->input);
            if (o->inject_output)
                cJSON_AddStringToObject(params, "PAPERMILL_OUTPUT_PATH", output_path);
            nb_params_update(params, o->params);
            const char *kname = spec       ? spec->name
                                : o->kernel ? o->kernel
                                            : cb_json_str(cb_json_obj(nb->metadata, "kernelspec"), "name", "");
            const char *lang = o->language;
            if (!lang && spec && spec->language && *spec->language)
                lang = spec->language;
            if (!lang)
                lang = cb_json_str(cb_json_obj(nb->metadata, "language_info"), "name",
                                   cb_json_str(cb_json_obj(nb->metadata, "kernelspec"), "language", "python"));
            free(err);
            err = NULL;
            int r = nb_params_inject(nb, params, kname, lang, &err);
            cJSON_Delete(params);
            if (r < 0) {
                job_fail(j, NB_START_FAILED, "%s: %s", j->name, err);
                goto out;
            }
        }
        nb_pm_prepare(nb, j->input, output_path);
    }
    if (o->report_mode)
        nb_pm_report_mode(nb);
    pthread_mutex_lock(&c->lock);
    j->cells_total = nb_cell_count(nb);
    pthread_mutex_unlock(&c->lock);
    if (o->prepare_only) {
        j->ok = true;
    } else {
        spec_headless_args(spec);
        cb_autofree char *dir = NULL;
        if (!o->cwd) {
            cb_autofree char *copy = cb_strdup(j->input);
            dir = cb_strdup(dirname(copy));
        }
        void *hook_ctx[2] = {c, j};
        nb_exec_opts eo = {
            .spec = spec,
            .cwd = o->cwd ? o->cwd : dir,
            .timeout = o->timeout,
            .startup_timeout = o->startup_timeout,
            .hb_timeout = o->hb_timeout,
            .interrupt_grace = o->interrupt_timeout,
            .allow_errors = o->allow_errors,
            .allow_error_names = (const char *const *)o->allow_error_names,
            .record_timing = !o->no_timing,
            .store_widget_state = true,
            .papermill = papermill,
            .cancel_fd = c->cancel_pipe[0],
            .kernel_stdout_fd = -1,
            .kernel_stderr_fd = -1,
            .autosave_every = o->autosave_every,
            .hooks = {.ctx = hook_ctx, .cell_start = hook_cell_start, .cell_done = hook_cell_done,
                      .message = o->log_output || c->stream_fd[0] >= 0 || c->stream_fd[1] >= 0 ? hook_message
                                                                                                  : NULL},
        };
        /* the kernel's own stdout must not mix into a notebook written to stdout */
        if (strcmp(j->output, "-") == 0)
            eo.kernel_stdout_fd = STDERR_FILENO;
        /* progress goes where the notebook goes, never to stdout before the end (papermill) */
        struct stat ost;
        bool special = stat(j->output, &ost) == 0 && !S_ISREG(ost.st_mode);  /* a FIFO gets one notebook */
        if (o->save_progress && strcmp(j->output, "-") != 0 && !special)
            eo.hooks.save = hook_save;
        nb_exec_result r;
        memset(&r, 0, sizeof r);
        nb_status st = nb_execute(nb, &eo, &r);
        cb_debug("notebooks", "%s: startup %.3f s, cells %.3f s, shutdown %.3f s", j->name, r.startup_s, r.cells_s,
                 r.shutdown_s);
        if (st == NB_OK) {
            j->ok = true;
        } else {
            job_fail(j, st, "%s: %s", j->name, r.reason ? r.reason : "failed");
            if (st == NB_START_FAILED || (st == NB_CANCELLED && r.cell < 0)) {
                nb_exec_result_clear(&r);
                goto out;  /* nothing ran: nothing worth writing */
            }
        }
        nb_exec_result_clear(&r);
    }
    if (nb_notebook_write(nb, j->output, &err) < 0) {
        job_fail(j, NB_START_FAILED, "%s: %s", j->name, err);
    } else {
        j->written = true;
    }
out:
    free(err);
    kn_kernelspec_free(spec);
    nb_notebook_free(nb);
}

static void *worker(void *arg)
{
    run_ctx *c = arg;
    for (;;) {
        pthread_mutex_lock(&c->lock);
        int i = c->next < c->n_jobs ? c->next++ : -1;
        job *j = i >= 0 ? &c->jobs[i] : NULL;
        if (j) {
            j->started = cb_mono_s();
            j->current_cell = -1;
        }
        pthread_mutex_unlock(&c->lock);
        if (!j)
            return NULL;
        if (cancel_requested(c)) {  /* an interrupted run starts nothing new */
            job_fail(j, NB_CANCELLED, "%s: not run (interrupted)", j->name);
        } else {
            run_job(c, j);
        }
        pthread_mutex_lock(&c->lock);
        j->done = true;
        j->finished = cb_mono_s();
        progress_draw_locked(c);
        pthread_mutex_unlock(&c->lock);
    }
}

/* ------------------------------------------------------------ output paths */

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    if (stat(a, &sa) == 0 && stat(b, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    char ra[PATH_MAX], rb[PATH_MAX];
    cb_autofree char *da = cb_strdup(a), *db = cb_strdup(b);
    cb_autofree char *fa = cb_strdup(a), *fb = cb_strdup(b);
    if (!realpath(dirname(da), ra) || !realpath(dirname(db), rb))
        return false;
    return strcmp(ra, rb) == 0 && strcmp(basename(fa), basename(fb)) == 0;
}

static char *default_output(const char *input)
{
    size_t n = strlen(input);
    if (cb_str_has_suffix(input, ".ipynb"))
        n -= strlen(".ipynb");
    return cb_printf_new("%.*s.out.ipynb", (int)n, input);
}

/* papermill's parameterize_path() on a path holding braces; *out owned. */
static int fill_path(const char *path, const run_opts *o, const nb_path_builtins *bi, char **out)
{
    *out = NULL;
    if (!strpbrk(path, "{}"))
        return 0;
    char *err = NULL;
    if (!(*out = nb_params_path(path, o->params, bi, &err))) {
        int rc = bad_usage("%s", err);
        free(err);
        return rc;
    }
    return 0;
}

static int plan_outputs(const run_opts *o, job *jobs)
{
    for (int i = 0; i < o->n_inputs; i++) {
        job *j = &jobs[i];
        /* each notebook its own pm[run_uuid], as papermill's execute_notebook */
        nb_path_builtins bi;
        nb_path_builtins_init(&bi);
        int rc;
        /* an input that exists under its literal name is taken as it is */
        if (strcmp(j->input, "-") != 0 && access(j->input, F_OK) < 0) {
            if ((rc = fill_path(j->input, o, &bi, &j->input_owned)) != 0)
                return rc;
            if (j->input_owned)
                j->input = j->input_owned;
        }
        j->name = strcmp(j->input, "-") == 0 ? "<stdin>" : j->input;
        cb_autofree char *out_filled = NULL, *dir_filled = NULL;
        if ((o->output && (rc = fill_path(o->output, o, &bi, &out_filled)) != 0) ||
            (o->output_dir && (rc = fill_path(o->output_dir, o, &bi, &dir_filled)) != 0))
            return rc;
        if ((dir_filled && !*dir_filled) || (out_filled && !*out_filled))
            return bad_usage("%s is an empty path with these parameters", dir_filled ? o->output_dir : o->output);
        const char *output_dir = dir_filled ? dir_filled : o->output_dir;
        if (o->output) {
            j->output = cb_strdup(out_filled ? out_filled : o->output);
            j->output_given = j->output;
        } else if (o->inplace) {
            /* through a symbolic link to the file it names, as nbformat's
             * open(path, "w") writes: the link stays a link (-o onto a
             * link replaces the link: a link planted where the output
             * goes never redirects the write) */
            char real[PATH_MAX];
            struct stat lst;
            bool link = strcmp(j->input, "-") != 0 && lstat(j->input, &lst) == 0 && S_ISLNK(lst.st_mode);
            j->output = cb_strdup(link && realpath(j->input, real) ? real : j->input);
            j->output_given = j->input;  /* papermill records the path given */
        } else if (output_dir) {
            if (dir_filled && cb_mkdir_p(output_dir, 0755) < 0) {
                fprintf(stderr, "cellbox run: cannot create %s: %s\n", output_dir, strerror(errno));
                return 1;
            }
            cb_autofree char *copy = cb_strdup(j->input);
            j->output = cb_path_join(output_dir, basename(copy));
        } else if (strcmp(j->input, "-") == 0) {
            j->output = cb_strdup("-");
        } else {
            j->output = default_output(j->input);
        }
        if (!*j->output)
            return bad_usage("an empty output path (for %s)", j->name);
        if (strcmp(j->output, "-") != 0 && cb_str_has_suffix(j->output, "/"))
            return bad_usage("cannot write %s: a path ending in '/' names a folder", j->output);
        if (strcmp(j->output, "-") != 0) {
            /* papermill writes the output before the first cell: a path that
             * cannot be written fails now, not after the run */
            cb_autofree char *copy = cb_strdup(j->output);
            const char *dir = dirname(copy);
            struct stat st;
            if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
                return bad_usage("cannot write %s: the folder %s does not exist", j->output, dir);
            if (stat(j->output, &st) == 0 && S_ISDIR(st.st_mode))
                return bad_usage("cannot write %s: it is a folder", j->output);
            if (access(dir, W_OK | X_OK) < 0)
                return bad_usage("cannot write %s: no new file can be made in %s (%s); the notebook is "
                                 "written to a new file there and renamed over %s, so that it is never "
                                 "left half written", j->output, dir, strerror(errno), j->output);
        }
        if (!o->inplace && strcmp(j->output, "-") != 0 && strcmp(j->input, "-") != 0 &&
                 same_file(j->input, j->output))
            return bad_usage("%s would overwrite its input: use --inplace to mean it", j->output);
        for (int k = 0; k < i; k++)
            if (strcmp(jobs[k].output, "-") != 0 && same_file(jobs[k].output, j->output))
                return bad_usage("%s and %s would both be written to %s", jobs[k].input, j->input, j->output);
    }
    /* one notebook's output must not be another one's input (a.ipynb and
     * a.out.ipynb, as `cellbox run *.ipynb` finds them the second time):
     * the first would overwrite the second before or while it is read */
    for (int i = 0; i < o->n_inputs; i++)
        for (int k = 0; k < o->n_inputs; k++)
            if (k != i && strcmp(jobs[i].output, "-") != 0 && strcmp(jobs[k].input, "-") != 0 &&
                same_file(jobs[i].output, jobs[k].input))
                return bad_usage("%s would be written to %s, which is also an input", jobs[i].input, jobs[i].output);
    return 0;
}

/* ------------------------------------------------------- --help-notebook */

/* papermill's display_notebook_help() for each notebook: 0, or 1 when one
 * has no parameters cell or cannot be read. */
static int help_notebooks(const run_opts *o)
{
    int rc = 0;
    for (int i = 0; i < o->n_inputs; i++) {
        char *err = NULL;
        nb_notebook *nb = read_notebook(o->inputs[i], &err);
        if (!nb) {
            fprintf(stderr, "cellbox run: %s\n", err);
            free(err);
            rc = 1;
            continue;
        }
        cb_buf out = CB_BUF_INIT;
        cb_buf_puts(&out, "usage: cellbox run [OPTIONS] NOTEBOOK.ipynb [MORE.ipynb ...]\n");
        int st = nb_params_help(nb, o->inputs[i], o->kernel, o->language, &out);
        fwrite(out.data, 1, out.len, stdout);
        fflush(stdout);
        if (st) {
            fprintf(stderr, "cellbox run: %s has no cell tagged 'parameters'\n", o->inputs[i]);
            rc = 1;
        }
        cb_buf_clear(&out);
        nb_notebook_free(nb);
    }
    return rc;
}

/* ---------------------------------------------- --stdout-file, --stderr-file */

/* Checked before anything runs (a bad path is bad usage and nothing is
 * written; a file of the run itself would be clobbered), opened and
 * truncated when the run starts. One file for both shares one descriptor;
 * '-' is cellbox's stdout. */
static int check_stream_files(const run_opts *o, const job *jobs)
{
    static const char *const opt[2] = {"--stdout-file", "--stderr-file"};
    for (int k = 0; k < 2; k++) {
        const char *path = o->stream_file[k];
        if (!path)
            continue;
        if (strcmp(path, "-") == 0) {
            if (o->output && strcmp(o->output, "-") == 0)
                return bad_usage("%s - and -o - would both write to stdout", opt[k]);
            continue;
        }
        for (int i = 0; i < o->n_inputs; i++)
            if (same_file(path, jobs[i].input) || (strcmp(jobs[i].output, "-") != 0 && same_file(path, jobs[i].output)))
                return bad_usage("%s %s is a notebook of this run", opt[k], path);
        struct stat st;
        if (stat(path, &st) == 0) {
            if (S_ISDIR(st.st_mode))
                return bad_usage("%s %s is a folder", opt[k], path);
            if (access(path, W_OK) < 0)
                return bad_usage("%s: cannot write %s: %s", opt[k], path, strerror(errno));
        } else {
            int e = errno;
            cb_autofree char *copy = cb_strdup(path);
            if (e != ENOENT || access(dirname(copy), W_OK | X_OK) < 0)
                return bad_usage("%s: cannot write %s: %s", opt[k], path, strerror(e != ENOENT ? e : errno));
        }
    }
    return 0;
}

static int open_stream_files(const run_opts *o, int fds[2])
{
    for (int k = 0; k < 2; k++) {
        const char *path = o->stream_file[k];
        if (!path)
            continue;
        if (strcmp(path, "-") == 0) {
            fds[k] = STDOUT_FILENO;
        } else if (k == 1 && fds[0] >= 0 && o->stream_file[0] && same_file(path, o->stream_file[0])) {
            fds[1] = fds[0];
        } else if ((fds[k] = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
            fprintf(stderr, "cellbox run: cannot write %s: %s\n", path, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* ==================================================================== main */

int nb_cmd_run(int argc, char **argv)
{
    run_opts o = {.progress = -1, .jobs = 1, .hb_timeout = 10, .startup_timeout = 60, .save_progress = true,
                  .autosave_every = 30, .log_level = -1};
    o.params = cJSON_CreateObject();
    o.param_rank = cJSON_CreateObject();
    int rc = parse_args(&o, argc, argv);
    if (rc || o.help) {
        if (o.help)
            usage(stdout);
        goto done;
    }
    if (o.version) {
        printf("cellbox %s\n", PACKAGE_VERSION);
        goto done;
    }
    rc = 2;
    if (o.n_inputs == 0) {
        rc = bad_usage("no notebook given");
        goto done;
    }
    int n_stdin = 0;
    for (int i = 0; i < o.n_inputs; i++)
        n_stdin += strcmp(o.inputs[i], "-") == 0;
    if (n_stdin > 1) {
        rc = bad_usage("stdin holds one notebook: '-' was given %d times", n_stdin);
        goto done;
    }
    if (n_stdin && o.inplace) {
        rc = bad_usage("--inplace: the notebook read from stdin has no file to overwrite");
        goto done;
    }
    if (n_stdin && o.output_dir) {
        rc = bad_usage("--output-dir: the notebook read from stdin has no name; use -o PATH (or -o -)");
        goto done;
    }
    if (o.n_inputs == 2 && !o.output && !o.output_dir && !o.inplace && strcmp(o.inputs[1], "-") != 0 &&
        !strpbrk(o.inputs[1], "{}") && access(o.inputs[1], F_OK) < 0 && access(o.inputs[0], F_OK) == 0) {
        /* papermill's `papermill IN OUT`: say how to spell it here */
        rc = bad_usage("%s does not exist; to write the executed notebook there (papermill's INPUT OUTPUT), "
                       "use: cellbox run %s -o %s",
                       o.inputs[1], o.inputs[0], o.inputs[1]);
        goto done;
    }
    if (n_stdin && read_stdin_notebook() < 0) {
        rc = 1;
        goto done;
    }
    if (o.language && (o.have_params || o.inject_input || o.inject_output) &&
        !nb_params_translator(o.kernel, o.language)) {
        rc = bad_usage("--language %s: cellbox writes parameters in python, R, bash, javascript and typescript",
                       o.language);
        goto done;
    }
    cb_log_init_from_env(CB_LOG_WARN);
    if (o.log_level >= 0)
        cb_log_set_level((cb_log_level)o.log_level);
    if (o.help_notebook) {
        rc = help_notebooks(&o);
        goto done;
    }
    if ((o.output != NULL) + o.inplace + (o.output_dir != NULL) > 1) {
        rc = bad_usage("choose one of -o/--output, --output-dir and --inplace");
        goto done;
    }
    if (o.output && o.n_inputs > 1) {
        rc = bad_usage("-o/--output names one file but %d notebooks were given: use --output-dir", o.n_inputs);
        goto done;
    }
    if ((o.output && !*o.output) || (o.output_dir && !*o.output_dir)) {
        rc = bad_usage("%s needs a path, not ''", o.output ? "-o/--output" : "--output-dir");
        goto done;
    }
    if (o.output_dir && !strpbrk(o.output_dir, "{}") && cb_mkdir_p(o.output_dir, 0755) < 0) {
        fprintf(stderr, "cellbox run: cannot create %s: %s\n", o.output_dir, strerror(errno));
        rc = 1;
        goto done;
    }
    if (o.cwd) {
        struct stat st;
        if (stat(o.cwd, &st) < 0 || !S_ISDIR(st.st_mode)) {
            rc = bad_usage("--cwd %s is not a folder", o.cwd);
            goto done;
        }
    }

    run_ctx c = {.o = &o, .n_jobs = o.n_inputs, .t0 = cb_mono_s(), .stream_fd = {-1, -1}};
    c.jobs = cb_calloc((size_t)o.n_inputs, sizeof *c.jobs);
    for (int i = 0; i < o.n_inputs; i++) {
        c.jobs[i].index = i;
        c.jobs[i].input = o.inputs[i];
        c.jobs[i].name = o.inputs[i];
        c.jobs[i].current_cell = -1;
    }
    if ((rc = plan_outputs(&o, c.jobs)) != 0 || (rc = check_stream_files(&o, c.jobs)) != 0)
        goto free_jobs;
    if (!o.prepare_only && open_stream_files(&o, c.stream_fd) < 0) {
        rc = 1;
        goto free_jobs;
    }
    c.tty_progress = o.progress == 1 || (o.progress == -1 && isatty(STDERR_FILENO));
    c.prefix_logs = o.n_inputs > 1;
    pthread_mutex_init(&c.lock, NULL);
    if (pipe2(c.cancel_pipe, O_CLOEXEC) < 0)
        cb_die_errno("pipe");
    g_ctx = &c;
    /* SIGHUP too: a closed terminal or SSH session must not leave the
     * kernels running and the notebook unwritten. A signal ignored when we
     * start stays ignored: `nohup cellbox run` must survive the hang-up,
     * and a shell's background job (`cellbox run ... &`) ignores SIGINT. */
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term, old_hup;
    sigemptyset(&sa.sa_mask);
    catch_signal(SIGINT, &sa, &old_int);
    catch_signal(SIGTERM, &sa, &old_term);
    catch_signal(SIGHUP, &sa, &old_hup);
    signal(SIGPIPE, SIG_IGN);

    int n_workers = o.jobs < o.n_inputs ? o.jobs : o.n_inputs;
    pthread_t *threads = cb_calloc((size_t)n_workers, sizeof *threads);
    for (int i = 0; i < n_workers; i++)
        pthread_create(&threads[i], NULL, worker, &c);
    if (c.tty_progress) {
        /* redraw for the elapsed time while cells run */
        for (;;) {
            pthread_mutex_lock(&c.lock);
            int done = 0;
            for (int i = 0; i < c.n_jobs; i++)
                done += c.jobs[i].done;
            if (done < c.n_jobs)
                progress_draw_locked(&c);
            pthread_mutex_unlock(&c.lock);
            if (done == c.n_jobs)
                break;
            usleep(200000);
        }
    }
    for (int i = 0; i < n_workers; i++)
        pthread_join(threads[i], NULL);
    free(threads);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    bool cancelled = cancel_requested(&c);
    g_ctx = NULL;
    close(c.cancel_pipe[0]);
    close(c.cancel_pipe[1]);

    pthread_mutex_lock(&c.lock);
    progress_clear_locked(&c);
    pthread_mutex_unlock(&c.lock);
    int failed = 0;
    for (int i = 0; i < c.n_jobs; i++) {
        job *j = &c.jobs[i];
        if (!j->ok) {
            failed++;
            fprintf(stderr, "cellbox run: %s%s%s\n", j->error ? j->error : j->name,
                    j->written ? "; partial notebook written to " : "",
                    !j->written ? "" : strcmp(j->output, "-") == 0 ? "stdout" : j->output);
        } else if (c.tty_progress) {
            fprintf(stderr, "ok %s -> %s (%d cells, %.2f s)\n", j->name, j->output, j->cells_total,
                    j->finished - j->started);
        }
    }
    rc = cancelled ? 130 : failed ? 1 : 0;
    pthread_mutex_destroy(&c.lock);
free_jobs:
    for (int k = 0; k < 2; k++)
        if (c.stream_fd[k] > STDERR_FILENO && (k == 0 || c.stream_fd[1] != c.stream_fd[0]))
            close(c.stream_fd[k]);
    for (int i = 0; i < c.n_jobs; i++) {
        free(c.jobs[i].output);
        free(c.jobs[i].input_owned);
        free(c.jobs[i].error);
        cb_buf_clear(&c.jobs[i].line[0]);
        cb_buf_clear(&c.jobs[i].line[1]);
    }
    free(c.jobs);
done:
    cJSON_Delete(o.params);
    cJSON_Delete(o.param_rank);
    kn_strv_free(o.allow_error_names);
    free(o.inputs);
    return rc;
}
