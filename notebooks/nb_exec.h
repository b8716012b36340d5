/* notebooks/nb_exec.h: executing a notebook through a kernel, the way
 * nbclient does it (same requests, same outputs, same metadata), plus the
 * papermill bookkeeping when asked.
 *
 * Two layers:
 *   nb_outputs   turns a cell's IOPub messages into nbformat outputs:
 *                streams merged, display_id updates applied to earlier
 *                outputs (any cell), clear_output(wait) honoured, widget
 *                state collected from comm messages. No sockets: the unit
 *                tests feed it messages.
 *   nb_execute() starts the kernel (kn_client), runs the code cells in
 *                order and decides when to stop (errors, timeouts, a dead
 *                kernel, cancellation).
 *
 * Ownership: the notebook is borrowed and modified in place; result
 * strings are owned by the result (nb_exec_result_clear).
 */
#ifndef NB_EXEC_H
#define NB_EXEC_H

#include <cjson/cJSON.h>
#include <stdbool.h>

#include "kernel/client.h"
#include "kernel/kernelspec.h"
#include "notebooks/nb_format.h"

/* ------------------------------------------------------------------ outputs */

typedef struct nb_display_ref {
    char *display_id;
    int cell, output;
} nb_display_ref;

typedef struct nb_outputs {
    nb_notebook *nb;              /* borrowed */
    nb_display_ref *refs;
    size_t n_refs, cap_refs;
    bool clear_pending;           /* clear_output(wait=True) seen */
    bool merge_streams;           /* consecutive stream outputs of one name become one */
    bool store_widget_state;
    /* the text of the last stream output, grown in place (amortised O(1)
     * appends: a kernel may send a stream in thousands of small pieces) */
    cJSON *tail;
    size_t tail_len, tail_cap;
    cJSON *widget_state;          /* comm_id -> state */
    cJSON *widget_buffers;        /* comm_id -> {path -> {data, encoding, path}} */
    /* nbclient's Output-widget emulation: what a frontend does for
     * ipywidgets.Output, so `with out:` output lands in the widget */
    cJSON *out_widgets;           /* comm_id -> {"outputs": [...], "clear": bool, "msg_id": "..."} */
    cJSON *out_hooks;             /* msg_id -> [comm_id, ...] (a stack) */
    cJSON *to_kernel;             /* [{"comm_id", "data", "parent"}]: comm_msgs the caller sends */
    cJSON *cell_cached;           /* the cell at cached_index (borrowed) */
    int cached_index;
} nb_outputs;

void nb_outputs_init(nb_outputs *o, nb_notebook *nb);
void nb_outputs_clear(nb_outputs *o);
/* Applies one IOPub message that belongs to the execution of cell
 * cell_index. Returns true when the cell's outputs changed. */
bool nb_outputs_apply(nb_outputs *o, int cell_index, const kn_client_msg *m);
/* A cell starts executing: its outputs are emptied. */
void nb_outputs_begin_cell(nb_outputs *o, int cell_index);
/* The comm_msgs the emulated Output widgets send back to the kernel (their
 * new outputs), oldest first, as an owned array of {"comm_id", "data",
 * "parent"} (the parent header to send them with); NULL when none. */
cJSON *nb_outputs_take_to_kernel(nb_outputs *o);
/* Writes metadata.widgets when widget state was seen (nbclient's format). */
void nb_outputs_store_widgets(nb_outputs *o);

/* ---------------------------------------------------------------- execution */

typedef enum {
    NB_OK = 0,
    NB_CELL_ERROR,      /* a cell raised and errors were not allowed */
    NB_TIMEOUT,         /* a cell ran over --timeout */
    NB_DEAD,            /* the kernel died or lost its heartbeat */
    NB_START_FAILED,    /* the kernel could not be started */
    NB_CANCELLED,       /* SIGINT/SIGTERM to cellbox */
} nb_status;

typedef struct nb_exec_hooks {
    void *ctx;
    /* Before/after each cell (every type), index from 0. */
    void (*cell_start)(void *ctx, int index, const cJSON *cell);
    void (*cell_done)(void *ctx, int index, const cJSON *cell);
    /* Every IOPub message of the running cell (--log-output). */
    void (*message)(void *ctx, int index, const kn_client_msg *m);
    /* The kernel is ready (for progress displays). */
    void (*kernel_ready)(void *ctx);
    /* Saving progress (papermill's request_save_on_cell_execute and
     * autosave_cell_every): write the notebook as it stands, a partial but
     * valid one. When set, nb_execute() calls it after a cell when
     * save_interval has passed since the last save, while a cell runs once
     * save_interval has passed since the last save if the run's start or a
     * cell before it is not saved yet, and then every autosave_every
     * seconds. Returns 0 or -1 (the run goes on). */
    int (*save)(void *ctx, const nb_notebook *nb);
} nb_exec_hooks;

typedef struct nb_exec_opts {
    const kn_kernelspec *spec;
    const char *cwd;               /* the kernel's working directory */
    double timeout;                /* per cell, seconds; <= 0 = none */
    double startup_timeout;        /* seconds; <= 0 = 60 */
    double iopub_timeout;          /* after the reply, wait this long for idle; <= 0 = 4 */
    double interrupt_grace;        /* after a timeout interrupt; <= 0 = 10 */
    double hb_timeout;             /* heartbeat loss; 0 = off */
    double shutdown_grace;         /* <= 0 = 5 */
    bool allow_errors;
    const char *const *allow_error_names;  /* NULL-terminated: these errors do not stop the run (nbclient) */
    bool record_timing;            /* cell.metadata.execution */
    bool store_widget_state;
    bool papermill;                /* papermill's per-cell and notebook metadata */
    int cancel_fd;                 /* -1 = none */
    int kernel_stdout_fd, kernel_stderr_fd;  /* -1 = inherit */
    double save_interval;          /* hooks.save after a cell at most this often; <= 0 = 1 s */
    double autosave_every;         /* hooks.save during a long cell; <= 0 = never. A save slower
                                    * than a quarter of it doubles it (papermill's back-off) */
    nb_exec_hooks hooks;
} nb_exec_opts;

typedef struct nb_exec_result {
    nb_status status;
    int cell;                /* the cell that failed, or -1 */
    int code_cells_run;
    char *reason;            /* one line, owned: "cell 3 (id 'x'): ZeroDivisionError: division by zero" */
    double startup_s, cells_s, shutdown_s;
} nb_exec_result;

void nb_exec_result_clear(nb_exec_result *r);

/* Runs the notebook. Always leaves a notebook worth writing (the partial
 * one on failure, with the error recorded in the failing cell). Returns
 * r->status. */
nb_status nb_execute(nb_notebook *nb, const nb_exec_opts *o, nb_exec_result *r);

#endif
