# sandbox/: `cellbox serve` (HTTP API, sandbox registry, files, processes)
# and `cellbox agent` (pid 1 inside each sandbox). See docs/api.md.
libcellbox_a_SOURCES += \
	sandbox/sb_util.c sandbox/sb_util.h \
	sandbox/sb_err.c sandbox/sb_err.h \
	sandbox/sb_proto.c sandbox/sb_proto.h \
	sandbox/sb_plan.c sandbox/sb_plan.h \
	sandbox/sb_pin.c sandbox/sb_pin.h \
	sandbox/sb_secure.c sandbox/sb_secure.h \
	sandbox/sb_cgroup.c sandbox/sb_cgroup.h \
	sandbox/sb_net.c sandbox/sb_net.h \
	sandbox/sb_agent.c \
	sandbox/sb_box.c sandbox/sb_box.h \
	sandbox/sb_proc.c sandbox/sb_proc.h \
	sandbox/sb_ctx.c sandbox/sb_ctx.h \
	sandbox/sb_port.c sandbox/sb_port.h \
	sandbox/sb_http.c sandbox/sb_http.h \
	sandbox/sb_ws.c sandbox/sb_ws.h \
	sandbox/sb_pty.c sandbox/sb_pty.h \
	sandbox/sb_api.c sandbox/sb_api.h \
	sandbox/sb_files.c \
	sandbox/sb_watch.c sandbox/sb_watch.h \
	sandbox/sb_git.c sandbox/sb_git.h \
	sandbox/sb_backup.c sandbox/sb_backup.h \
	sandbox/sb_mount.c sandbox/sb_mount.h \
	sandbox/sb_serve.c

# The agent (pid 1 of every sandbox) as a small program of its own: it is
# started twice per sandbox, and links libc, cJSON and libsodium only.
pkglibexec_PROGRAMS = cellbox-agent
cellbox_agent_SOURCES = sandbox/sb_agent_main.c
cellbox_agent_LDADD = libcellbox.a $(CJSON_LIBS) $(SODIUM_LIBS)
cellbox_agent_LDFLAGS = $(SAN_LDFLAGS) -pthread

# Tests: C unit tests of the pure parts, then integration tests that run the
# real server (Python's http.client and curl; they need root).
EXTRA_DIST += tests/sandbox_lib.py tests/sandbox_api.py tests/sandbox_lifecycle.py \
	tests/sandbox_hostile.py tests/sandbox_egress.py tests/sandbox_curl.sh \
	tests/sandbox_nons.py tests/sandbox_ports.py tests/sandbox_disk.py tests/sandbox_pause.py bench/sandbox/bench.py bench/sandbox/code_bench.py \
	bench/sandbox/README.md
TESTS += tests/sandbox_api.py tests/sandbox_lifecycle.py tests/sandbox_hostile.py \
	tests/sandbox_egress.py tests/sandbox_curl.sh tests/sandbox_nons.py tests/sandbox_ports.py \
	tests/sandbox_disk.py tests/sandbox_pause.py

check_PROGRAMS += tests/t_sb_unit
tests_t_sb_unit_SOURCES = tests/t_sb_unit.c
tests_t_sb_unit_LDADD = libcellbox.a $(CB_LIBS)
TESTS += tests/t_sb_unit

# cgroup v2 and v1/hybrid on fake trees, plus this machine's cgroup2 tree
check_PROGRAMS += tests/t_sb_cgroup
tests_t_sb_cgroup_SOURCES = tests/t_sb_cgroup.c
tests_t_sb_cgroup_LDADD = libcellbox.a $(CB_LIBS)
TESTS += tests/t_sb_cgroup
