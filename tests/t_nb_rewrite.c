/* tests/t_nb_rewrite: read a notebook with cellbox's nbformat layer and write
 * it back (or print the validation error and exit 2). The format tests
 * compare its output with nbformat.write() byte for byte. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "notebooks/nb_format.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: t_nb_rewrite IN.ipynb OUT.ipynb|-\n");
        return 2;
    }
    char *err = NULL;
    nb_notebook *nb = nb_notebook_read(argv[1], &err);
    if (!nb) {
        fprintf(stderr, "%s\n", err);
        free(err);
        return 2;
    }
    int rc = nb_notebook_write(nb, argv[2], &err);
    if (rc < 0) {
        fprintf(stderr, "%s\n", err);
        free(err);
    }
    nb_notebook_free(nb);
    return rc < 0 ? 1 : 0;
}
