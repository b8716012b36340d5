/* sandbox/sb_watch.h: file watching (POST /v1/sandboxes/:id/files/watch),
 * Cloudflare's `watch(path)`: inotify on a folder of a sandbox, relayed as
 * server-sent events (watching, then create / modify / delete / move, and
 * at the end stopped or error). See sb_watch.c for the design and
 * docs/api.md ("Watching files") for the contract.
 *
 * Ownership: the handler borrows r and b (the route's on_box() holds b); the
 * stream it starts owns its own reference to the sandbox, its inotify fd and
 * every other fd, all freed when the stream ends or the client goes away.
 */
#ifndef SB_WATCH_H
#define SB_WATCH_H

#include "sandbox/sb_box.h"
#include "sandbox/sb_http.h"

/* Box handler (see sb_api.c's on_box): replies with the event stream and
 * returns 0, or returns -1 with *err (FILE_NOT_FOUND, NOT_DIRECTORY,
 * VALIDATION_FAILED, PERMISSION_DENIED, WATCH_LIMIT...) before any byte of
 * the stream is sent. */
int sb_watch_files(sb_req *r, sb_box *b, sb_error *err);

/* Most folders one watch stream may watch: 8192 (CELLBOX_WATCH_MAX_DIRS
 * overrides it, for tests). */
size_t sb_watch_max_dirs(void);

#endif
