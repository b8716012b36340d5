/* Unit tests of the papermill-compatible parameters (notebooks/nb_papermill):
 * -p typing (papermill's _resolve_type, i.e. Python's int()/float()), the
 * Python/R/bash translators (vectors from papermill's own
 * test_translators.py), injection rules, YAML typing (when built with
 * libyaml), papermill's time format, -b (base64), --report-mode, and
 * --help-notebook's reading of a parameters cell (papermill's
 * test_inspect.py vectors plus the cases its ast reader gets right). */
#include "config.h"

#include <string.h>

#include "base/json.h"
#include "base/util.h"
#include "notebooks/nb_format.h"
#include "notebooks/nb_json.h"
#include "notebooks/nb_papermill.h"
#include "tests/tap.h"

static char *dump(const cJSON *j)
{
    cb_buf b = CB_BUF_INIT;
    nb_json_write(&b, j);
    return cb_buf_steal(&b);
}

static void test_typing(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"1", "1"}, {"-7", "-7"}, {"+5", "5"}, {"1_000", "1000"}, {"007", "7"}, {"-0", "0"}, {" 12 ", "12"},
        {"12345678901234567890", "12345678901234567890"}, {"1.5", "1.5"}, {"1e3", "1000.0"}, {".5", "0.5"},
        {"5.", "5.0"}, {"1_000.5", "1000.5"}, {"inf", "Infinity"}, {"-Infinity", "-Infinity"}, {"nan", "NaN"},
        {"True", "true"}, {"False", "false"}, {"None", "null"}, {"true", "\"true\""}, {"none", "\"none\""},
        {"0x10", "\"0x10\""}, {"1__0", "\"1__0\""}, {"_1", "\"_1\""}, {"1_", "\"1_\""}, {"1 2", "\"1 2\""},
        {"--1", "\"--1\""}, {"1e", "\"1e\""}, {"e5", "\"e5\""}, {"", "\"\""}, {"hello world", "\"hello world\""},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(cases); i++) {
        cJSON *p = cJSON_CreateObject();
        nb_params_set_typed(p, "x", cases[i].in);
        char *got = dump(cJSON_GetObjectItem(p, "x"));
        is_str(got, cases[i].want, "-p x '%s'", cases[i].in);
        free(got);
        cJSON_Delete(p);
    }
    cJSON *p = cJSON_CreateObject();
    nb_params_set_typed(p, "a", "1");
    nb_params_set_raw(p, "b", "1");
    nb_params_set_typed(p, "a", "2");
    char *got = cJSON_PrintUnformatted(p);
    is_str(got, "{\"a\":2,\"b\":\"1\"}", "-r keeps strings; a repeated name keeps its place (dict update)");
    free(got);
    cJSON_Delete(p);
}

/* papermill's test_translators.py vectors: (JSON value, expected code) */
static void translate_case(const char *kernel, const char *lang, const char *value_json, const char *want,
                           const char *assign)
{
    cJSON *p = cJSON_CreateObject();
    cJSON_AddItemToObject(p, "foo", nb_json_parse(value_json, strlen(value_json), 0, NULL));
    char *err = NULL;
    char *code = nb_params_code(p, kernel, lang, &err);
    cb_autofree char *expect = cb_printf_new("# Parameters\nfoo%s%s\n", assign, want);
    is_str(code, expect, "%s: %s -> %s", lang, value_json, want);
    free(code);
    free(err);
    cJSON_Delete(p);
}

static void test_translators(void)
{
    static const struct {
        const char *in, *py, *r;
    } cases[] = {
        {"\"foo\"", "\"foo\"", "\"foo\""},
        {"\"{\\\"foo\\\": \\\"bar\\\"}\"", "\"{\\\"foo\\\": \\\"bar\\\"}\"", "\"{\\\"foo\\\": \\\"bar\\\"}\""},
        {"{\"foo\": \"bar\"}", "{\"foo\": \"bar\"}", "list(\"foo\" = \"bar\")"},
        {"{\"foo\": \"\\\"bar\\\"\"}", "{\"foo\": \"\\\"bar\\\"\"}", "list(\"foo\" = \"\\\"bar\\\"\")"},
        {"{\"foo\": [\"bar\"]}", "{\"foo\": [\"bar\"]}", "list(\"foo\" = list(\"bar\"))"},
        {"{\"foo\": {\"bar\": \"baz\"}}", "{\"foo\": {\"bar\": \"baz\"}}", "list(\"foo\" = list(\"bar\" = \"baz\"))"},
        {"[\"foo\", \"\\\"bar\\\"\"]", "[\"foo\", \"\\\"bar\\\"\"]", "list(\"foo\", \"\\\"bar\\\"\")"},
        {"[{\"foo\": \"bar\"}]", "[{\"foo\": \"bar\"}]", "list(list(\"foo\" = \"bar\"))"},
        {"12345", "12345", "12345"},
        {"-54321", "-54321", "-54321"},
        {"1.2345", "1.2345", "1.2345"},
        {"-5432.1", "-5432.1", "-5432.1"},
        {"true", "True", "TRUE"},
        {"false", "False", "FALSE"},
        {"null", "None", "NULL"},
        {"NaN", "float('nan')", "nan"},
        {"-Infinity", "float('-inf')", "-inf"},
        {"\"\xc3\xa9\\t\\\\\xf0\x9f\x98\x80\x7f'\"", "\"\\xe9\\t\\\\\\U0001f600\\x7f'\"", "\"\\xe9\\t\\\\\\U0001f600\\x7f'\""},
        {"\"\xe6\xbc\xa2\\n\"", "\"\\u6f22\\n\"", "\"\\u6f22\\n\""},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(cases); i++) {
        translate_case("python3", "python", cases[i].in, cases[i].py, " = ");
        translate_case("ir", "R", cases[i].in, cases[i].r, " = ");
    }
    static const struct {
        const char *in, *sh;
    } sh[] = {
        {"\"foo\"", "foo"}, {"\"foo space\"", "'foo space'"}, {"\"foo's apostrophe\"", "'foo'\"'\"'s apostrophe'"},
        {"\"shell ( is ) <dumb>\"", "'shell ( is ) <dumb>'"}, {"\"$dumb(shell)\"", "'$dumb(shell)'"}, {"\"\"", "''"},
        {"12345", "12345"}, {"-5432.1", "-5432.1"}, {"true", "true"}, {"false", "false"}, {"null", ""},
        {"[\"a b\", 1]", "('a b' 1)"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(sh); i++)
        translate_case("bash", "bash", sh[i].in, sh[i].sh, "=");

    static const struct {
        const char *in, *js;
    } js[] = {
        {"\"foo\"", "\"foo\""}, {"\"a \\\"q\\\" \\\\ b\\n\\t\"", "\"a \\\"q\\\" \\\\ b\\n\\t\""},
        {"\"\xc3\xa9\xe6\xbc\xa2\xf0\x9f\x98\x80\"", "\"\xc3\xa9\xe6\xbc\xa2\xf0\x9f\x98\x80\""},
        {"\"\\u0001\\u0000x\"", "\"\\u0001\\u0000x\""},
        {"12345", "12345"}, {"-5432.1", "-5432.1"}, {"1e-05", "1e-05"}, {"true", "true"}, {"false", "false"},
        {"null", "null"}, {"NaN", "NaN"}, {"-Infinity", "-Infinity"},
        {"[\"a\", 1, [true, null]]", "[\"a\", 1, [true, null]]"},
        {"{\"k\": {\"x y\": [1.5]}, \"\": 0}", "{\"k\": {\"x y\": [1.5]}, \"\": 0}"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(js); i++) {
        for (int ts = 0; ts < 2; ts++) {
            cJSON *p = cJSON_CreateObject();
            cJSON_AddItemToObject(p, "foo", nb_json_parse(js[i].in, strlen(js[i].in), 0, NULL));
            char *err = NULL;
            char *code = nb_params_code(p, ts ? "cellbox-typescript" : "cellbox-javascript",
                                        ts ? "typescript" : "javascript", &err);
            cb_autofree char *expect = cb_printf_new("// Parameters\nfoo = %s;\nvoid 0;  // no value to show\n", js[i].js);
            is_str(code, expect, "%s: %s -> %s", ts ? "typescript" : "javascript", js[i].in, js[i].js);
            free(code);
            free(err);
            cJSON_Delete(p);
        }
    }

    cJSON *p = cJSON_CreateObject();
    cJSON_AddNumberToObject(p, "___foo", 5);
    char *err = NULL;
    char *code = nb_params_code(p, "ir", "R", &err);
    is_str(code, "# Parameters\nfoo = 5\n", "R drops leading underscores of names");
    free(code);
    code = nb_params_code(p, "python3", "python", &err);
    is_str(code, "# Parameters\n___foo = 5\n", "python keeps them");
    free(code);
    code = nb_params_code(p, "cellbox", "python", &err);
    ok(code != NULL, "the cellbox kernel (language python) gets the Python translator");
    free(code);
    code = nb_params_code(p, "julia-1.9", "julia", &err);
    ok(!code && err && strstr(err, "no parameter translator for kernel 'julia-1.9' or language 'julia'"),
       "an unknown language is refused clearly");
    free(err);
    err = NULL;
    cJSON_Delete(p);
    p = cJSON_CreateObject();
    cJSON_AddItemToObject(p, "d", cJSON_CreateObject());
    code = nb_params_code(p, "bash", "bash", &err);
    ok(!code && err && strstr(err, "mapping cannot be passed as a bash parameter"), "bash has no dicts");
    free(err);
    cJSON_Delete(p);
}

static nb_notebook *notebook(const char *cells)
{
    cb_autofree char *doc = cb_printf_new("{\"cells\": [%s], \"metadata\": {}, \"nbformat\": 4, \"nbformat_minor\": 4}",
                                          cells);
    char *err = NULL;
    nb_notebook *nb = nb_notebook_parse(doc, strlen(doc), "t", &err);
    free(err);
    return nb;
}

#define CODE(src, tags)                                                                                                \
    "{\"cell_type\": \"code\", \"execution_count\": null, \"metadata\": {\"tags\": " tags "}, \"outputs\": [],"        \
    " \"source\": \"" src "\"}"

static void test_inject(void)
{
    cJSON *p = cJSON_CreateObject();
    nb_params_set_typed(p, "a", "1");
    char *err = NULL;
    nb_notebook *nb = notebook(CODE("first", "[]") "," CODE("a = 0", "[\"parameters\"]") "," CODE("use(a)", "[]"));
    ok(nb_params_inject(nb, p, "python3", "python", &err) == 0, "inject");
    ok(nb_cell_count(nb) == 4 && strcmp(nb_cell_source(nb_cell_at(nb, 2)), "# Parameters\na = 1\n") == 0 &&
           nb_cell_has_tag(nb_cell_at(nb, 2), "injected-parameters"),
       "the injected cell goes right after the parameters cell");
    ok(nb->minor == 5 && nb_cell_id(nb_cell_at(nb, 0)) && nb_cell_id(nb_cell_at(nb, 2)),
       "the notebook is upgraded to nbformat 4.5 (cell ids)");
    char *got = cJSON_PrintUnformatted(cb_json_obj(cb_json_obj(nb->metadata, "papermill"), "parameters"));
    is_str(got, "{\"a\":1}", "metadata.papermill.parameters");
    free(got);
    nb_params_set_typed(p, "a", "2");
    ok(nb_params_inject(nb, p, "python3", "python", &err) == 0 && nb_cell_count(nb) == 4 &&
           strcmp(nb_cell_source(nb_cell_at(nb, 2)), "# Parameters\na = 2\n") == 0,
       "a second injection replaces the injected cell");
    nb_notebook_free(nb);
    nb = notebook(CODE("first", "[]"));
    ok(nb_params_inject(nb, p, "python3", "python", &err) == 0 && nb_cell_count(nb) == 2 &&
           nb_cell_has_tag(nb_cell_at(nb, 0), "injected-parameters"),
       "without a parameters cell the injected cell goes on top");
    nb_notebook_free(nb);
    nb = notebook("");
    ok(nb_params_inject(nb, p, "python3", "python", &err) == 0 && nb_cell_count(nb) == 1, "an empty notebook");
    nb_notebook_free(nb);
    cJSON_Delete(p);
    free(err);
}

static void test_yaml(void)
{
    if (!nb_yaml_supported()) {
        char *err = NULL;
        ok(!nb_yaml_parse("a: 1", 4, &err) && err && strstr(err, "libyaml"), "without libyaml YAML is refused clearly");
        free(err);
        return;
    }
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"a: 1", "{\"a\":1}"},
        {"a: 1.5\nb: 1e5\nc: 1.0e+5", "{\"a\":1.5,\"b\":\"1e5\",\"c\":100000.0}"},
        {"a: yes\nb: Off\nc: true\nd: ~\ne:\nf: null", "{\"a\":true,\"b\":false,\"c\":true,\"d\":null,\"e\":null,\"f\":null}"},
        {"a: 0x1f\nb: 010\nc: 0b11\nd: 1_000\ne: 1:30", "{\"a\":31,\"b\":8,\"c\":3,\"d\":1000,\"e\":90}"},
        {"a: .inf\nb: -.inf\nc: .nan", "{\"a\":Infinity,\"b\":-Infinity,\"c\":NaN}"},
        {"a: '1'\nb: \"true\"\nc: !!str 2\nd: 2026-01-02", "{\"a\":\"1\",\"b\":\"true\",\"c\":\"2\",\"d\":\"2026-01-02\"}"},
        {"l: [1, two, {x: 3}]\nm:\n  - a\n  - b", "{\"l\":[1,\"two\",{\"x\":3}],\"m\":[\"a\",\"b\"]}"},
        {"a: &x [1, 2]\nb: *x", "{\"a\":[1,2],\"b\":[1,2]}"},
        {"{\"json\": [1, 2.0, null]}", "{\"json\":[1,2.0,null]}"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(cases); i++) {
        char *err = NULL;
        cJSON *j = nb_yaml_parse(cases[i].in, strlen(cases[i].in), &err);
        char *got = NULL;
        if (j) {
            /* compact, but with Python's number spellings */
            cb_buf b = CB_BUF_INIT;
            nb_json_write(&b, j);
            size_t w = 0;
            bool in_str = false;
            for (size_t k = 0; k < b.len; k++) {
                char c = b.data[k];
                if (c == '"' && (k == 0 || b.data[k - 1] != '\\'))
                    in_str = !in_str;
                if (!in_str && (c == '\n' || c == ' '))
                    continue;
                b.data[w++] = c;
            }
            b.data[w] = '\0';
            got = cb_buf_steal(&b);
        }
        /* nb_json_write sorts keys; the cases are written in sorted order */
        is_str(got, cases[i].want, "yaml case %zu", i);
        free(got);
        free(err);
        cJSON_Delete(j);
    }
    char *err = NULL;
    ok(!nb_yaml_parse("a: [1, 2", 8, &err) && err && strstr(err, "YAML syntax error at line"), "YAML syntax errors: %s",
       err ? err : "");
    free(err);
}

/* One line per parameter: name|type|default|help */
static char *inspect(const char *src)
{
    cJSON *a = nb_params_inspect_python(src);
    cb_buf b = CB_BUF_INIT;
    for (const cJSON *p = a->child; p; p = p->next)
        cb_buf_printf(&b, "%s|%s|%s|%s\n", cb_json_str(p, "name", "?"), cb_json_str(p, "inferred_type_name", "?"),
                      cb_json_str(p, "default", "?"), cb_json_str(p, "help", "?"));
    cJSON_Delete(a);
    return cb_buf_steal(&b);
}

static void test_inspect(void)
{
    static const struct {
        const char *src, *want, *what;
    } cases[] = {
        /* papermill's complex_parameters.ipynb (without its syntax error) */
        {"msg = None\na: float = 2.25 # Variable a\nb = [\n    'Hello', # First element\n# Dummy comment\n"
         "    'World'\n] # type: List[str] Nice list\n\n# Interesting c variable\nc: \"NoneType\" = None\n"
         "# Not introspectable line\n",
         "msg|None|None|\na|float|2.25|Variable a\nb|List[str]|['Hello','World']|Nice list\nc|NoneType|None|\n",
         "papermill's complex_parameters cell"},
        {"x = 1", "x|None|1|\n", "no newline at the end"},
        {"color = '#fff'  # a colour\ns = \"a # b\"", "color|None|'#fff'|a colour\ns|None|\"a # b\"|\n",
         "a '#' inside a string is not a comment"},
        {"t = '''one\n# not a comment\ntwo'''  # help", "t|None|'''one# not a commenttwo'''|help\n",
         "triple-quoted strings over lines"},
        {"e = 'it\\'s'  # h\nr = r'\\d+'", "e|None|'it\\'s'|h\nr|None|r'\\d+'|\n", "escapes and raw strings"},
        {"d: dict[str, int] = {'a': 1,\n                      'b': 2}  # map",
         "d|dict[str, int]|{'a': 1,'b': 2}|map\n", "a generic annotation, a value over two lines"},
        {"x = 1; y = 2  # y's help", "x|None|1|\ny|None|2|y's help\n", "two statements on one line"},
        {"a = b = 1\nx, y = 1, 2\no.attr = 3\nl[0] = 4\nn += 1\nm: int\nprint(k=1)\nq == 2\nw := 3",
         "", "not parameters: chained, tuple, attribute, subscript, augmented, bare annotation, call, comparison"},
        {"f = lambda x=1: x\ng = dict(a=1)", "f|None|lambda x=1: x|\ng|None|dict(a=1)|\n", "'=' of a lambda or a call"},
        {"if True:\n    z = 2  # in a block\nelse:\n    z = 3\nfor i in range(2):\n    pass",
         "z|None|2|in a block\nz|None|3|\n", "assignments in blocks count (papermill walks if/for/with/try)"},
        {"def f(x=1):\n    inner = 3\n    return inner\nclass C:\n    attr = 4\n@dec\ndef g():\n    v = 1\nafter = 5",
         "after|None|5|\n", "def and class bodies do not"},
        {"%matplotlib inline\n!ls\nx?\nk = 1", "k|None|1|\n", "IPython lines are skipped"},
        {"x = 1 + \\\n    2", "x|None|1 + \\2|\n", "a backslash continuation (joined as papermill joins lines)"},
        {"n: 'int' = 3  # type: ignored", "n|int|3|\n", "a string annotation wins over a type comment"},
        {"v = 1  # type: float the help", "v|float|1|the help\n", "a type comment"},
        {"x = 1\r\ny = 2  # h\r\n", "x|None|1|\ny|None|2|h\n", "CRLF line ends"},
        {"= 2\n1 = x\n\n", "", "broken lines are skipped"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(cases); i++) {
        char *got = inspect(cases[i].src);
        is_str(got, cases[i].want, "inspect: %s", cases[i].what);
        free(got);
    }
}

static void test_help(void)
{
    nb_notebook *nb = notebook(CODE("x = 1\\nlong_name_here: List[str] = ['a', 'b']  # long one\\n"
                                    "n: NoneType = None\\nflag = True  # on or off",
                                    "[\"parameters\"]"));
    cb_buf b = CB_BUF_INIT;
    int st = nb_params_help(nb, "nb.ipynb", NULL, NULL, &b);
    is_str(b.data,
           "\nParameters inferred for notebook 'nb.ipynb':\n"
           "  x: Unknown type (default 1)     \n"
           "  long_name_here: List[str] (default ['a', 'b'])\n"
           "                                  long one\n"
           "  n: NoneType (default None)      \n"
           "  flag: Unknown type (default True)\n"
           "                                  on or off\n",
           "--help-notebook: papermill's layout (help at column 34, or under a long definition)");
    ok(st == 0, "exit status 0");
    nb_notebook_free(nb);
    cb_buf_reset(&b);
    nb = notebook(CODE("x = 1", "[]"));
    st = nb_params_help(nb, "p.ipynb", NULL, NULL, &b);
    is_str(b.data, "\nParameters inferred for notebook 'p.ipynb':\n\n  No cell tagged 'parameters'\n",
           "no parameters cell: papermill's message");
    ok(st == 1, "no parameters cell: exit status 1 (papermill's)");
    nb_notebook_free(nb);
    cb_buf_reset(&b);
    nb = notebook(CODE("x <- 1", "[\"parameters\"]"));
    st = nb_params_help(nb, "r.ipynb", "ir", "R", &b);
    ok(st == 0 && strstr(b.data, "Can't infer anything about this notebook's parameters"),
       "an R notebook: nothing inferred (papermill inspects Python only)");
    nb_notebook_free(nb);
    cb_buf_clear(&b);
}

/* compact, with the notebook writer's number spellings (2.0 stays 2.0) */
static char *compact(const cJSON *j)
{
    cb_buf b = CB_BUF_INIT;
    nb_json_write(&b, j);
    size_t w = 0;
    bool in_str = false;
    for (size_t k = 0; k < b.len; k++) {
        char c = b.data[k];
        if (c == '"' && (k == 0 || b.data[k - 1] != '\\'))
            in_str = !in_str;
        if (!in_str && (c == '\n' || c == ' '))
            continue;
        b.data[w++] = c;
    }
    b.data[w] = '\0';
    return cb_buf_steal(&b);
}

static void test_base64(void)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"YTogMQpiOiB0d28K", "{\"a\":1,\"b\":\"two\"}"},     /* "a: 1\nb: two\n" */
        {"eyJ4IjogWzEsIDIuMF19", "{\"x\":[1,2.0]}"},        /* {"x": [1, 2.0]}: no padding needed */
        {"eyJ4IjogWzEsIDIuMF19\n", "{\"x\":[1,2.0]}"},      /* the newline base64(1) ends with */
        {"eyJ1IjogIsOpPj4_In0=", "{\"u\":\"\xc3\xa9>>?\"}"}, /* the URL-safe alphabet */
        {"", "{}"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(cases); i++) {
        cJSON *p = cJSON_CreateObject();
        char *err = NULL;
        int r = nb_params_load_base64(p, cases[i].in, &err);
        char *got = r == 0 ? compact(p) : cb_strdup(err);
        is_str(got, cases[i].want, "-b '%.*s'", (int)strcspn(cases[i].in, "\n"), cases[i].in);
        free(got);
        free(err);
        cJSON_Delete(p);
    }
    static const struct {
        const char *in, *why;
    } bad[] = {
        {"not base64!", "not valid base64"},
        {"WzEsIDJd", "expected a mapping"}, /* [1, 2] */
        {"YTogWzEsIDI=", "YAML syntax error"}, /* "a: [1, 2" */
        {"AAEC", "NUL bytes"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(bad); i++) {
        if (!nb_yaml_supported() && strstr(bad[i].why, "YAML"))
            continue;
        cJSON *p = cJSON_CreateObject();
        char *err = NULL;
        int r = nb_params_load_base64(p, bad[i].in, &err);
        ok(r < 0 && err && strstr(err, bad[i].why) && !p->child, "-b '%s' is refused: %s", bad[i].in,
           err ? err : "(no error)");
        free(err);
        cJSON_Delete(p);
    }
}

static void test_report_mode(void)
{
    nb_notebook *nb = notebook(CODE("a", "[]") ",{\"cell_type\": \"markdown\", \"metadata\": {}, \"source\": \"m\"},"
                                               "{\"cell_type\": \"code\", \"execution_count\": null, \"metadata\": "
                                               "{\"jupyter\": {\"outputs_hidden\": true}}, \"outputs\": [], "
                                               "\"source\": \"b\"}");
    nb_pm_report_mode(nb);
    char *a = cJSON_PrintUnformatted(cb_json_obj(nb_cell_metadata(nb_cell_at(nb, 0)), "jupyter"));
    char *m = cJSON_PrintUnformatted(cb_json_obj(nb_cell_metadata(nb_cell_at(nb, 1)), "jupyter"));
    char *b = cJSON_PrintUnformatted(cb_json_obj(nb_cell_metadata(nb_cell_at(nb, 2)), "jupyter"));
    is_str(a, "{\"source_hidden\":true}", "--report-mode hides a code cell's input");
    ok(m == NULL, "markdown cells are left alone");
    is_str(b, "{\"outputs_hidden\":true,\"source_hidden\":true}", "other metadata.jupyter keys are kept");
    free(a);
    free(m);
    free(b);
    nb_notebook_free(nb);
}

static void test_time(void)
{
    char buf[40];
    nb_pm_isotime(buf, sizeof buf, 1795700000123456LL);
    is_str(buf, "2026-11-26T13:33:20.123456", "papermill time: naive UTC isoformat");
    nb_pm_isotime(buf, sizeof buf, 1795700000000000LL);
    is_str(buf, "2026-11-26T13:33:20", "isoformat() drops a zero fraction");
}

/* papermill's parameterize_path(): expected strings are Python's
 * str.format(**params) on the same values (checked with CPython 3.11). */
static void test_paths(void)
{
    char *err = NULL;
    static const char js[] = "{\"region\":\"eu\",\"n\":7,\"x\":0.1,\"big\":12345678901234567890,\"flag\":true,"
                             "\"none\":null,\"neg\":-3,\"f\":1e-05,\"lst\":[\"a\",1],\"d\":{\"k\":\"v\",\"n\":2},"
                             "\"s\":\"it's\",\"pi\":3.14159,\"u\":\"h\xc3\xa9llo\"}";
    cJSON *p = nb_json_parse(js, strlen(js), 0, &err);
    ok(p != NULL, "parameters parse");
    nb_path_builtins bi = {.run_uuid = "0b5a9d6e-1f2a-4c3b-9d8e-7f6a5b4c3d2e", .now_s = 1795000000, .now_us = 123456};
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"{region}", "eu"}, {"out/{region}_{n:03d}.ipynb", "out/eu_007.ipynb"}, {"{x}", "0.1"},
        {"{big}", "12345678901234567890"}, {"{flag}", "True"}, {"{none}", "None"}, {"{neg:+d}", "-3"},
        {"{f}", "1e-05"}, {"{lst}", "['a', 1]"}, {"{d}", "{'k': 'v', 'n': 2}"}, {"{d[k]}", "v"},
        {"{lst[0]}", "a"}, {"{lst[1]:>4}", "   1"}, {"{s!r}", "\"it's\""}, {"{region!r}", "'eu'"},
        {"{pi:.2f}", "3.14"}, {"{pi:e}", "3.141590e+00"}, {"{pi:10.3f}|", "     3.142|"},
        {"{pi:<10.3}|", "3.14      |"}, {"{n:x}", "7"}, {"{n:#b}", "0b111"}, {"{n:08.3f}", "0007.000"},
        {"{neg:05d}", "-0003"}, {"{x:%}", "10.000000%"}, {"{x:.1%}", "10.0%"}, {"{region:^7}", "  eu   "},
        {"{region:*>6}", "****eu"}, {"{region:.1}", "e"}, {"{u:.2}", "h\xc3\xa9"}, {"{{literal}}", "{literal}"},
        {"a}}b", "a}b"}, {"{n}{n}", "77"}, {"{flag:d}", "1"}, {"{flag:>5}", "    1"}, {"{n: d}", " 7"},
        {"{pi:g}", "3.14159"}, {"{big:e}", "1.234568e+19"}, {"{neg:=+6}", "-    3"}, {"plain.ipynb", "plain.ipynb"},
        {"{pm[run_uuid]}", "0b5a9d6e-1f2a-4c3b-9d8e-7f6a5b4c3d2e"},
        {"{pm[current_datetime_utc]}", "2026-11-18 11:06:40.123456"},
        {"{pm[current_datetime_utc]:%Y%m%d-%H%M%S.%f}", "20261118-110640.123456"},
        {"{pm[current_datetime_utc].year}-{pm[current_datetime_utc].month:02d}", "2026-11"},
        {"{pm[current_datetime_utc]!r}", "datetime.datetime(2026, 11, 18, 11, 6, 40, 123456)"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(cases); i++) {
        char *got = nb_params_path(cases[i].in, p, &bi, &err);
        is_str(got ? got : err, cases[i].want, "path %s", cases[i].in);
        free(got);
        if (!got) {
            free(err);
            err = NULL;
        }
    }
    /* errors: papermill's message for a missing name; Python's for the rest */
    static const struct {
        const char *in, *has;
    } bad[] = {
        {"{nope}", "Missing parameter 'nope'"}, {"{region:d}", "Unknown format code 'd' for object of type 'str'"},
        {"{n:s}", "Unknown format code 's' for object of type 'int'"}, {"{none:>5}", "NoneType.__format__"},
        {"a}b", "Single '}'"}, {"a{b", "expected '}'"}, {"{0}", "positional"}, {"{}", "parameter's name"},
        {"{n:.2d}", "Precision not allowed"}, {"{d[zz]}", "Missing parameter 'zz'"}, {"{lst[x]}", "integers"},
        {"{region.upper}", "has no attribute 'upper'"}, {"{x:,}", "grouping"}, {"{n:{n}}", "nested"},
        {"{pm[nope]}", "run_uuid"}, {"{pm}", "pm's members"}, {"{n!z}", "conversion"},
    };
    for (size_t i = 0; i < CB_ARRAY_LEN(bad); i++) {
        char *got = nb_params_path(bad[i].in, p, &bi, &err);
        ok(!got && err && strstr(err, bad[i].has), "path %s fails: %s", bad[i].in, got ? got : err);
        free(got);
        free(err);
        err = NULL;
    }
    /* a parameter named pm hides the built-in, as dict.update() does */
    cJSON_AddStringToObject(p, "pm", "mine");
    char *got = nb_params_path("{pm}", p, &bi, &err);
    is_str(got, "mine", "a parameter named pm wins");
    free(got);
    /* a fresh run_uuid per call of the initializer */
    nb_path_builtins b1, b2;
    nb_path_builtins_init(&b1);
    nb_path_builtins_init(&b2);
    ok(strlen(b1.run_uuid) == 36 && strcmp(b1.run_uuid, b2.run_uuid) != 0, "run_uuid is a fresh uuid4");
    cJSON_Delete(p);
}

int main(void)
{
    test_typing();
    test_translators();
    test_inject();
    test_yaml();
    test_time();
    test_inspect();
    test_help();
    test_base64();
    test_report_mode();
    test_paths();
    return tap_done();
}
