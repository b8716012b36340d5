/* sandbox/sb_proc.h: background processes of a sandbox (server side).
 *
 * A process is an operation channel to a shim started with "detach": true;
 * one watcher thread per process reads its frames, appends stdout and
 * stderr to bounded log files (STATE/sandboxes/<id>/processes/<pid>/, each
 * stream rotated to <stream>.1 past SB_LOG_CAP, so at most twice that is
 * kept), and records the exit. meta.json holds the record, so lists and logs
 * survive restarts; a process that was running when its sandbox stopped is
 * "killed".
 *
 * Threads: records are in box->procs and protected by box->mu; box->cv is
 * broadcast on every log append and status change (followers wait on it).
 * Ownership: *_json results are owned by the caller.
 */
#ifndef SB_PROC_H
#define SB_PROC_H

#include <stdint.h>

#include "base/buf.h"
#include "sandbox/sb_box.h"

#define SB_LOG_CAP (8u << 20)
/* stdin a process has not read yet, kept for it in its sandbox's agent
 * (beyond the pipe's own buffer): a write that would pass this is refused
 * whole (409 SANDBOX_CONFLICT) until the process reads. The agent reports
 * the bytes that left its queue ({"ev":"stdin","bytes":N} on the channel);
 * stdin_queued is what was sent minus those. */
#define SB_PROC_STDIN_MAX (8u << 20)

struct sb_proc {
    sb_proc *next;
    char id[72];
    char *command;
    char *session;
    char *dir;
    int pid;
    char status[12];            /* running | completed | failed | killed | error */
    int exit_code;
    bool has_exit;
    bool kill_requested;
    bool oom_killed;            /* ended by the kernel's OOM killer (sb_oom_killed) */
    long long oom0;             /* the sandbox's OOM kill count as it started */
    int64_t start_us, end_us;
    int fd;                     /* operation channel, -1 once finished */
    pthread_mutex_t out_mu;     /* one writer of frames to the channel at a time; taken
                                 * without the sandbox's mu (see proc_send in sb_proc.c) */
    int log_fd[2];              /* stdout, stderr (appending), -1 when closed */
    uint64_t log_size[2];       /* bytes in the current generation file */
    unsigned log_gen[2];        /* bumped at each rotation */
    uint64_t written[2];        /* all bytes ever */
    uint64_t stdin_queued;      /* stdin sent, not yet in the pipe (see SB_PROC_STDIN_MAX) */
};

void sb_procs_load(sb_box *b);
void sb_procs_on_stop(sb_box *b);       /* box->mu held */
void sb_procs_free(sb_box *b);

int sb_proc_start(sb_box *b, const cJSON *body, cJSON **out, sb_error *err);
cJSON *sb_procs_list_json(sb_box *b);
cJSON *sb_proc_json(sb_box *b, const char *id);          /* NULL if unknown */
/* The record of p itself (owned), also once a newer process of its id hid it
 * (its id then reads ""): for a follower that holds p. */
cJSON *sb_proc_record_json(sb_box *b, sb_proc *p);
int sb_proc_kill(sb_box *b, const char *id, int sig, int grace_ms, sb_error *err);
int sb_procs_kill_all(sb_box *b, int sig, int grace_ms);  /* how many were signalled */
int sb_proc_logs(sb_box *b, const char *id, cJSON **out, sb_error *err);
int sb_proc_stdin(sb_box *b, const char *id, const void *data, size_t len, bool eof,
                  sb_error *err);
/* Wait for a log line / port / exit; body as in docs/api.md. gone(gone_ctx)
 * (may be NULL) is asked every 100 ms: true ends the wait (the client left;
 * -1 with err). */
int sb_proc_wait(sb_box *b, const char *id, const cJSON *body, bool (*gone)(void *), void *gone_ctx,
                 cJSON **out, sb_error *err);

/* A follower reads a process's logs from the start, then live. */
typedef struct sb_log_reader {
    int fd[2];
    unsigned gen[2];
    bool started[2];
} sb_log_reader;

void sb_log_reader_init(sb_log_reader *r);
void sb_log_reader_clear(sb_log_reader *r);
/* Append what is new in stream s (0 stdout, 1 stderr) to out; box->mu not
 * held. Returns bytes appended. */
size_t sb_log_reader_read(sb_box *b, sb_proc *p, sb_log_reader *r, int s, cb_buf *out);
sb_proc *sb_proc_find(sb_box *b, const char *id);        /* box->mu held */

#endif
