/* Unit tests of the shared base: buffers, dates, JSON helpers, atomic writes. */
#include "config.h"

#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/util.h"
#include "tests/tap.h"

static void test_buf(void)
{
    cb_buf b = CB_BUF_INIT;
    cb_buf_puts(&b, "hello");
    cb_buf_printf(&b, " %d", 42);
    is_str(b.data, "hello 42", "buf append + printf");
    cb_buf_consume(&b, 6);
    is_str(b.data, "42", "buf consume");
    for (int i = 0; i < 10000; i++)
        cb_buf_putc(&b, 'x');
    is_int(b.len, 10002, "buf grows");
    char *s = cb_buf_steal(&b);
    ok(b.data == NULL && b.len == 0, "steal resets");
    free(s);
    cb_buf_clear(&b);
}

static void test_dates(void)
{
    char d[CB_ISO_DATE_LEN];
    cb_iso_date(d, 1795700000123456LL);
    is_str(d, "2026-11-26T13:33:20.123456Z", "iso date with zone and µs");
    is_int(cb_iso_date_parse(d), 1795700000123456LL, "parse Z");
    is_int(cb_iso_date_parse("2026-11-26T14:33:20.123456+01:00"), 1795700000123456LL, "parse offset");
    is_int(cb_iso_date_parse("2026-11-26T13:33:20Z"), 1795700000000000LL, "parse no fraction");
    is_int(cb_iso_date_parse("garbage"), -1, "garbage date");
}

static void test_json(void)
{
    cJSON *j = cJSON_Parse("{\"a\":\"x\",\"n\":3,\"b\":true,\"o\":{},\"l\":[]}");
    is_str(cb_json_str(j, "a", NULL), "x", "json str");
    is_str(cb_json_str(j, "n", "dflt"), "dflt", "json str wrong type -> default");
    is_int(cb_json_int(j, "n", 0), 3, "json int");
    ok(cb_json_bool(j, "b", false), "json bool");
    ok(cb_json_obj(j, "o") && !cb_json_obj(j, "l") && cb_json_arr(j, "l"), "json obj/arr");
    cb_json_set(j, "a", cJSON_CreateNumber(1));
    is_int(cb_json_int(j, "a", 0), 1, "json set replaces");
    cJSON_Delete(j);
    cJSON *big = cJSON_Parse("{\"b\":1e300,\"s\":-1e300}");
    ok(cb_json_int(big, "b", 0) == LLONG_MAX && cb_json_int(big, "s", 0) == LLONG_MIN,
       "json int clamps huge numbers (no undefined conversion)");
    cJSON_Delete(big);
    cJSON *p = cb_json_parse("{\"a\":1}xxxx", 7);
    ok(p != NULL, "parse with length ignores the bytes past the length");
    cJSON_Delete(p);
    p = cb_json_parse("{\"a\":1} \r\n\t", 11);
    ok(p != NULL, "white space after the value is fine");
    cJSON_Delete(p);
    static const char *const junk[] = {"{\"a\":1} x", "{\"a\":1}{\"b\":2}", "[1] [2]", "1 2", "{\"a\":1}\0"};
    for (size_t i = 0; i < CB_ARRAY_LEN(junk); i++) {
        size_t n = strlen(junk[i]) + (i == 4);
        p = cb_json_parse(junk[i], n);
        ok(p == NULL, "anything after the value is an error (RFC 8259): case %zu", i);
        cJSON_Delete(p);
    }
}

static void test_files(void)
{
    char dir[] = "/tmp/cb-t-base-XXXXXX";
    ok(mkdtemp(dir) != NULL, "mkdtemp");
    cb_autofree char *deep = cb_path_join(dir, "a/b/c");
    is_int(cb_mkdir_p(deep, 0755), 0, "mkdir -p");
    cb_autofree char *f = cb_path_join(deep, "f.txt");
    is_int(cb_write_file_atomic(f, "data", 4, 0600), 0, "atomic write");
    size_t n = 0;
    cb_autofree char *got = cb_read_file(f, &n);
    ok(got && n == 4 && strcmp(got, "data") == 0, "read back");
    struct stat st;
    ok(stat(f, &st) == 0 && (st.st_mode & 0777) == 0600, "mode applied");
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ok(system(cmd) == 0, "cleanup");
}

int main(void)
{
    test_buf();
    test_dates();
    test_json();
    test_files();
    char id[37];
    cb_uuid4(id);
    ok(strlen(id) == 36 && id[14] == '4', "uuid4 shape");
    cb_autofree char *h = cb_random_hex(16);
    ok(strlen(h) == 32, "random hex length");
    return tap_done();
}
