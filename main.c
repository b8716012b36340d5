/* main.c: the cellbox binary. One program, several faces, chosen by the
 * first argument; each subcommand lives in its module and is listed once in
 * the table below. Keep this file a table and a dispatcher. */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "base/util.h"
#include "main.h"

static const cb_command commands[] = {
    {"kernel", kn_cmd_kernel, "run as a Jupyter kernel (cellbox kernel -f CONNECTION_FILE)", false},
    {"kernelspec", kn_cmd_kernelspec, "install or list Jupyter kernelspecs", false},
    {"run", nb_cmd_run, "execute notebooks headlessly (cellbox run NOTEBOOK.ipynb)", false},
    {"serve", sb_cmd_serve, "run the sandbox manager (HTTP/JSON API)", false},
    {"agent", sb_cmd_agent, "pid 1 of a sandbox (internal)", true},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: cellbox [--help] [--version] COMMAND [ARGS...]\n"
            "\n"
            "cellbox runs code safely and shows rich results: a Jupyter kernel with an\n"
            "embedded CPython (and JavaScript/TypeScript through Node.js), a headless\n"
            "notebook executor and a sandbox manager.\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < CB_ARRAY_LEN(commands); i++)
        if (!commands[i].hidden)
            fprintf(out, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nRun 'cellbox COMMAND --help' for the options of a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0 || strcmp(cmd, "version") == 0) {
        printf("cellbox %s\n", PACKAGE_VERSION);
        return 0;
    }
    for (size_t i = 0; i < CB_ARRAY_LEN(commands); i++)
        if (strcmp(cmd, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "cellbox: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
