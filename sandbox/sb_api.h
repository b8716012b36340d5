/* sandbox/sb_api.h: the HTTP API of `cellbox serve`: the route table and
 * its handlers, split by resource (sb_api.c: sandboxes, exec, sessions,
 * processes; sb_files.c: files). Handlers validate, call the sandbox layer
 * (sb_box, sb_proc) and reply through sb_http; see docs/api.md.
 */
#ifndef SB_API_H
#define SB_API_H

#include "sandbox/sb_box.h"
#include "sandbox/sb_http.h"

extern const sb_route sb_api_routes[];
extern const size_t sb_api_nroutes;

/* The sandbox named by the first route parameter, referenced; replies
 * SANDBOX_NOT_FOUND and returns NULL when there is none. */
sb_box *sb_api_box(sb_req *r);

/* Exec plumbing shared with processes (sb_api.c): turn an API body into an
 * agent request (owned *req_out, *session_out, *stdin_out), and start it on a
 * new channel: returns the channel fd (owned) once the command runs. */
int sb_exec_prepare(sb_box *b, const cJSON *body, bool detach, cJSON **req_out,
                    char **session_out, char **stdin_out, size_t *stdin_len, sb_error *err);
int sb_exec_start(sb_box *b, cJSON *req, const char *in, size_t in_len, bool close_stdin,
                  int *pid, sb_error *err);

/* Files (sb_files.c). */
int sb_files_read(sb_req *r);
int sb_files_read_raw(sb_req *r);
int sb_files_write(sb_req *r);
int sb_files_write_raw(sb_req *r);
extern const sb_upload_ops sb_files_upload_ops;
int sb_files_list(sb_req *r);
int sb_files_stat(sb_req *r);
int sb_files_exists(sb_req *r);
int sb_files_mkdir(sb_req *r);
int sb_files_delete(sb_req *r);
int sb_files_rename(sb_req *r);

#endif
