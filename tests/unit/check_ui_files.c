/* SPDX-License-Identifier: Apache-2.0 */
/* check_ui_files.c -- the dashboard's file names, content types and the
 * open contained in http.ui_dir (daemon/ui_files.c). */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ui_files.h"
#include "unit_main.h"

START_TEST(relative_paths_accepted)
{
    char out[64], err[128];
    const struct {
        const char *in, *out;
    } good[] = {
        {"", "index.html"},
        {"index.html", "index.html"},
        {"dashboard.js", "dashboard.js"},
        {"img/", "img/index.html"},
        {"img/logo-1_b.png", "img/logo-1_b.png"},
        {"dash%62oard.css", "dashboard.css"}, /* %62 is 'b' */
        {"a.b.c", "a.b.c"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ck_assert_msg(ui_relative_path(good[i].in, out, sizeof(out), err, sizeof(err)) == 0,
                      "%s: %s", good[i].in, err);
        ck_assert_str_eq(out, good[i].out);
    }
}
END_TEST

START_TEST(relative_paths_refused)
{
    char out[32], err[128];
    const char *bad[] = {
        "..",
        "../etc/passwd",
        "a/../../b",
        "%2e%2e/x",
        "%2E%2E%2Fetc",
        ".hidden",
        "a/.git/HEAD",
        "./index.html",
        "a//b",
        "/etc/passwd",
        "a%2fb",
        "a%00b",
        "a b",
        "a\\b",
        "%zz",
        "%4",
        "caf\xc3\xa9",
        "a?b",
        "0123456789012345678901234567890123456789", /* longer than out */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        ck_assert_msg(ui_relative_path(bad[i], out, sizeof(out), err, sizeof(err)) < 0,
                      "%s accepted", bad[i]);
        ck_assert_msg(err[0] != '\0', "%s: no reason", bad[i]);
    }
    /* the folder's index.html must fit too */
    ck_assert_int_lt(ui_relative_path("", out, 8, err, sizeof(err)), 0);
}
END_TEST

START_TEST(content_types_by_extension)
{
    ck_assert_str_eq(ui_content_type("index.html"), "text/html; charset=utf-8");
    ck_assert_str_eq(ui_content_type("dashboard.css"), "text/css; charset=utf-8");
    ck_assert_str_eq(ui_content_type("dashboard.js"), "text/javascript; charset=utf-8");
    ck_assert_str_eq(ui_content_type("img/a.svg"), "image/svg+xml");
    ck_assert_str_eq(ui_content_type("shot.png"), "image/png");
    ck_assert_str_eq(ui_content_type("x.json"), "application/json");
    ck_assert_str_eq(ui_content_type("README"), "application/octet-stream");
    ck_assert_str_eq(ui_content_type("a.html/b"), "application/octet-stream");
    ck_assert_str_eq(ui_content_type("x.HTML.bak"), "application/octet-stream");
}
END_TEST

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(open_stays_inside_the_directory)
{
    char base[] = "/tmp/check_ui_files.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(base));
    char dir[PATH_MAX], path[PATH_MAX * 2], err[PATH_MAX * 3];
    snprintf(dir, sizeof(dir), "%s/ui", base);
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    snprintf(path, sizeof(path), "%s/index.html", dir);
    write_file(path, "<html>hello</html>");
    snprintf(path, sizeof(path), "%s/secret.txt", base);
    write_file(path, "secret");
    /* a link out of the directory, a link inside it, a sub-directory */
    char link[PATH_MAX * 2];
    snprintf(link, sizeof(link), "%s/out.txt", dir);
    ck_assert_int_eq(symlink(path, link), 0);
    snprintf(link, sizeof(link), "%s/home.html", dir);
    ck_assert_int_eq(symlink("index.html", link), 0);
    snprintf(path, sizeof(path), "%s/sub", dir);
    ck_assert_int_eq(mkdir(path, 0700), 0);

    int fd = -1;
    uint64_t size = 0;
    ck_assert_int_eq(ui_open(dir, "index.html", &fd, &size, err, sizeof(err)), UI_OPEN_OK);
    ck_assert_int_ge(fd, 0);
    ck_assert_uint_eq(size, strlen("<html>hello</html>"));
    close(fd);
    ck_assert_int_eq(ui_open(dir, "home.html", &fd, &size, err, sizeof(err)), UI_OPEN_OK);
    close(fd);
    ck_assert_int_eq(ui_open(dir, "out.txt", &fd, &size, err, sizeof(err)), UI_OPEN_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err, "out of the dashboard directory"));
    ck_assert_int_eq(ui_open(dir, "sub", &fd, &size, err, sizeof(err)), UI_OPEN_NOT_FOUND);
    ck_assert_ptr_nonnull(strstr(err, "not a regular file"));
    ck_assert_int_eq(ui_open(dir, "missing.js", &fd, &size, err, sizeof(err)), UI_OPEN_NOT_FOUND);
    /* the directory itself missing, or a file */
    snprintf(path, sizeof(path), "%s/nowhere", base);
    ck_assert_int_eq(ui_open(path, "index.html", &fd, &size, err, sizeof(err)), UI_OPEN_NO_DIR);
    ck_assert_ptr_nonnull(strstr(err, path));
    snprintf(path, sizeof(path), "%s/secret.txt", base);
    ck_assert_int_eq(ui_open(path, "index.html", &fd, &size, err, sizeof(err)), UI_OPEN_NO_DIR);

    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

static Suite *ui_files_suite(void)
{
    Suite *suite = suite_create("ui_files");
    TCase *tcase = tcase_create("ui_files");
    tcase_add_test(tcase, relative_paths_accepted);
    tcase_add_test(tcase, relative_paths_refused);
    tcase_add_test(tcase, content_types_by_extension);
    tcase_add_test(tcase, open_stays_inside_the_directory);
    suite_add_tcase(suite, tcase);
    return suite;
}

CHECK_MAIN(ui_files_suite)
