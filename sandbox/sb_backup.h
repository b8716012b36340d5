/* sandbox/sb_backup.h: backups of a sandbox folder (the Cloudflare SDK's
 * createBackup / restoreBackup), `/v1/sandboxes/{id}/backups...`.
 *
 * An archive is made and unpacked by GNU tar running INSIDE the sandbox as
 * its user, through the exec path; the server only moves bytes between the
 * agent's channel and STATE/sandboxes/<id>/backups/<bid>.{tar,json}. So
 * the server never opens a path the sandbox controls: a symlink in the tree
 * is archived as a symlink and resolves, if ever, inside the sandbox.
 * Backups persist with the sandbox's state and go with its folder when the
 * sandbox is deleted.
 *
 * A restore is crash-safe: whatever stops it (the server or the sandbox
 * killed), the folder ends up either all old or all the backup's, with no
 * temporary .cellbox-* folder left, once the recovery ran: at the start of
 * the next backup or restore of the sandbox, and when the sandbox starts
 * (sb_backup_recover). sb_backup.c tells how.
 *
 * Ownership: the handlers borrow r and b, reply once or return -1 with
 * *err (the box-handler contract of sb_api.c).
 *
 * Locks: b->backup_mu is held while a script runs in the sandbox (one
 * backup, restore or recovery at a time per sandbox); b->mu is never held
 * when one of these functions is called. A restore into another sandbox
 * ("sandboxId") holds the backup_mu of both, taken in the order of their
 * ids; its record is in the target's journal (the target recovers it).
 */
#ifndef SB_BACKUP_H
#define SB_BACKUP_H

#include "sandbox/sb_box.h"
#include "sandbox/sb_http.h"

int sb_backup_create(sb_req *r, sb_box *b, sb_error *err);    /* POST   .../backups */
int sb_backup_list(sb_req *r, sb_box *b, sb_error *err);      /* GET    .../backups */
int sb_backup_get(sb_req *r, sb_box *b, sb_error *err);       /* GET    .../backups/:bid */
int sb_backup_delete(sb_req *r, sb_box *b, sb_error *err);    /* DELETE .../backups/:bid */
int sb_backup_restore(sb_req *r, sb_box *b, sb_error *err);   /* POST   .../backups/:bid/restore */
/* POST .../fork: a new sandbox with b's options and a copy of one of its
 * folders (a backup of b restored into it); nothing is left of it when
 * that fails. */
int sb_backup_fork(sb_req *r, sb_box *b, sb_error *err);      /* POST   .../fork */

/* Finishes (or undoes) every restore of b that was cut off, as its records
 * in the sandbox's state tell; a record goes once its recovery succeeded,
 * a failure is logged and retried later. For sb_box_acquire and
 * sb_box_recover, right after they started the sandbox (b->backup_check):
 * b borrowed, b->mu NOT held (the recovery runs a command, which acquires
 * b). Blocks while that command runs. When a backup or restore holds
 * b->backup_mu (this thread's too), it does nothing but set
 * b->backup_check again, for the next acquire. */
void sb_backup_recover(sb_box *b);

#endif
