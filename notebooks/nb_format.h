/* notebooks/nb_format.h: Jupyter notebooks (nbformat 4.x) in memory, read,
 * validated and written the way nbformat does it.
 *
 * In memory a notebook is its cJSON document in nbformat's in-memory form:
 * multi-line strings (cell sources, stream text, text mimetypes) are single
 * strings, transient fields are gone. On write they are split into lists of
 * lines again (nbformat's split_lines) and printed by nb_json_write(), so a
 * notebook that cellbox writes is byte-identical to nbformat.write() of the
 * same content. Everything cellbox does not know (metadata, attachments,
 * raw and markdown cells, extra fields) is carried through untouched.
 *
 * An nbformat 3 notebook is upgraded to 4.5 when read, as
 * nbformat.read(f, as_version=4) does for nbclient and papermill (cells
 * out of the worksheets, v3 fields and output types renamed, fresh cell
 * ids), so it is written as nbformat 4. Older ones are refused.
 *
 * Validation follows the v4 JSON schema for the fields that matter to an
 * executor; errors name the cell (numbered from 1, with its id) and the
 * field, and a notebook that fails validation is never written.
 *
 * Ownership: nb_notebook_* constructors return owned notebooks
 * (nb_notebook_free); *err is owned; cell accessors borrow.
 */
#ifndef NB_FORMAT_H
#define NB_FORMAT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "base/buf.h"

typedef struct nb_notebook {
    cJSON *root;        /* the document */
    cJSON *cells;       /* borrowed from root: the cells array */
    cJSON *metadata;    /* borrowed from root */
    int minor;          /* nbformat_minor */
} nb_notebook;

/* Reads and validates. name is used in messages (usually the path). On
 * error returns NULL and *err = "NAME: cell 3 (id 'abc'): 'outputs' is
 * missing". Warnings (repaired ids) go to the log. */
nb_notebook *nb_notebook_read(const char *path, char **err);
nb_notebook *nb_notebook_parse(const char *data, size_t len, const char *name, char **err);
/* Appends what fd holds to b, stopping early when it cannot be JSON (its
 * first byte starts no JSON value): parse b for the reason. -1 with errno
 * when a read failed. */
int nb_notebook_read_fd(int fd, cb_buf *b);
void nb_notebook_free(nb_notebook *nb);

/* nbformat.writes(): owned text ending in a newline. */
char *nb_notebook_dumps(const nb_notebook *nb, size_t *len);
/* Writes atomically (temporary file + rename), or to stdout when path is
 * "-". A file replaced keeps its mode, owner and group (as far as we may
 * set them); a new one gets 0666 less the umask, as nbformat.write(). A
 * symbolic link at path is replaced, not followed (callers resolve one they
 * mean to write through). Returns 0, or -1 with *err set. */
int nb_notebook_write(const nb_notebook *nb, const char *path, char **err);

/* nbformat.v4.upgrade() within v4: a notebook older than 4.5 gets cell ids
 * and nbformat_minor 5 (what papermill does before injecting). */
void nb_notebook_upgrade(nb_notebook *nb);

/* Cells. */
int nb_cell_count(const nb_notebook *nb);
cJSON *nb_cell_at(const nb_notebook *nb, int i);
const char *nb_cell_type(const cJSON *cell);     /* "code", "markdown", "raw" */
const char *nb_cell_source(const cJSON *cell);   /* joined source, never NULL */
const char *nb_cell_id(const cJSON *cell);       /* NULL before nbformat 4.5 */
cJSON *nb_cell_metadata(cJSON *cell);            /* created when missing */
bool nb_cell_has_tag(const cJSON *cell, const char *tag);
/* "cell 3 (id 'abc')" for messages: into buf of n bytes. */
const char *nb_cell_label(const cJSON *cell, int index, char *buf, size_t n);

/* New cells as nbformat.v4.new_*_cell() makes them (with a fresh id when
 * with_id). Owned. */
cJSON *nb_new_code_cell(const char *source, bool with_id);
cJSON *nb_new_markdown_cell(const char *source, bool with_id);
/* A fresh cell id: 8 lowercase hex digits, like nbformat's. buf >= 9. */
void nb_new_cell_id(char *buf);

/* Joins multi-line values like nbformat's rejoin_lines (exposed for tests). */
void nb_rejoin_lines(cJSON *root);

#endif
