/* kernel/main_kernel.c: `cellbox kernel -f CONNECTION_FILE [--language L]`:
 * the kernel core with an interpreter plugged in: the embedded Python
 * (default) or node for JavaScript / TypeScript (interp/node.c). */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "interp/interp.h"
#include "kernel/kernel.h"
#include "main.h"
#include "notebooks/nb_json.h"
#include <unistd.h>

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cellbox kernel -f CONNECTION_FILE [--language LANG]\n"
            "                      [--history-file PATH | --no-history]\n"
            "\n"
            "Run as a Jupyter kernel (Python, embedded CPython, by default). Jupyter\n"
            "frontends start this through the kernelspec ('cellbox kernelspec install').\n"
            "  -f, --connection-file FILE  the connection file written by the frontend\n"
            "  -l, --language LANG         python (default), javascript (js) or typescript (ts);\n"
            "                              the last two run Node.js (Debian: nodejs,\n"
            "                              node-typescript)\n"
            "  --history-file PATH         where history is kept\n"
            "                              (default $XDG_DATA_HOME/cellbox/history.jsonl)\n"
            "  --no-history                keep history in memory only\n"
            "Environment: CELLBOX_LOG=error|warn|info|debug (log level, on stderr),\n"
            "             CELLBOX_MAX_MESSAGE_BYTES (largest accepted message, default 256 MiB).\n");
}

int kn_cmd_kernel(int argc, char **argv)
{
    enum { O_HIST = 1, O_NOHIST };
    static const struct option opts[] = {
        {"connection-file", required_argument, NULL, 'f'},
        {"language", required_argument, NULL, 'l'},
        {"history-file", required_argument, NULL, O_HIST},
        {"no-history", no_argument, NULL, O_NOHIST},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    /* nb_json's parser keeps U+0000 (CB_JSON_NUL), as `cellbox run` does */
    kn_kernel_opts ko = {.parse_nul = nb_json_parse_msg};
    const char *language = "python";
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "f:l:h", opts, NULL)) != -1) {
        switch (o) {
        case 'f': ko.connection_file = optarg; break;
        case 'l': language = optarg; break;
        case O_HIST: ko.history_file = optarg; break;
        case O_NOHIST: ko.no_history = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!ko.connection_file) {
        fprintf(stderr, "cellbox kernel: missing -f CONNECTION_FILE\n\n");
        usage(stderr);
        return 2;
    }
    bool python = strcmp(language, "python") == 0 || strcmp(language, "python3") == 0;
    ip_lang lang = IP_LANG_JAVASCRIPT;
    if (!python && ip_lang_parse(language, &lang) < 0) {
        fprintf(stderr, "cellbox kernel: unknown language '%s' (python, javascript or typescript)\n", language);
        return 2;
    }
    cb_log_init_from_env(CB_LOG_WARN);
    const char *maxb = getenv("CELLBOX_MAX_MESSAGE_BYTES");
    if (maxb && *maxb)
        ko.max_message_bytes = (size_t)strtoull(maxb, NULL, 10);
    int rc;
    if (python) {
        kn_interp *interp = ip_python_new(&(ip_options){.capture_fds = true});
        rc = kn_kernel_run(&ko, interp);
        ip_python_free(interp);
    } else {
        char *err = NULL;
        kn_interp *interp = ip_node_new(&(ip_node_options){.lang = lang, .capture_fds = true}, &err);
        if (!interp) {
            fprintf(stderr, "cellbox kernel: %s\n", err);
            free(err);
            return 1;
        }
        rc = kn_kernel_run(&ko, interp);
        ip_node_free(interp);
    }
    fflush(NULL);
    /* No interpreter finalisation: user threads could hang it (see interp). */
    _exit(rc);
}
