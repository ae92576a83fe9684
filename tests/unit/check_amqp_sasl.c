/* check_amqp_sasl.c -- placeholder, being written. */
#include <check.h>
#include <stdlib.h>

START_TEST(test_placeholder)
{
    ck_assert_int_eq(1, 1);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("amqp_sasl");
    TCase *tcase = tcase_create("placeholder");
    tcase_add_test(tcase, test_placeholder);
    suite_add_tcase(suite, tcase);
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
