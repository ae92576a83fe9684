/* SPDX-License-Identifier: Apache-2.0 */
/* fuzz_definitions.c -- libFuzzer target for the definitions JSON loader
 * (daemon/definitions_record.c, definitions_import_json: a RabbitMQ
 * definitions export an operator imports) and the routing model it feeds
 * (daemon/definitions.c).
 *
 * The input is the export's text. Each entity the import hands over is
 * checked against the model as kbridge's import does (definitions_check_*)
 * and applied when allowed; every applied one is also written as a
 * definitions-topic record (definitions_record_*) and that record applied to
 * a second model, which must accept it (what one node writes, every node
 * reads) and must then be found there. The import's refusal must be one
 * line (names from the input are shown with control characters escaped);
 * the model's own refusals are RabbitMQ's texts, which quote names as they
 * are, so they need only be non-empty.
 * Also built by `make check` with replay_main.c, which runs this over
 * tests/fuzz/corpus/definitions without clang. */
#include "definitions.h"
#include "definitions_record.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

struct models {
    struct definitions *first;  /* fed by the import */
    struct definitions *second; /* fed by the records the first's entities make */
};

static void check_reason(const char *err)
{
    FUZZ_CHECK(err[0] != '\0', "a refusal without a message");
}

static void check_message(const char *err)
{
    size_t len = strlen(err);
    FUZZ_CHECK(len > 0, "a refusal without a message");
    for (size_t i = 0; i < len; i++)
        FUZZ_CHECK(err[i] != '\n' && err[i] != '\r', "a message of several lines: %s", err);
}

/* Apply a record (key, value) to the second model: it must be readable. */
static void replay_record(struct models *models, int made, char *key, char *value)
{
    if (made < 0 || !key || !value) { /* out of memory */
        free(key);
        free(value);
        return;
    }
    char err[512] = "";
    int applied = definitions_record_apply(models->second, key, strlen(key), value, strlen(value),
                                           err, sizeof(err));
    FUZZ_CHECK(applied != -1, "record %s = %s is refused: %s", key, value, err);
    free(key);
    free(value);
}

static int on_vhost(const char *vhost, void *opaque)
{
    struct models *models = opaque;
    if (definitions_vhost_add(models->first, vhost) < 0 ||
        definitions_vhost_add(models->second, vhost) < 0)
        return -1;
    return 0;
}

static int on_exchange(const struct exchange_spec *spec, void *opaque)
{
    struct models *models = opaque;
    char err[512] = "";
    bool exists = false;
    if (definitions_check_exchange(models->first, spec, false, &exists, err, sizeof(err)) !=
        DEFINITIONS_OK) {
        check_reason(err);
        return 0; /* kbridge's import reports and skips it */
    }
    if (definitions_apply_exchange(models->first, spec) < 0)
        return -1;
    char *key = NULL, *value = NULL;
    int made = definitions_record_exchange(spec, &key, &value);
    replay_record(models, made, key, value);
    FUZZ_CHECK(definitions_exchange(models->second, spec->vhost, spec->name) != NULL,
               "exchange %s in vhost %s is not in the second model", spec->name, spec->vhost);
    return 0;
}

static int on_queue(const struct queue_spec *spec, void *opaque)
{
    struct models *models = opaque;
    char err[512] = "";
    bool exists = false;
    if (definitions_check_queue(models->first, spec, false, &exists, err, sizeof(err)) !=
            DEFINITIONS_OK ||
        definitions_check_queue_arguments(spec->arguments, err, sizeof(err)) != DEFINITIONS_OK) {
        check_reason(err);
        return 0;
    }
    if (definitions_apply_queue(models->first, spec) < 0)
        return -1;
    char *key = NULL, *value = NULL;
    int made = definitions_record_queue(spec, &key, &value);
    replay_record(models, made, key, value);
    FUZZ_CHECK(definitions_queue(models->second, spec->vhost, spec->name) != NULL,
               "queue %s in vhost %s is not in the second model", spec->name, spec->vhost);
    return 0;
}

static int on_binding(const struct binding_spec *spec, void *opaque)
{
    struct models *models = opaque;
    char err[512] = "";
    if (definitions_check_binding(models->first, spec, err, sizeof(err)) != DEFINITIONS_OK) {
        check_reason(err);
        return 0;
    }
    if (definitions_apply_binding(models->first, spec) < 0)
        return -1;
    char *key = NULL, *value = NULL;
    int made = definitions_record_binding(spec, &key, &value);
    replay_record(models, made, key, value);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct models models = {definitions_new(), definitions_new()};
    if (!models.first || !models.second) {
        definitions_free(models.first);
        definitions_free(models.second);
        return 0;
    }
    struct definitions_import import = {on_vhost, on_exchange, on_queue, on_binding, &models, 0, 0};
    char err[512] = "";
    if (definitions_import_json((const char *)data, size, &import, err, sizeof(err)) < 0)
        check_message(err);
    definitions_free(models.first);
    definitions_free(models.second);
    return 0;
}
