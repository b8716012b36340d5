/* tests/fuzz/fuzz_notebook.c: hostile bytes against the notebook reader,
 * and a round-trip invariant: a notebook cellbox accepts and writes reads
 * back to the same bytes when written again. */
#include "config.h"

#include <string.h>

#include "base/util.h"
#include "notebooks/nb_format.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *err = NULL;
    nb_notebook *nb = nb_notebook_parse((const char *)data, size, "fuzz.ipynb", &err);
    if (!nb) {
        if (!err)
            abort();  /* a refusal always says why */
        free(err);
        return 0;
    }
    size_t len1 = 0, len2 = 0;
    char *out1 = nb_notebook_dumps(nb, &len1);
    nb_notebook_free(nb);
    nb_notebook *again = nb_notebook_parse(out1, len1, "fuzz.ipynb", &err);
    if (!again)
        abort();  /* what we wrote must read back */
    char *out2 = nb_notebook_dumps(again, &len2);
    if (len1 != len2 || memcmp(out1, out2, len1) != 0)
        abort();  /* and write the same bytes again */
    free(out1);
    free(out2);
    nb_notebook_free(again);
    return 0;
}
