"""Debian's jupyter_kernel_test suite against the cellbox kernel, with every
optional test switched on (kernel_info, stdout, stderr, completion,
is_complete, pager, error, execute_result, display_data, history
tail/range/search, inspect, clear_output). Output: TAP."""
import unittest

import kutil  # noqa: F401  (isolated Jupyter environment + kernelspec)
import jupyter_kernel_test as jkt

tap = kutil.TAP()


class CellboxKernelTests(jkt.KernelTests):
    kernel_name = "cellbox"
    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"
    completion_samples = [
        {"text": "zi", "matches": {"zip"}},
        {"text": "import operato", "matches": {"operator"}},
        {"text": "import collections.abc as abc; abc.Sequenc", "matches": {"Sequence"}},
    ]
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n", "%time 1"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2", "for i in range(3):"]
    invalid_code_samples = ["import = 7q", "1+*2"]
    code_page_something = "print?"
    code_generate_error = "raise"
    code_execute_result = [
        {"code": "1+2+3", "result": "6"},
        {"code": "[n*n for n in range(1, 4)]", "result": "[1, 4, 9]"},
        {"code": "'a' * 3", "result": "'aaa'"},
    ]
    code_display_data = [
        {"code": "from IPython.display import HTML, display; display(HTML('<b>test</b>'))", "mime": "text/html"},
        {"code": "from IPython.display import Math, display; display(Math('\\\\frac{1}{2}'))", "mime": "text/latex"},
        {"code": "display({'a': 1}, raw=False)", "mime": "text/plain"},
    ]
    code_history_pattern = "1?2*"
    supported_history_operations = ("tail", "range", "search")
    code_inspect_sample = "zip"
    code_clear_output = "from IPython.display import clear_output; clear_output()"


class TapResult(unittest.TestResult):
    def addSuccess(self, test):
        tap.ok(True, test.id().rsplit(".", 1)[-1])

    def addFailure(self, test, err):
        tap.ok(False, test.id().rsplit(".", 1)[-1], self._exc_info_to_string(err, test))

    def addError(self, test, err):
        tap.ok(False, test.id().rsplit(".", 1)[-1] + " (error)", self._exc_info_to_string(err, test))

    def addSubTest(self, test, subtest, err):
        if err is not None:
            tap.ok(False, "%s %s" % (test.id().rsplit(".", 1)[-1], subtest._subDescription()),
                   self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        tap.skip(test.id().rsplit(".", 1)[-1], reason)


if __name__ == "__main__":
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(CellboxKernelTests)
    result = TapResult()
    suite.run(result)
    # every optional test must have run (none skipped)
    tap.ok(not result.skipped, "no conformance test was skipped", result.skipped)
