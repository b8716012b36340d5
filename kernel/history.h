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

#include <cjson/cJSON.h>

typedef struct kn_history kn_history;

/* path NULL: in memory only. Starts a new session (last session + 1). */
kn_history *kn_history_open(const char *path);
void kn_history_free(kn_history *h);
int kn_history_session(const kn_history *h);
/* output may be NULL. */
void kn_history_add(kn_history *h, int line, const char *input, const char *output);
/* The same, with the Python source the cell became (IPython's parsed input:
 * magics, !cmd... transformed), NULL when it is the input. Trailing
 * newlines are not kept (IPython's store_inputs). */
void kn_history_add_parsed(kn_history *h, int line, const char *input, const char *parsed, const char *output);
/* Answers a history_request content as IPython's history manager does (raw
 * or parsed sources, a current session's range numbered as asked: 0 for
 * session 0), telling the outputs kept for tails, searches and earlier
 * sessions too (IPython with db_log_output: the get_ipython() API). Returns
 * an owned history_reply content. */
cJSON *kn_history_query(kn_history *h, const cJSON *request);
/* The same as ipykernel answers history_request: only the current
 * session's range tells outputs (the others are null: IPython's default
 * keeps none in its database). Owned. */
cJSON *kn_history_reply(kn_history *h, const cJSON *request);
/* The file's path (borrowed), NULL when the history is kept in memory. */
const char *kn_history_path(const kn_history *h);
/* Default path: $XDG_DATA_HOME/cellbox/history.jsonl (owned). */
char *kn_history_default_path(void);

#endif
