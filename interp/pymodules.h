/* interp/pymodules.h: the embedded Python package (generated table, see
 * interp/embed.py). Static data, never freed. */
#ifndef IP_PYMODULES_H
#define IP_PYMODULES_H

#include <stddef.h>

typedef struct ip_pymodule {
    const char *name;         /* dotted module name; NULL ends the table */
    const char *filename;     /* as shown in tracebacks */
    int is_package;
    const unsigned char *code;  /* marshalled code object */
    size_t code_len;
    const unsigned char *source;
    size_t source_len;
} ip_pymodule;

extern const ip_pymodule ip_pymodules[];
extern const unsigned char ip_pymodules_magic[4];

#endif
