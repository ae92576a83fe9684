/* SPDX-License-Identifier: Apache-2.0 */
/* config_import.h -- definitions.import_users: a RabbitMQ definitions
 * export's users and permissions taken into a config being loaded
 * (architecture §10). Internal to the config module. */
#ifndef KBRIDGE_CONFIG_IMPORT_H
#define KBRIDGE_CONFIG_IMPORT_H

#include <stddef.h>

struct config;

/* Read config->definitions.file and append its users to auth.users (each
 * with its password_hash, known tags and, from the file's permissions, its
 * per-vhost `permissions`), leaving alone users auth.users already has, and
 * count what was taken and skipped in config->definitions. The new strings
 * belong to the config. 0, or -1 with the file, the entry and the reason in
 * err (an md5 hash, a malformed entry, an unreadable file). */
int config_import_users(struct config *config, char *err, size_t err_size);

#endif
