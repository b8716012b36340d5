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
 * Ownership: the handlers borrow r and b, reply once or return -1 with
 * *err (the box-handler contract of sb_api.c).
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

#endif
