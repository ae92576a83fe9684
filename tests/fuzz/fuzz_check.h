/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_check.h -- what every fuzz target shares: the libFuzzer entry point's
 * prototype and FUZZ_CHECK, an assertion on the code under test that prints
 * where and why and aborts (libFuzzer then keeps the input as a crash). */
#ifndef KBRIDGE_FUZZ_CHECK_H
#define KBRIDGE_FUZZ_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Abort with "FILE:LINE: check failed: COND: <printf message>" unless cond holds. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
