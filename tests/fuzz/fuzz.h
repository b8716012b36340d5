/* tests/fuzz/fuzz.h: the libFuzzer entry point every fuzz target defines.
 * Built two ways: with tests/fuzz/driver.c (any compiler) to replay seed
 * corpora in `make check`, and with clang -fsanitize=fuzzer by
 * tests/fuzz/run.sh for real fuzzing. A target must never crash, leak or
 * hang on any input; it aborts only when an invariant it checks breaks. */
#ifndef CB_FUZZ_H
#define CB_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
