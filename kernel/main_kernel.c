/* placeholder while the kernel lands */
#include "config.h"
#include <stdio.h>
#include "main.h"
int kn_cmd_kernel(int argc, char **argv) { (void)argc; (void)argv; fputs("cellbox kernel: not built yet\n", stderr); return 1; }
int kn_cmd_kernelspec(int argc, char **argv) { (void)argc; (void)argv; fputs("cellbox kernelspec: not built yet\n", stderr); return 1; }
