/* SPDX-License-Identifier: Apache-2.0 */
/* admin_auth.c -- basic credentials and user tags for the admin API
 * (admin_auth.h). */
#include "admin_auth.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"

int admin_basic_credentials(const char *header, char *user, size_t user_size, char *password,
                            size_t password_size)
{
    if (!header || strncasecmp(header, "Basic ", 6) != 0)
        return -1;
    const char *text = header + 6;
    while (*text == ' ')
        text++;
    size_t len = strlen(text);
    while (len > 0 && (text[len - 1] == ' ' || text[len - 1] == '\t'))
        len--;
    if (len == 0 || len % 4 != 0 || len > 4096)
        return -1;
    unsigned char *decoded = malloc(len / 4 * 3 + 1);
    if (!decoded)
        return -1;
    int n = EVP_DecodeBlock(decoded, (const unsigned char *)text, (int)len);
    if (n < 0) {
        free(decoded);
        return -1;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes */
    if (text[len - 1] == '=')
        n--;
    if (text[len - 2] == '=')
        n--;
    int rc = -1;
    unsigned char *colon = memchr(decoded, ':', (size_t)n);
    if (colon && !memchr(decoded, '\0', (size_t)n)) {
        size_t user_len = (size_t)(colon - decoded);
        size_t password_len = (size_t)n - user_len - 1;
        if (user_len > 0 && user_len < user_size && password_len < password_size) {
            memcpy(user, decoded, user_len);
            user[user_len] = '\0';
            memcpy(password, colon + 1, password_len);
            password[password_len] = '\0';
            rc = 0;
        }
    }
    OPENSSL_cleanse(decoded, len / 4 * 3 + 1);
    free(decoded);
    return rc;
}

enum admin_role admin_role_of(const struct config_user *user)
{
    enum admin_role role = ADMIN_ROLE_NONE;
    for (size_t i = 0; user && i < user->tag_count; i++) {
        enum admin_role tag = ADMIN_ROLE_NONE;
        if (strcmp(user->tags[i], "administrator") == 0)
            tag = ADMIN_ROLE_ADMINISTRATOR;
        else if (strcmp(user->tags[i], "monitoring") == 0)
            tag = ADMIN_ROLE_MONITORING;
        else if (strcmp(user->tags[i], "management") == 0 ||
                 strcmp(user->tags[i], "policymaker") == 0)
            tag = ADMIN_ROLE_MANAGEMENT;
        if (tag > role)
            role = tag;
    }
    return role;
}

bool admin_role_allows(enum admin_role role, bool change)
{
    return change ? role == ADMIN_ROLE_ADMINISTRATOR : role != ADMIN_ROLE_NONE;
}

const char *admin_role_name(enum admin_role role)
{
    switch (role) {
    case ADMIN_ROLE_ADMINISTRATOR: return "administrator";
    case ADMIN_ROLE_MONITORING: return "monitoring";
    case ADMIN_ROLE_MANAGEMENT: return "management";
    default: return "none";
    }
}
