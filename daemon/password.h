/* SPDX-License-Identifier: Apache-2.0 */
/* password.h -- password hashes in auth.users[].password_hash (architecture
 * §10): what kind a stored hash is, checking a password against it, and
 * making a new one (kbridged --hash-password).
 *
 * Two families are stored verbatim in the same key and told apart by shape:
 *  - crypt(3) strings ("$y$...", "$6$...", "$5$...", "$2b$..."), checked
 *    with crypt_r;
 *  - RabbitMQ's rabbit_password_hashing_sha256 / _sha512 hashes as a
 *    definitions export writes them: base64 of a 4-byte salt followed by
 *    SHA-256 / SHA-512 of (salt + password), 36 / 68 bytes decoded.
 * Pure functions, safe on any thread (the checks run on the worker pool). */
#ifndef KBRIDGE_PASSWORD_H
#define KBRIDGE_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>

enum password_hash_kind {
    PASSWORD_HASH_UNKNOWN,       /* neither shape: refused by the config */
    PASSWORD_HASH_CRYPT,         /* "$id$salt$hash" and longer */
    PASSWORD_HASH_RABBIT_SHA256, /* base64, 36 bytes decoded */
    PASSWORD_HASH_RABBIT_SHA512, /* base64, 68 bytes decoded */
};

#define PASSWORD_RABBIT_SALT_LEN 4

/* What kind of hash `hash` is, by its shape alone. */
enum password_hash_kind password_hash_kind(const char *hash);

/* "crypt", "rabbit_sha256", "rabbit_sha512", "unknown": for logs. */
const char *password_hash_kind_name(enum password_hash_kind kind);

/* Does `password` hash to `hash`? False for an UNKNOWN hash and on out of
 * memory. Constant time in the comparison; crypt(3) schemes cost what
 * their settings say. */
bool password_verify(const char *password, const char *hash);

/* A new yescrypt crypt(3) hash of `password` with a random salt into out
 * (room for 128 bytes is enough). 0, or -1 with a reason in err. */
int password_hash_new(const char *password, char *out, size_t out_size, char *err, size_t err_size);

/* RabbitMQ's hash of `password` with the given 4-byte salt, base64, into out
 * (room for 96 bytes); sha512 chooses the algorithm. For tests and
 * tooling. 0, or -1 when out is too small. */
int password_rabbit_hash(const char *password, const unsigned char *salt, bool sha512, char *out,
                         size_t out_size);

#endif
