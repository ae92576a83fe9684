/* SPDX-License-Identifier: Apache-2.0 */
/* config_import.c -- definitions.import_users (architecture §10): the
 * `users` and `permissions` of a RabbitMQ definitions export added to a
 * config being loaded, as auth.users entries with per-vhost `permissions`.
 *
 * Owns nothing past the call: every string it makes belongs to the config
 * (freed by config_free with the rest of auth.users). Runs inside the config
 * loader, so at start and at every reload; the exchanges and queues of the
 * same file are core_definitions.c's. */
#include "config_import.h"
#include "config.h"
#include "config_table.h"
#include "password.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT_FILE_MAX (64u * 1024 * 1024) /* as definitions.file's own reader */

static int import_fail(char *err, size_t err_size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static int import_fail(char *err, size_t err_size, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(err, err_size, format, args);
    va_end(args);
    return -1;
}

static char *import_read_file(const char *path, size_t *len, char *err, size_t err_size)
{
    FILE *stream = fopen(path, "rb");
    if (!stream) {
        import_fail(err, err_size, "cannot open: %s", strerror(errno));
        return NULL;
    }
    size_t capacity = 0;
    char *text = NULL;
    *len = 0;
    for (;;) {
        if (*len == capacity) {
            if (capacity >= IMPORT_FILE_MAX) {
                import_fail(err, err_size, "larger than 64MiB");
                break;
            }
            size_t grown = capacity ? capacity * 2 : 65536;
            char *bigger = realloc(text, grown);
            if (!bigger) {
                import_fail(err, err_size, "out of memory");
                break;
            }
            text = bigger;
            capacity = grown;
        }
        size_t got = fread(text + *len, 1, capacity - *len, stream);
        *len += got;
        if (got == 0) {
            if (ferror(stream)) {
                import_fail(err, err_size, "cannot read: %s", strerror(errno));
                break;
            }
            fclose(stream);
            return text;
        }
    }
    fclose(stream);
    free(text);
    return NULL;
}

static struct config_user *import_find_user(struct config *config, const char *name)
{
    for (size_t i = 0; i < config->auth.user_count; i++)
        if (strcmp(config->auth.users[i].name, name) == 0)
            return &config->auth.users[i];
    return NULL;
}

/* The export's `tags`: "administrator,monitoring" (RabbitMQ before 3.12) or
 * ["administrator"]. Tags kbridge has no use for (impersonator, custom
 * ones) are left out. */
static int import_tags(const json_t *tags, struct config_user *user, char *err, size_t err_size)
{
    char joined[1024] = "";
    if (json_is_string(tags)) {
        if (json_string_length(tags) >= sizeof(joined))
            return import_fail(err, err_size, "tags longer than %zu bytes", sizeof(joined) - 1);
        memcpy(joined, json_string_value(tags), json_string_length(tags) + 1);
    } else if (json_is_array(tags)) {
        size_t i, used = 0;
        const json_t *tag;
        json_array_foreach(tags, i, tag)
        {
            if (!json_is_string(tag))
                return import_fail(err, err_size, "tags[%zu] is not a string", i);
            int n = snprintf(joined + used, sizeof(joined) - used, "%s%s", used ? "," : "",
                             json_string_value(tag));
            if (n < 0 || (size_t)n >= sizeof(joined) - used)
                return import_fail(err, err_size, "tags longer than %zu bytes", sizeof(joined) - 1);
            used += (size_t)n;
        }
    } else if (tags && !json_is_null(tags)) {
        return import_fail(err, err_size, "tags is neither a string nor a list");
    }
    size_t count = 0;
    for (const char *p = joined; *p; p++)
        count += *p == ',';
    user->tags = calloc(count + 2, sizeof(char *));
    if (!user->tags)
        return import_fail(err, err_size, "out of memory");
    char *save = NULL;
    for (char *tag = strtok_r(joined, ",", &save); tag; tag = strtok_r(NULL, ",", &save)) {
        while (*tag == ' ')
            tag++;
        char reason[CONFIG_REASON_MAX];
        if (*tag == '\0' || config_check_user_tag(tag, reason, sizeof(reason)) < 0)
            continue;
        if (!(user->tags[user->tag_count] = strdup(tag)))
            return import_fail(err, err_size, "out of memory");
        user->tag_count++;
    }
    return 0;
}

/* One entry of `users`, appended to auth.users unless the config has a
 * user of that name (then counted as skipped). */
static int import_user(struct config *config, size_t index, const json_t *entry, char *err,
                       size_t err_size)
{
    const char *name = json_string_value(json_object_get(entry, "name"));
    const char *hash = json_string_value(json_object_get(entry, "password_hash"));
    const json_t *algorithm_node = json_object_get(entry, "hashing_algorithm");
    const char *algorithm = json_string_value(algorithm_node);
    char reason[CONFIG_REASON_MAX];
    if (!json_is_object(entry) || !name || !*name || strlen(name) > 255)
        return import_fail(err, err_size, "users[%zu]: no name (a string of 1 to 255 bytes)",
                           index);
    if (config_check_user_name(name, reason, sizeof(reason)) < 0)
        return import_fail(err, err_size, "users[%zu]: %s", index, reason);
    if (!hash)
        return import_fail(err, err_size, "users[%zu] '%s': no password_hash", index, name);
    if (algorithm_node && !algorithm)
        return import_fail(err, err_size, "users[%zu] '%s': hashing_algorithm is not a string",
                           index, name);
    /* RabbitMQ's default when the export does not say is SHA-256 */
    bool sha512 = algorithm && strcmp(algorithm, "rabbit_password_hashing_sha512") == 0;
    if (algorithm && !sha512 && strcmp(algorithm, "rabbit_password_hashing_sha256") != 0)
        return import_fail(err, err_size,
                           "users[%zu] '%s': hashing_algorithm %s is not supported (only "
                           "rabbit_password_hashing_sha256 and _sha512): change the user's "
                           "password in RabbitMQ, or remove the user from the file",
                           index, name, algorithm);
    enum password_hash_kind want =
        sha512 ? PASSWORD_HASH_RABBIT_SHA512 : PASSWORD_HASH_RABBIT_SHA256;
    if (*hash && password_hash_kind(hash) != want)
        return import_fail(err, err_size, "users[%zu] '%s': password_hash is not a %s hash", index,
                           name, password_hash_kind_name(want));
    if (import_find_user(config, name)) {
        config->definitions.skipped_users++;
        return 0;
    }
    struct config_user *grown =
        realloc(config->auth.users, (config->auth.user_count + 1) * sizeof(*grown));
    if (!grown)
        return import_fail(err, err_size, "out of memory");
    config->auth.users = grown;
    struct config_user *user = &grown[config->auth.user_count];
    memset(user, 0, sizeof(*user));
    config->auth.user_count++; /* zeroed: config_free copes with a half-made user */
    user->imported = true;
    /* "": no password login, as in RabbitMQ (password_verify refuses it);
     * the user may still be a TLS client certificate's */
    if (!(user->name = strdup(name)) || !(user->password_hash = strdup(hash)))
        return import_fail(err, err_size, "out of memory");
    /* no permissions until the export gives some: no vhost, as in RabbitMQ */
    if (!(user->permissions = calloc(1, sizeof(*user->permissions))))
        return import_fail(err, err_size, "out of memory");
    if (import_tags(json_object_get(entry, "tags"), user, reason, sizeof(reason)) < 0)
        return import_fail(err, err_size, "users[%zu] '%s': %s", index, name, reason);
    config->definitions.imported_users++;
    return 0;
}

/* A permission's pattern: "" is none (RabbitMQ's nothing). */
static int import_pattern(const char *source, struct config_pattern **patterns, size_t *count,
                          char *reason, size_t reason_size)
{
    if (!*source)
        return 0;
    if (!(*patterns = calloc(1, sizeof(**patterns))))
        return import_fail(reason, reason_size, "out of memory");
    if (config_pattern_compile(*patterns, source, reason, reason_size) < 0)
        return -1;
    *count = 1;
    return 0;
}

/* One entry of `permissions`: the imported user's entry for its vhost. */
static int import_permission(struct config *config, size_t index, const json_t *entry, char *err,
                             size_t err_size)
{
    static const char *const fields[] = {"user", "vhost", "configure", "write", "read"};
    const char *value[5];
    for (size_t f = 0; f < 5; f++)
        if (!(value[f] = json_string_value(json_object_get(entry, fields[f]))))
            return import_fail(err, err_size, "permissions[%zu]: no %s (a string)", index,
                               fields[f]);
    struct config_user *user = import_find_user(config, value[0]);
    if (!user)
        return import_fail(err, err_size,
                           "permissions[%zu]: user '%s' is neither in the file's users nor in "
                           "auth.users",
                           index, value[0]);
    if (!user->imported || (strcmp(value[1], "/") != 0 && !config_vhost_find(config, value[1]))) {
        config->definitions.skipped_permissions++;
        return 0;
    }
    if (config_user_permission(user, value[1]))
        return import_fail(err, err_size,
                           "permissions[%zu]: a second entry for user '%s' in "
                           "vhost '%s'",
                           index, value[0], value[1]);
    struct config_permission *grown =
        realloc(user->permissions, (user->permission_count + 1) * sizeof(*grown));
    if (!grown)
        return import_fail(err, err_size, "out of memory");
    user->permissions = grown;
    struct config_permission *permission = &grown[user->permission_count];
    memset(permission, 0, sizeof(*permission));
    user->permission_count++;
    char reason[CONFIG_REASON_MAX];
    if (!(permission->vhost = strdup(value[1])))
        return import_fail(err, err_size, "out of memory");
    if (import_pattern(value[2], &permission->configure, &permission->configure_count, reason,
                       sizeof(reason)) < 0 ||
        import_pattern(value[3], &permission->write, &permission->write_count, reason,
                       sizeof(reason)) < 0 ||
        import_pattern(value[4], &permission->read, &permission->read_count, reason,
                       sizeof(reason)) < 0)
        return import_fail(err, err_size, "permissions[%zu] (user '%s', vhost '%s'): %s", index,
                           value[0], value[1], reason);
    config->definitions.imported_permissions++;
    return 0;
}

int config_import_users(struct config *config, char *err, size_t err_size)
{
    size_t len = 0;
    char reason[512];
    char *text = import_read_file(config->definitions.file, &len, reason, sizeof(reason));
    if (!text)
        return import_fail(err, err_size, "%s: %s", config->definitions.file, reason);
    json_error_t error;
    json_t *root = json_loadb(text, len, 0, &error);
    free(text);
    if (!root)
        return import_fail(err, err_size, "%s: line %d: %s", config->definitions.file, error.line,
                           error.text);
    int rc = 0;
    const json_t *users = json_object_get(root, "users");
    const json_t *permissions = json_object_get(root, "permissions");
    if (!json_is_object(root) || (users && !json_is_array(users)) ||
        (permissions && !json_is_array(permissions))) {
        rc = import_fail(err, err_size,
                         "%s: not a definitions export (an object whose users and "
                         "permissions are lists)",
                         config->definitions.file);
        goto done;
    }
    size_t i;
    const json_t *entry;
    json_array_foreach(users, i, entry)
    {
        if ((rc = import_user(config, i, entry, reason, sizeof(reason))) < 0) {
            import_fail(err, err_size, "%s: %s", config->definitions.file, reason);
            goto done;
        }
    }
    json_array_foreach(permissions, i, entry)
    {
        if ((rc = import_permission(config, i, entry, reason, sizeof(reason))) < 0) {
            import_fail(err, err_size, "%s: %s", config->definitions.file, reason);
            goto done;
        }
    }
done:
    json_decref(root);
    return rc;
}
