/* sandbox/sb_mount.h: S3-compatible buckets mounted into sandboxes (the
 * Cloudflare SDK's mountBucket / unmountBucket), `/v1/sandboxes/{id}/mounts`.
 *
 * A bucket (AWS S3, Cloudflare R2, MinIO, any S3 API) is served by s3fs
 * (FUSE) running on the HOST, as a child of the server: the credentials
 * never enter the sandbox, the sandbox needs no network of its own (a
 * `network: none` sandbox can have a bucket), and the sandbox's seccomp
 * filter keeps forbidding mount and FUSE. The steps:
 *   1. the server mounts a FUSE file system on a private folder of its
 *      state (STATE/mount-points/<id>-<hex>, never inside a sandbox's
 *      folder, so that removing one never walks into a bucket), allow_other,
 *      and starts s3fs to serve it (the /dev/fuse fd), foreground, with the
 *      files shown as the sandbox's user's (uid 1000 inside). s3fs runs
 *      without host root: as the sandbox's user's host uid, no capabilities,
 *      no_new_privs, the sandboxes' seccomp filter, pid, ipc and mount
 *      namespaces of its own (see sb_mount.c);
 *   2. the server clones that mount (open_tree) and a short-lived child
 *      enters the sandbox's mount namespace (setns), creates the mount
 *      point (as the sandbox's user; paths resolve inside the sandbox's
 *      root, so a planted symlink cannot lead out), checks that it is an
 *      empty directory and attaches the clone there (move_mount);
 *   3. the host-side mount is detached: the bucket's only mount is the
 *      sandbox's. When it goes (unmount, the sandbox stops), the kernel
 *      ends the FUSE connection and s3fs exits by itself.
 * Mounts are part of the sandbox's state (STATE/sandboxes/<id>/mounts.json,
 * mode 0600, holding the credentials, which no reply ever shows): when a
 * sandbox starts again (after sleepAfter, a server restart), its buckets are
 * mounted again; one that fails then is logged and listed with its error.
 *
 * Needs s3fs (Debian package s3fs) and isolation (not --isolation none).
 *
 * Ownership: the handlers borrow r and b, reply once or return -1 with *err
 * (the box-handler contract of sb_api.c). Locks: a module lock guards the
 * table of mounts, never held while s3fs waits for its store; b->mu is held
 * by the caller of sb_mounts_on_start only.
 */
#ifndef SB_MOUNT_H
#define SB_MOUNT_H

#include "sandbox/sb_box.h"
#include "sandbox/sb_http.h"

int sb_mount_create(sb_req *r, sb_box *b, sb_error *err);     /* POST   .../mounts */
int sb_mount_list(sb_req *r, sb_box *b, sb_error *err);       /* GET    .../mounts */
int sb_mount_delete(sb_req *r, sb_box *b, sb_error *err);     /* DELETE .../mounts?mountPath= */
/* The sandbox b just started (b->mu held, b->agent running): mount its
 * saved buckets again. Failures are logged and kept for the list. */
void sb_mounts_on_start(sb_box *b);
/* The server loads sandbox b (at its start, before any of it runs): remove
 * the work folders of s3fs processes a server that ended without its
 * shutdown (SIGKILL) left (their s3fs ended with it). */
void sb_mounts_on_load(sb_box *b);
/* The sandbox b is being deleted: forget its mounts. */
void sb_mounts_on_delete(sb_box *b);

#endif
