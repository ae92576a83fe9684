/* SPDX-License-Identifier: Apache-2.0 */
/* unit_main.h -- the main() every Check unit test shares: run one suite
 * (forking per test, Check's default), exit 0 only when every test passed.
 * Use: CHECK_MAIN(name_suite) after `static Suite *name_suite(void)`. */
#ifndef KBRIDGE_UNIT_MAIN_H
#define KBRIDGE_UNIT_MAIN_H

#include <check.h>
#include <stdlib.h>

#define CHECK_MAIN(suite_fn)                                                                       \
    int main(void)                                                                                 \
    {                                                                                              \
        SRunner *runner = srunner_create(suite_fn());                                              \
        srunner_run_all(runner, CK_NORMAL);                                                        \
        int failed = srunner_ntests_failed(runner);                                                \
        srunner_free(runner);                                                                      \
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;                                          \
    }

#endif
