/* SPDX-License-Identifier: Apache-2.0 */
/* admin_auth.h -- who may do what on the admin API (architecture §9,
 * docs/operations.md "Admin API"): HTTP basic credentials and RabbitMQ's
 * user tags (`auth.users[].tags`). Pure functions; the password itself is
 * checked by core_authenticate_start_from, off the loop, as for logins. */
#ifndef KBRIDGE_ADMIN_AUTH_H
#define KBRIDGE_ADMIN_AUTH_H

#include <stdbool.h>
#include <stddef.h>

struct config_user;

/* What a user's tags let it do, weakest first. */
enum admin_role {
    ADMIN_ROLE_NONE,          /* no tag the API knows: 403 everywhere */
    ADMIN_ROLE_MANAGEMENT,    /* "management", "policymaker": reads what it may consume */
    ADMIN_ROLE_MONITORING,    /* "monitoring": reads everything */
    ADMIN_ROLE_ADMINISTRATOR, /* "administrator": reads and changes everything */
};

/* Parse an `Authorization: Basic BASE64(user:password)` header value into
 * user and password (NUL-terminated, truncated never: -1 when they do not
 * fit). 0, or -1 when the header is not basic credentials. */
int admin_basic_credentials(const char *header, char *user, size_t user_size, char *password,
                            size_t password_size);

/* The strongest role among `user`'s tags (NULL: ADMIN_ROLE_NONE). */
enum admin_role admin_role_of(const struct config_user *user);

/* May `role` make a request that changes state (`change`: POST, PUT,
 * DELETE) or that reads (GET, HEAD)? Only administrators change; every
 * role but NONE reads (management users see a filtered view). */
bool admin_role_allows(enum admin_role role, bool change);

/* "administrator", "monitoring", "management", "none": for whoami and logs. */
const char *admin_role_name(enum admin_role role);

#endif
