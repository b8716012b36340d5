/* tests/t_sb_unit.c: unit tests of the pure parts of sandbox/: ids, UTF-8
 * repair, base64, durations, the error table, the setup plan (built from a
 * fake host tree, dry-run, JSON round trip, malformed plans) and the agent
 * protocol's frames and fd passing over real socketpairs. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "sandbox/sb_err.h"
#include "sandbox/sb_plan.h"
#include "sandbox/sb_port.h"
#include "sandbox/sb_proto.h"
#include "sandbox/sb_util.h"
#include "tests/tap.h"

static void test_ids(void)
{
    ok(sb_id_valid("a") && sb_id_valid("my-box-1") && sb_id_valid("0"), "valid sandbox ids");
    ok(!sb_id_valid("") && !sb_id_valid("A") && !sb_id_valid("a_b") && !sb_id_valid("-a") &&
       !sb_id_valid("a-") && !sb_id_valid("a/b") && !sb_id_valid("a.b"), "invalid sandbox ids");
    char long_id[70];
    memset(long_id, 'a', 64);
    long_id[64] = '\0';
    ok(!sb_id_valid(long_id), "64 characters is too long");
    long_id[63] = '\0';
    ok(sb_id_valid(long_id), "63 characters is fine");
    ok(sb_name_valid("web-1.v2_x") && !sb_name_valid("..") && !sb_name_valid("a/b") &&
       !sb_name_valid("a b"), "process and session names");
    ok(sb_env_name_valid("A_1") && !sb_env_name_valid("1A") && !sb_env_name_valid("A-B") &&
       !sb_env_name_valid(""), "environment variable names");
}

static void test_utf8(void)
{
    cb_buf b = CB_BUF_INIT;
    size_t keep = sb_utf8_append(&b, "a\xc3\xa9z", 4, false);
    ok(keep == 0 && b.len == 4 && memcmp(b.data, "a\xc3\xa9z", 4) == 0, "valid UTF-8 passes");
    cb_buf_reset(&b);
    keep = sb_utf8_append(&b, "ab\xe2\x82", 4, false);
    is_int(keep, 2, "an incomplete sequence at the end is kept back");
    is_int(b.len, 2, "and not emitted yet");
    cb_buf_reset(&b);
    sb_utf8_append(&b, "x\xffy", 3, true);
    is_str(b.data, "x\xef\xbf\xbdy", "an invalid byte becomes U+FFFD");
    cb_buf_reset(&b);
    sb_utf8_append(&b, "\xe2\x82", 2, true);
    is_str(b.data, "\xef\xbf\xbd\xef\xbf\xbd", "a truncated tail at the very end is replaced");
    cb_buf_reset(&b);
    sb_utf8_append(&b, "a\0b", 3, true);
    ok(b.len == 5 && !memchr(b.data, 0, b.len), "NUL bytes are replaced (JSON strings cannot hold them)");
    ok(!sb_utf8_valid("\xc0\xaf", 2) && !sb_utf8_valid("\xed\xa0\x80", 3) && sb_utf8_valid("\xf0\x9f\x98\x80", 4),
       "overlongs and surrogates are invalid, emoji valid");
    cb_buf_clear(&b);
}

static void test_b64_duration_mime(void)
{
    const char raw[] = "\x00\x01\xfe\xff hello";
    char *enc = sb_b64_encode(raw, sizeof raw - 1);
    size_t len = 0;
    char *dec = sb_b64_decode(enc, &len);
    ok(dec && len == sizeof raw - 1 && memcmp(dec, raw, len) == 0, "base64 round trip");
    free(enc);
    free(dec);
    ok(sb_b64_decode("!!!", &len) == NULL, "bad base64 is refused");
    is_int(sb_duration_ms("30s"), 30000, "30s");
    is_int(sb_duration_ms("10m"), 600000, "10m");
    is_int(sb_duration_ms("1.5h"), 5400000, "1.5h");
    is_int(sb_duration_ms("250ms"), 250, "250ms");
    is_int(sb_duration_ms("2d"), 172800000, "2d");
    is_int(sb_duration_ms("5"), 5000, "bare number = seconds");
    ok(sb_duration_ms("soon") < 0 && sb_duration_ms("-1s") < 0 && sb_duration_ms("") < 0,
       "bad durations");
    is_str(sb_mime_guess("a/b.PNG"), "image/png", "mime from extension");
    is_str(sb_mime_guess("noext"), "application/octet-stream", "unknown mime");
}

static void test_errors(void)
{
    is_str(sb_err_name(SB_E_FILE_NOT_FOUND), "FILE_NOT_FOUND", "error names");
    is_int(sb_err_status(SB_E_FILE_NOT_FOUND), 404, "FILE_NOT_FOUND is 404");
    is_int(sb_err_status(SB_E_UNAUTHORIZED), 401, "UNAUTHORIZED is 401");
    is_int(sb_err_status(SB_E_PROCESS_READY_TIMEOUT), 408, "PROCESS_READY_TIMEOUT is 408");
    is_int(sb_err_status(SB_E_CONTAINER_UNAVAILABLE), 503, "CONTAINER_UNAVAILABLE is 503");
    is_int(sb_err_from_errno(EROFS), SB_E_READ_ONLY, "EROFS -> READ_ONLY");
    is_int(sb_err_from_errno(ENOTEMPTY), SB_E_DIRECTORY_NOT_EMPTY, "ENOTEMPTY -> DIRECTORY_NOT_EMPTY");
    is_int(sb_err_from_name("SESSION_NOT_FOUND"), SB_E_SESSION_NOT_FOUND, "lookup by name");
    is_int(sb_err_from_name("NOPE"), SB_E_INTERNAL_ERROR, "unknown names are INTERNAL_ERROR");
    sb_error e;
    ok(sb_fail(&e, SB_E_TIMEOUT, "after %d ms", 5) == SB_E_TIMEOUT && strcmp(e.msg, "after 5 ms") == 0,
       "sb_fail fills the error");
}

static bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

static void test_plan(void)
{
    char tmpl[] = "/tmp/t_sb_unit.XXXXXX";
    char *root = mkdtemp(tmpl);
    char path[512];
    snprintf(path, sizeof path, "%s/usr", root);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/etc", root);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/etc/shadow", root);
    close(open(path, O_CREAT | O_WRONLY, 0600));
    snprintf(path, sizeof path, "%s/etc/nsswitch.conf", root);
    close(open(path, O_CREAT | O_WRONLY, 0644));
    snprintf(path, sizeof path, "%s/bin", root);
    symlink("usr/bin", path);

    sb_plan p;
    sb_plan_init(&p);
    sb_plan_opts o = {.hostname = "box", .workspace_fd = 5, .tmp_mb = 32, .host_prefix = root};
    sb_plan_build(&p, &o);
    cb_buf d = CB_BUF_INIT;
    sb_plan_describe(&p, &d);
    char want[600];
    snprintf(want, sizeof want, "bind       %s/usr -> /usr ro try", root);
    ok(has_line(d.data, want), "host /usr is bound read-only");
    ok(has_line(d.data, "symlink    /bin -> usr/bin"), "a symlinked /bin stays a symlink");
    ok(!strstr(d.data, "/lib64"), "missing host folders are skipped");
    ok(!strstr(d.data, "shadow"), "/etc/shadow is never part of a sandbox");
    snprintf(want, sizeof want, "bind       %s/etc/nsswitch.conf -> /etc/nsswitch.conf ro try", root);
    ok(has_line(d.data, want), "allowed /etc files are bound read-only");
    ok(has_line(d.data, "tmpfs      /tmp size=32m mode=1777"), "private /tmp with its size");
    const char *proc = strstr(d.data, "proc       /proc"), *pivot = strstr(d.data, "pivot");
    ok(proc && pivot && proc < pivot, "/proc is mounted before pivot_root");
    ok(has_line(d.data, "bind       /dev/null -> /dev/null rw dev"), "device nodes are bound");
    ok(p.steps[0].kind == SB_STEP_ROOT, "the plan starts by making a private root");
    sb_error err = {0};
    is_int(sb_plan_run(&p, true, &err), 0, "dry run accepts the plan");

    /* JSON round trip gives the same plan */
    cJSON *j = sb_plan_to_json(&p);
    sb_plan q;
    sb_plan_init(&q);
    is_int(sb_plan_from_json(&q, j), 0, "plan parses back from JSON");
    cb_buf d2 = CB_BUF_INIT;
    sb_plan_describe(&q, &d2);
    is_str(d2.data, d.data, "JSON round trip keeps every step");
    cJSON_Delete(j);
    sb_plan_clear(&q);

    sb_plan s;
    sb_plan_init(&s);
    sb_plan_build_specialize(&s, &o);
    cb_buf d3 = CB_BUF_INIT;
    sb_plan_describe(&s, &d3);
    ok(s.after_pivot && has_line(d3.data, "attach     /workspace (from fd 5)") &&
       has_line(d3.data, "hostname   box") && has_line(d3.data, "remount-ro /"),
       "specialising: workspace, hostname, read-only root");
    cb_buf_clear(&d3);
    sb_plan_clear(&s);

    /* malformed plans are refused before anything runs */
    sb_plan bad;
    sb_plan_init(&bad);
    sb_plan_add(&bad, SB_STEP_MKDIR, NULL, "relative", 0, 0755, 0);
    ok(sb_plan_run(&bad, true, &err) < 0, "relative destinations are refused");
    sb_plan_clear(&bad);
    sb_plan_add(&bad, SB_STEP_MKDIR, NULL, "/a/../../etc", 0, 0755, 0);
    ok(sb_plan_run(&bad, true, &err) < 0, "'..' in destinations is refused");
    sb_plan_clear(&bad);
    sb_plan_add(&bad, SB_STEP_BIND, NULL, "/x", 0, 0, 0);
    ok(sb_plan_run(&bad, true, &err) < 0, "a bind without a source is refused");
    sb_plan_clear(&bad);
    cJSON *unknown = cJSON_Parse("[{\"op\":\"format-disk\",\"dest\":\"/\"}]");
    ok(sb_plan_from_json(&bad, unknown) < 0, "unknown step names are refused");
    cJSON_Delete(unknown);
    sb_plan_clear(&bad);

    cb_buf_clear(&d);
    cb_buf_clear(&d2);
    sb_plan_clear(&p);
    snprintf(path, sizeof path, "rm -rf %s", root);
    ok(system(path) == 0, "cleanup");
}

static void test_proto(void)
{
    int sv[2];
    ok(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    cb_buf p = CB_BUF_INIT;
    char type = 0;
    ok(sb_frame_write_str(sv[0], SB_FRAME_JSON, "{\"ev\":\"start\"}") == 0, "write a frame");
    ok(sb_frame_read(sv[1], &type, &p) == 0 && type == 'J' && strcmp(p.data, "{\"ev\":\"start\"}") == 0,
       "read it back");
    ok(sb_frame_write(sv[0], SB_FRAME_STDIN_CLOSE, NULL, 0) == 0 && sb_frame_read(sv[1], &type, &p) == 0 &&
       type == 'C' && p.len == 0, "empty frames");
    if (fork() == 0) {
        /* a frame bigger than the socket buffer, written by another process */
        char *big = malloc(3 << 20);
        memset(big, 'x', 3 << 20);
        sb_frame_write(sv[0], SB_FRAME_STDOUT, big, 3 << 20);
        _exit(0);
    }
    ok(sb_frame_read(sv[1], &type, &p) == 0 && type == 'O' && p.len == 3u << 20 && p.data[p.len - 1] == 'x',
       "3 MiB frame in one piece");
    unsigned char hdr[5] = {0xff, 0xff, 0xff, 0x7f, 'J'};
    ok(write(sv[0], hdr, 5) == 5 && sb_frame_read(sv[1], &type, &p) < 0, "oversized length is refused");
    close(sv[0]);
    close(sv[1]);
    ok(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    write(sv[0], "\x03\x00", 2);
    close(sv[0]);
    ok(sb_frame_read(sv[1], &type, &p) < 0, "a truncated header is an error");
    close(sv[1]);
    ok(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
    close(sv[0]);
    is_int(sb_frame_read(sv[1], &type, &p), 1, "clean EOF is 1");
    close(sv[1]);

    int ctl[2];
    ok(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, ctl) == 0, "control socketpair");
    int chan = sb_ctl_open_channel(ctl[0]);
    char buf[16];
    int got = -1;
    ssize_t n = sb_ctl_recv(ctl[1], buf, sizeof buf, &got);
    ok(chan >= 0 && n == 4 && got >= 0, "a channel arrives as an fd on the control socket");
    ok(sb_frame_write_str(got, SB_FRAME_JSON, "hi") == 0 && sb_frame_read(chan, &type, &p) == 0 &&
       strcmp(p.data, "hi") == 0, "and both ends talk");
    close(got);
    close(chan);
    close(ctl[0]);
    n = sb_ctl_recv(ctl[1], buf, sizeof buf, &got);
    ok(n == 0 && got == -1, "EOF on the control socket");
    close(ctl[1]);
    cb_buf_clear(&p);
}

static void test_preview_hosts(void)
{
    int port;
    char id[64], tok[64];
    ok(sb_port_parse_host("8080-my-box-abc123.localhost:7070", "localhost", &port, id, tok) && port == 8080 &&
       strcmp(id, "my-box") == 0 && strcmp(tok, "abc123") == 0,
       "port, id with hyphens and token from {port}-{id}-{token}.domain:port");
    ok(sb_port_parse_host("3000-A-T_1.Example.COM.", "example.com", &port, id, tok) && strcmp(id, "a") == 0 &&
       strcmp(tok, "t_1") == 0, "case-insensitive, a trailing dot");
    const char *bad[] = {"localhost:7070", "8080-box.localhost", "80-box-t.localhost", "70000-box-t.localhost",
                         "8080--t.localhost", "8080-box-.localhost", "8080-box-t.other.host",
                         "x8080-box-t.localhost", "8080-bo_x-t.localhost", "8080-box-t!.localhost",
                         "8080-box-t", "", "[::1]:7070", NULL};
    bool none = true;
    for (const char **h = bad; *h; h++)
        if (sb_port_parse_host(*h, "localhost", &port, id, tok)) {
            none = false;
            printf("# wrongly parsed: %s\n", *h);
        }
    ok(none, "hosts that are not preview hosts are refused (%d cases)", (int)(sizeof bad / sizeof *bad) - 1);
}

int main(void)
{
    test_ids();
    test_preview_hosts();
    test_utf8();
    test_b64_duration_mime();
    test_errors();
    test_plan();
    test_proto();
    return tap_done();
}
