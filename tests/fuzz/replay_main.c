/* SPDX-License-Identifier: Apache-2.0 */
/* replay_main.c -- runs a libFuzzer target without libFuzzer: calls
 * LLVMFuzzerTestOneInput once per file named on the command line, or per
 * file in each directory named (not recursive). Without arguments it replays
 * FUZZ_CORPUS, the target's seed corpus, which tests/fuzz/include.am defines:
 * that is how `make check` replays every corpus with any compiler (a
 * failing input aborts). */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read the whole file; NULL (with a message) on failure. */
static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t capacity = 4096, len = 0;
    uint8_t *data = malloc(capacity);
    size_t n;
    while (data != NULL && (n = fread(data + len, 1, capacity - len, file)) > 0) {
        len += n;
        if (len == capacity) {
            capacity *= 2;
            uint8_t *bigger = realloc(data, capacity);
            if (bigger == NULL)
                free(data);
            data = bigger;
        }
    }
    bool failed = data == NULL || ferror(file);
    fclose(file);
    if (failed) {
        fprintf(stderr, "replay: %s: read failed\n", path);
        free(data);
        return NULL;
    }
    /* exact-size copy so that reads past the input are caught by ASan/valgrind */
    uint8_t *exact = malloc(len ? len : 1);
    if (exact != NULL)
        memcpy(exact, data, len);
    free(data);
    *size = len;
    return exact;
}

static int run_file(const char *path)
{
    size_t size = 0;
    uint8_t *data = read_file(path, &size);
    if (data == NULL)
        return -1;
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

int main(int argc, char **argv)
{
#ifdef FUZZ_CORPUS
    static char *default_argv[] = {NULL, FUZZ_CORPUS, NULL};
    if (argc < 2) {
        default_argv[0] = argv[0];
        argv = default_argv;
        argc = 2;
    }
#endif
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    size_t ran = 0;
    int failures = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            failures++;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            failures += run_file(argv[i]) != 0;
            ran++;
            continue;
        }
        DIR *dir = opendir(argv[i]);
        if (dir == NULL) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            failures++;
            continue;
        }
        struct dirent *entry;
        while ((entry = readdir(dir)) != NULL) {
            if (entry->d_name[0] == '.')
                continue;
            size_t path_len = strlen(argv[i]) + strlen(entry->d_name) + 2;
            char *path = malloc(path_len);
            snprintf(path, path_len, "%s/%s", argv[i], entry->d_name);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
                failures += run_file(path) != 0;
                ran++;
            }
            free(path);
        }
        closedir(dir);
    }
    printf("replay: %zu inputs, %d unreadable\n", ran, failures);
    if (ran == 0) {
        fprintf(stderr, "replay: no inputs found\n");
        return 1;
    }
    return failures == 0 ? 0 : 1;
}
