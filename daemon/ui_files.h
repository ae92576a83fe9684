/* SPDX-License-Identifier: Apache-2.0 */
/* ui_files.h -- which file of the dashboard directory (`http.ui_dir`) a
 * request under /ui/ names, and how it is served (architecture §9,
 * docs/operations.md "Dashboard"). Pure path checks plus one open(2): no
 * event loop, no HTTP, so the rules are unit-tested on their own
 * (tests/unit/check_ui_files.c); http_ui.c serves what they open. */
#ifndef KBRIDGE_UI_FILES_H
#define KBRIDGE_UI_FILES_H

#include <stddef.h>
#include <stdint.h>

/* The dashboard's URL prefix on the ops listener. */
#define UI_URL_PREFIX "/ui/"

/* Turn the still percent-encoded part of a URL path after "/ui/" into a
 * relative file name written into out ("" and anything ending in "/" name
 * that folder's index.html). 0, or -1 with one sentence in err when it is
 * not a name the dashboard serves: a segment that is empty, "." or "..",
 * starts with "." (hidden files), or holds a byte other than letters,
 * digits, '-', '_' and '.' after decoding; or it does not fit. */
int ui_relative_path(const char *encoded, char *out, size_t out_size, char *err, size_t err_size);

/* The Content-Type for a file name by its extension (".html", ".css",
 * ".js", ".svg", ".png", ".json", ".ico", ".txt"); others
 * "application/octet-stream". A static string. */
const char *ui_content_type(const char *name);

/* Outcome of ui_open. */
enum ui_open_result {
    UI_OPEN_OK,
    UI_OPEN_NO_DIR,    /* `dir` itself does not resolve to a directory */
    UI_OPEN_NOT_FOUND, /* no such regular file below dir (or it leaves dir) */
};

/* Open `relative` (from ui_relative_path) below `dir` for reading: both are
 * resolved with realpath(3), and the file must lie below the resolved dir
 * (a symbolic link pointing out of it is refused) and be a regular file.
 * UI_OPEN_OK with *fd (the caller closes it) and *size; otherwise a reason
 * in err naming dir or the file. */
enum ui_open_result ui_open(const char *dir, const char *relative, int *fd, uint64_t *size,
                            char *err, size_t err_size);

#endif
