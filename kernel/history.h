/* kernel/history.h: the execution history behind history_request, kept
 * across kernel restarts with session numbers (like IPython's history
 * database, but a JSON-lines file: no extra dependency).
 *
 * One entry per stored execution: session, line (execution count), input
 * (raw and parsed), and the text/plain of its result when there was one. The file is appended
 * with O_APPEND, one line per write, so concurrent kernels do not corrupt it.
 * kn_history_open() never fails hard: on error history is kept in memory only.
 * Not thread-safe: used by the interp thread only.
 */
#ifndef KN_HISTORY_H
#define KN_HISTORY_H

#include <stdbool.h>

#include <cjson/cJSON.h>

typedef struct kn_history kn_history;

/* path NULL: in memory only. Starts a new session (last session + 1). */
kn_history *kn_history_open(const char *path);
void kn_history_free(kn_history *h);
int kn_history_session(const kn_history *h);
/* input: the cell as sent; parsed: the Python source it became (IPython's
 * transformed cell: magics, !cmd...), NULL when the same; output: the
 * text/plain of its result, may be NULL. Trailing newlines are not kept. */
void kn_history_add(kn_history *h, int line, const char *input, const char *parsed, const char *output);
/* Answers a history_request content as ipykernel does (IPython's history
 * manager: raw or parsed sources, the current session's range numbered
 * session 0); returns an owned history_reply content. stored_outputs: also
 * tell the outputs kept for tails, searches and earlier sessions (IPython
 * with db_log_output); false for history_request, where ipykernel's default
 * tells them for the current session's range only. */
cJSON *kn_history_query(kn_history *h, const cJSON *request, bool stored_outputs);
/* The file's path (borrowed), NULL when the history is kept in memory. */
const char *kn_history_path(const kn_history *h);
/* Default path: $XDG_DATA_HOME/cellbox/history.jsonl (owned). */
char *kn_history_default_path(void);

#endif
