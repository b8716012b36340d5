/* main.h: the subcommand entry points, one per module. Each takes argv with
 * argv[0] = the subcommand name, returns the process exit status, prints its
 * own --help. */
#ifndef CB_MAIN_H
#define CB_MAIN_H

#include <stdbool.h>

typedef struct cb_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
    bool hidden;  /* internal commands (e.g. the sandbox agent) */
} cb_command;

int kn_cmd_kernel(int argc, char **argv);      /* kernel/main_kernel.c */
int kn_cmd_kernelspec(int argc, char **argv);  /* kernel/kernelspec.c */
int nb_cmd_run(int argc, char **argv);         /* notebooks/nb_run.c */
int sb_cmd_serve(int argc, char **argv);       /* sandbox/sb_serve.c */
int sb_cmd_agent(int argc, char **argv);       /* sandbox/sb_agent.c */

#endif
