/* SPDX-License-Identifier: Apache-2.0 */
/* ui_files.c -- the dashboard's file names, content types and the
 * contained open (ui_files.h). */
#include "ui_files.h"

#include <errno.h>
#include <event2/http.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool ui_name_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
}

static int ui_fail(char *err, size_t err_size, const char *reason)
{
    snprintf(err, err_size, "%s", reason);
    return -1;
}

/* Decode one segment (no '/' in it) with libevent and append it to out at
 * *len. An escape that is not two hex digits stays '%' and is refused as a
 * byte names do not have. */
static int ui_append_segment(const char *raw, size_t raw_len, char *out, size_t out_size,
                             size_t *len, char *err, size_t err_size)
{
    char *copy = strndup(raw, raw_len);
    size_t decoded_len = 0;
    char *decoded = copy ? evhttp_uridecode(copy, 0, &decoded_len) : NULL;
    free(copy);
    if (!decoded)
        return ui_fail(err, err_size, "out of memory decoding the path");
    int rc = 0;
    if (decoded_len != strlen(decoded) || strchr(decoded, '/'))
        rc = ui_fail(err, err_size, "an encoded '/' or NUL in the path");
    else if (decoded_len == 0)
        rc = ui_fail(err, err_size, "an empty path segment");
    else if (decoded[0] == '.')
        rc = ui_fail(err, err_size, "a path segment starting with '.'");
    for (size_t i = 0; rc == 0 && i < decoded_len; i++)
        if (!ui_name_byte((unsigned char)decoded[i]))
            rc = ui_fail(err, err_size, "a character the dashboard's file names do not have");
    if (rc == 0 && *len + decoded_len + 1 >= out_size)
        rc = ui_fail(err, err_size, "the path is too long");
    if (rc == 0) {
        memcpy(out + *len, decoded, decoded_len);
        *len += decoded_len;
    }
    free(decoded);
    return rc;
}

int ui_relative_path(const char *encoded, char *out, size_t out_size, char *err, size_t err_size)
{
    static const char index[] = "index.html";
    size_t len = 0;
    const char *p = encoded;
    while (*p != '\0') {
        size_t raw_len = strcspn(p, "/");
        if (ui_append_segment(p, raw_len, out, out_size, &len, err, err_size) < 0)
            return -1;
        p += raw_len;
        if (*p == '/') { /* a separator: the next segment, or the end of a folder's path */
            out[len++] = '/';
            p++;
        }
    }
    if (len == 0 || out[len - 1] == '/') { /* a folder: its index.html */
        if (len + sizeof(index) > out_size)
            return ui_fail(err, err_size, "the path is too long");
        memcpy(out + len, index, sizeof(index));
        return 0;
    }
    out[len] = '\0';
    return 0;
}

const char *ui_content_type(const char *name)
{
    static const struct {
        const char *extension, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".json", "application/json"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(name, '.');
    const char *slash = strrchr(name, '/');
    if (dot && (!slash || dot > slash))
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
            if (strcmp(dot, types[i].extension) == 0)
                return types[i].type;
    return "application/octet-stream";
}

enum ui_open_result ui_open(const char *dir, const char *relative, int *fd, uint64_t *size,
                            char *err, size_t err_size)
{
    char root[PATH_MAX], wanted[PATH_MAX * 2], resolved[PATH_MAX];
    struct stat st;
    if (!realpath(dir, root)) {
        snprintf(err, err_size, "the dashboard directory %s: %s", dir, strerror(errno));
        return UI_OPEN_NO_DIR;
    }
    if (stat(root, &st) < 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, err_size, "the dashboard directory %s is not a directory", dir);
        return UI_OPEN_NO_DIR;
    }
    snprintf(wanted, sizeof(wanted), "%s/%s", root, relative);
    if (!realpath(wanted, resolved)) {
        snprintf(err, err_size, "%s: %s", relative, strerror(errno));
        return UI_OPEN_NOT_FOUND;
    }
    size_t root_len = strlen(root);
    bool inside = strncmp(resolved, root, root_len) == 0 &&
                  (resolved[root_len] == '/' || (root_len == 1 && root[0] == '/'));
    if (!inside) {
        snprintf(err, err_size, "%s leads out of the dashboard directory", relative);
        return UI_OPEN_NOT_FOUND;
    }
    /* the resolved name, never following a link swapped in since */
    int opened = open(resolved, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (opened < 0) {
        snprintf(err, err_size, "%s: %s", relative, strerror(errno));
        return UI_OPEN_NOT_FOUND;
    }
    if (fstat(opened, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(opened);
        snprintf(err, err_size, "%s is not a regular file", relative);
        return UI_OPEN_NOT_FOUND;
    }
    *fd = opened;
    *size = (uint64_t)st.st_size;
    return UI_OPEN_OK;
}
