/* Unit tests of notebooks/nb_json and nb_format: Python's float repr, number
 * spellings kept through parse/write, the json.dumps(indent=1,
 * sort_keys=True, ensure_ascii=False) layout, parser errors, splitlines,
 * nbformat's line splitting. Expected strings are what CPython prints. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/util.h"
#include "notebooks/nb_format.h"
#include "notebooks/nb_json.h"
#include "tests/tap.h"

static void test_float_repr(void)
{
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {1.0, "1.0"}, {0.1, "0.1"}, {1e-05, "1e-05"}, {1e16, "1e+16"}, {1.5e300, "1.5e+300"},
        {-0.0, "-0.0"}, {123456789012345.0, "123456789012345.0"}, {1234567890123456.0, "1234567890123456.0"},
        {12345678901234567.0, "1.2345678901234568e+16"}, {3.141592653589793, "3.141592653589793"},
        {2.5e-07, "2.5e-07"}, {1e22, "1e+22"}, {5e-324, "5e-324"}, {0.0001, "0.0001"},
        {0.00012345, "0.00012345"}, {100.0, "100.0"}, {1e15, "1000000000000000.0"}, {0.3, "0.3"},
        {2.0 / 3.0, "0.6666666666666666"}, {1.7976931348623157e308, "1.7976931348623157e+308"},
        {-5432.1, "-5432.1"}, {0.1 + 0.2, "0.30000000000000004"}, {INFINITY, "inf"}, {-INFINITY, "-inf"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(cases); i++) {
        char buf[40];
        nb_json_float_repr(cases[i].v, buf);
        is_str(buf, cases[i].want, "repr(%s)", cases[i].want);
    }
}

static char *roundtrip(const char *in)
{
    char *err = NULL;
    cJSON *j = nb_json_parse(in, strlen(in), NB_JSON_STRICT_UTF8, &err);
    if (!j)
        return err;
    cb_buf b = CB_BUF_INIT;
    nb_json_write(&b, j);
    cJSON_Delete(j);
    return cb_buf_steal(&b);
}

static void test_write(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"1.0", "1.0"},
        {"1", "1"},
        {"-0", "0"},
        {"-0.0", "-0.0"},
        {"1E5", "100000.0"},
        {"1.50", "1.5"},
        {"123456789012345678901234567890", "123456789012345678901234567890"},
        {"1e400", "Infinity"},
        {"NaN", "NaN"},
        {"-Infinity", "-Infinity"},
        {"[]", "[]"},
        {"{}", "{}"},
        {"{\"b\": 1, \"a\": [1, {\"d\": null, \"c\": true}]}",
         "{\n \"a\": [\n  1,\n  {\n   \"c\": true,\n   \"d\": null\n  }\n ],\n \"b\": 1\n}"},
        {"{\"a\": 1, \"a\": 2}", "{\n \"a\": 2\n}"},
        {"\"\\u00e9\\ud83d\\ude00\\u2028\\u007f\"", "\"\xc3\xa9\xf0\x9f\x98\x80\xe2\x80\xa8\x7f\""},
        {"\"\\b\\f\\n\\r\\t\\\"\\\\\\/\\u0001\\u001f\"", "\"\\b\\f\\n\\r\\t\\\"\\\\/\\u0001\\u001f\""},
        {"\"\\ud800x\"", "\"\xef\xbf\xbdx\""},
        {"{\"\xc3\xa9\": 1, \"z\": 2, \"Z\": 3, \"\": 4}", "{\n \"\": 4,\n \"Z\": 3,\n \"z\": 2,\n \"\xc3\xa9\": 1\n}"},
        {"\xef\xbb\xbf[1]", "[\n 1\n]"},
        /* U+0000 survives (stored as C0 80, written back as \u0000), in values and keys */
        {"\"a\\u0000b\\u0000\"", "\"a\\u0000b\\u0000\""},
        {"{\"k\\u0000\": \"\\u0000\"}", "{\n \"k\\u0000\": \"\\u0000\"\n}"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(cases); i++) {
        char *got = roundtrip(cases[i].in);
        is_str(got, cases[i].want, "write(parse(%s))", cases[i].in);
        free(got);
    }
    cJSON *n = cJSON_CreateNumber(3);
    cb_buf b = CB_BUF_INIT;
    nb_json_write(&b, n);
    is_str(b.data, "3", "a created integral number prints as an int");
    cJSON_Delete(n);
    n = nb_json_float(3);
    cb_buf_reset(&b);
    nb_json_write(&b, n);
    is_str(b.data, "3.0", "nb_json_float prints as a float");
    ok(!nb_json_is_int(n), "and is not an int");
    cJSON_Delete(n);
    cb_buf_clear(&b);
}

static void test_errors(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"{\"a\": [1, 2", "truncated JSON: unexpected end of input at line 1 column 12"},
        {"{\"a\": 1} x", "invalid JSON at line 1 column 10: extra data after the JSON value"},
        {"{\n \"a\" 1}", "invalid JSON at line 2 column 6: expected ':' after property name"},
        {"[1,]", "invalid JSON at line 1 column 4: expected a value"},
        {"\"a\tb\"", "control character in string"},
        {"\"\\x\"", "invalid escape in string"},
        {"[01]", "expected ',' or ']' in array"},
        {"\"\xff\"", "invalid UTF-8 byte in string"},
        {"\"\xed\xa0\x80\"", "invalid UTF-8 byte in string"},
        {"", "truncated JSON"},
        {"tru", "expected a value"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(cases); i++) {
        char *err = NULL;
        cJSON *j = nb_json_parse(cases[i].in, strlen(cases[i].in), NB_JSON_STRICT_UTF8, &err);
        ok(!j && err && strstr(err, cases[i].want), "error for %s: %s", cases[i].in, err ? err : "(none)");
        cJSON_Delete(j);
        free(err);
    }
    /* a big object's duplicate keys: the last value at the first position */
    cb_buf big = CB_BUF_INIT;
    cb_buf_puts(&big, "{\"dup\": 0");
    for (int i = 0; i < 700; i++)
        cb_buf_printf(&big, ", \"k%d\": %d", i, i);
    cb_buf_puts(&big, ", \"dup\": 1, \"dup\": 2}");
    cJSON *bj = nb_json_parse(big.data, big.len, 0, NULL);
    int ndup = 0;
    for (cJSON *c = bj ? bj->child : NULL; c; c = c->next)
        ndup += strcmp(c->string, "dup") == 0;
    ok(bj && ndup == 1 && cJSON_GetArraySize(bj) == 701 && strcmp(bj->child->string, "dup") == 0 &&
           cJSON_GetObjectItemCaseSensitive(bj, "dup")->valuedouble == 2,
       "701 keys with 'dup' 3 times: one 'dup', first, the last value");
    cJSON_Delete(bj);
    cb_buf_clear(&big);
    cJSON *nul = cJSON_CreateString("x" NB_JSON_NUL "y");
    char *msg = cb_json_print(nul);
    ok(msg && strcmp(msg, "\"x\\u0000y\"") == 0, "a NUL goes to a kernel as \\u0000: %s", msg);
    free(msg);
    cJSON_Delete(nul);
    cb_buf deep = CB_BUF_INIT;
    for (int i = 0; i < 5000; i++)
        cb_buf_putc(&deep, '[');
    char *err = NULL;
    ok(!nb_json_parse(deep.data, deep.len, 0, &err) && err && strstr(err, "nested too deeply"), "deep nesting refused");
    free(err);
    cb_buf_clear(&deep);
    cJSON *j = nb_json_parse("\"\xff\"", 3, 0, NULL);
    is_str(j ? j->valuestring : NULL, "\xef\xbf\xbd", "lenient mode replaces invalid UTF-8");
    cJSON_Delete(j);
}

static void collect(void *ctx, const char *line, size_t n)
{
    cb_buf *b = ctx;
    cb_buf_putc(b, '[');
    cb_buf_append(b, line, n);
    cb_buf_putc(b, ']');
}

static void test_splitlines(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"", ""},
        {"a", "[a]"},
        {"a\nb\n", "[a\n][b\n]"},
        {"a\r\nb\rc", "[a\r\n][b\r][c]"},
        {"\n\n", "[\n][\n]"},
        {"a\vb\fc\x1c" "d\x1d" "e\x1e" "f", "[a\v][b\f][c\x1c][d\x1d][e\x1e][f]"},
        {"x\xc2\x85y\xe2\x80\xa8z\xe2\x80\xa9", "[x\xc2\x85][y\xe2\x80\xa8][z\xe2\x80\xa9]"},
        {"\xe2\x80\xa7no", "[\xe2\x80\xa7no]"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(cases); i++) {
        cb_buf b = CB_BUF_INIT;
        cb_buf_puts(&b, "");
        nb_json_splitlines(cases[i].in, strlen(cases[i].in), collect, &b);
        is_str(b.data, cases[i].want, "splitlines case %zu", i);
        cb_buf_clear(&b);
    }
}

static void test_insert(void)
{
    cJSON *a = nb_json_parse("[1, 2, 3]", 9, 0, NULL);
    nb_json_insert(a, 1, cJSON_CreateNumber(9));
    nb_json_insert(a, 0, cJSON_CreateNumber(0));
    nb_json_insert(a, 99, cJSON_CreateNumber(4));
    char *s = cJSON_PrintUnformatted(a);
    is_str(s, "[0,1,9,2,3,4]", "insert in the middle, at the front, past the end");
    free(s);
    cJSON_AddItemToArray(a, cJSON_CreateNumber(5));
    s = cJSON_PrintUnformatted(a);
    is_str(s, "[0,1,9,2,3,4,5]", "the tail pointer stays right");
    free(s);
    cJSON_Delete(a);
}

static void test_notebook(void)
{
    const char *doc =
        "{\"cells\": [{\"cell_type\": \"code\", \"execution_count\": 2, \"id\": \"x\", \"metadata\": {\"trusted\": true},"
        " \"outputs\": [{\"output_type\": \"stream\", \"name\": \"stdout\", \"text\": [\"a\\n\", \"b\"]},"
        " {\"output_type\": \"display_data\", \"metadata\": {}, \"data\": {\"text/plain\": [\"x\\n\", \"y\"],"
        " \"image/png\": [\"AAA\\n\", \"BBB\"], \"application/json\": [\"keep\", \"list\"]}}],"
        " \"source\": [\"print(1)\\n\", \"print(2)\"]}, {\"cell_type\": \"markdown\", \"id\": \"x\", \"metadata\": {},"
        " \"source\": \"\"}], \"metadata\": {\"orig_nbformat\": 3, \"kernelspec\": {\"name\": \"k\"}},"
        " \"nbformat\": 4, \"nbformat_minor\": 5}";
    char *err = NULL;
    nb_notebook *nb = nb_notebook_parse(doc, strlen(doc), "t", &err);
    ok(nb != NULL, "a notebook parses (%s)", err ? err : "ok");
    free(err);
    if (!nb)
        return;
    cJSON *c0 = nb_cell_at(nb, 0);
    is_str(nb_cell_source(c0), "print(1)\nprint(2)", "sources are joined in memory");
    ok(!cJSON_GetObjectItem(cb_json_obj(c0, "metadata"), "trusted"), "cell metadata 'trusted' is transient");
    ok(strcmp(nb_cell_id(nb_cell_at(nb, 1)), "x") != 0, "a duplicate id is replaced (nbformat 4.5)");
    char *text = nb_notebook_dumps(nb, NULL);
    ok(strstr(text, "\"source\": [\n    \"print(1)\\n\",\n    \"print(2)\"\n   ]") != NULL, "sources split into lines");
    ok(strstr(text, "\"image/png\": \"AAA\\nBBB\"") != NULL, "image/png rejoined and not split again");
    ok(strstr(text, "\"application/json\": [\n       \"keep\",\n       \"list\"\n      ]") != NULL,
       "JSON mimetypes left alone");
    ok(strstr(text, "\"source\": []") != NULL, "an empty source is []");
    ok(!strstr(text, "orig_nbformat"), "orig_nbformat is transient");
    ok(text[strlen(text) - 1] == '\n' && text[strlen(text) - 2] == '}', "trailing newline");
    free(text);
    nb_notebook_free(nb);
}

int main(void)
{
    test_float_repr();
    test_write();
    test_errors();
    test_splitlines();
    test_insert();
    test_notebook();
    return tap_done();
}
