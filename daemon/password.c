/* SPDX-License-Identifier: Apache-2.0 */
/* password.c -- password hash kinds, checks and new hashes (password.h):
 * crypt(3) through libcrypt's crypt_r, RabbitMQ's salted SHA-256/512 hashes
 * through OpenSSL (EVP digests, base64 blocks, CRYPTO_memcmp). */
#include "password.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PASSWORD_RABBIT_MAX 68 /* salt + SHA-512 */

/* "$id$salt$hash" or longer ("$6$rounds=5000$salt$hash", "$y$j9T$salt$hash"):
 * a '$' then at least three non-empty '$'-separated fields of printable
 * characters other than ':'. */
static bool password_is_crypt(const char *value)
{
    if (value[0] != '$')
        return false;
    size_t fields = 0;
    for (const char *field = value + 1;;) {
        size_t len = strcspn(field, "$");
        if (len == 0)
            return false;
        for (size_t i = 0; i < len; i++)
            if (field[i] <= ' ' || field[i] >= 0x7f || field[i] == ':')
                return false;
        fields++;
        if (field[len] == '\0')
            break;
        field += len + 1;
    }
    return fields >= 3;
}

/* Decode standard base64 (with its padding) into out; the decoded length,
 * or -1 when `text` is not base64 or decodes to more than out_size. */
static int password_base64_decode(const char *text, unsigned char *out, size_t out_size)
{
    size_t len = strlen(text);
    if (len == 0 || len % 4 != 0 || len / 4 * 3 > out_size + 2)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '+' || c == '/' || (c == '=' && i >= len - 2);
        if (!ok || (c != '=' && i > 0 && text[i - 1] == '='))
            return -1;
    }
    unsigned char buffer[PASSWORD_RABBIT_MAX + 3];
    if (len / 4 * 3 > sizeof(buffer))
        return -1;
    int n = EVP_DecodeBlock(buffer, (const unsigned char *)text, (int)len);
    if (n < 0)
        return -1;
    n -= (text[len - 1] == '=') + (text[len - 2] == '=');
    if (n < 0 || (size_t)n > out_size)
        return -1;
    memcpy(out, buffer, (size_t)n);
    return n;
}

enum password_hash_kind password_hash_kind(const char *hash)
{
    if (!hash)
        return PASSWORD_HASH_UNKNOWN;
    if (password_is_crypt(hash))
        return PASSWORD_HASH_CRYPT;
    unsigned char raw[PASSWORD_RABBIT_MAX];
    int n = password_base64_decode(hash, raw, sizeof(raw));
    if (n == PASSWORD_RABBIT_SALT_LEN + 32)
        return PASSWORD_HASH_RABBIT_SHA256;
    if (n == PASSWORD_RABBIT_SALT_LEN + 64)
        return PASSWORD_HASH_RABBIT_SHA512;
    return PASSWORD_HASH_UNKNOWN;
}

const char *password_hash_kind_name(enum password_hash_kind kind)
{
    switch (kind) {
    case PASSWORD_HASH_CRYPT: return "crypt";
    case PASSWORD_HASH_RABBIT_SHA256: return "rabbit_sha256";
    case PASSWORD_HASH_RABBIT_SHA512: return "rabbit_sha512";
    default: return "unknown";
    }
}

/* SHA-256/512 of salt + password into digest; its length, or -1. */
static int password_rabbit_digest(const char *password, const unsigned char *salt, bool sha512,
                                  unsigned char *digest)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int len = 0;
    int ok = md && EVP_DigestInit_ex(md, sha512 ? EVP_sha512() : EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(md, salt, PASSWORD_RABBIT_SALT_LEN) == 1 &&
             EVP_DigestUpdate(md, password, strlen(password)) == 1 &&
             EVP_DigestFinal_ex(md, digest, &len) == 1;
    EVP_MD_CTX_free(md);
    return ok ? (int)len : -1;
}

static bool password_verify_rabbit(const char *password, const char *hash, bool sha512)
{
    unsigned char raw[PASSWORD_RABBIT_MAX];
    unsigned char digest[EVP_MAX_MD_SIZE];
    int n = password_base64_decode(hash, raw, sizeof(raw));
    int len = password_rabbit_digest(password, raw, sha512, digest);
    bool match = len > 0 && n == PASSWORD_RABBIT_SALT_LEN + len &&
                 CRYPTO_memcmp(raw + PASSWORD_RABBIT_SALT_LEN, digest, (size_t)len) == 0;
    OPENSSL_cleanse(digest, sizeof(digest));
    return match;
}

static bool password_verify_crypt(const char *password, const char *hash)
{
    struct crypt_data *data = calloc(1, sizeof(*data));
    if (!data)
        return false;
    const char *hashed = crypt_r(password, hash, data);
    bool match = hashed && hashed[0] != '*' && strlen(hashed) == strlen(hash) &&
                 CRYPTO_memcmp(hashed, hash, strlen(hash)) == 0;
    OPENSSL_cleanse(data, sizeof(*data));
    free(data);
    return match;
}

bool password_verify(const char *password, const char *hash)
{
    switch (password_hash_kind(hash)) {
    case PASSWORD_HASH_CRYPT: return password_verify_crypt(password, hash);
    case PASSWORD_HASH_RABBIT_SHA256: return password_verify_rabbit(password, hash, false);
    case PASSWORD_HASH_RABBIT_SHA512: return password_verify_rabbit(password, hash, true);
    default: return false;
    }
}

int password_hash_new(const char *password, char *out, size_t out_size, char *err, size_t err_size)
{
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    /* NULL random bytes: libcrypt reads the system's random source */
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, setting, sizeof(setting))) {
        snprintf(err, err_size, "this system's crypt(3) cannot make a yescrypt salt");
        return -1;
    }
    struct crypt_data *data = calloc(1, sizeof(*data));
    if (!data) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    const char *hashed = crypt_r(password, setting, data);
    int rc = -1;
    if (!hashed || hashed[0] == '*')
        snprintf(err, err_size, "crypt(3) could not hash the password");
    else if (strlen(hashed) >= out_size)
        snprintf(err, err_size, "hash too long");
    else {
        memcpy(out, hashed, strlen(hashed) + 1);
        rc = 0;
    }
    OPENSSL_cleanse(data, sizeof(*data));
    free(data);
    return rc;
}

int password_rabbit_hash(const char *password, const unsigned char *salt, bool sha512, char *out,
                         size_t out_size)
{
    unsigned char raw[PASSWORD_RABBIT_MAX];
    memcpy(raw, salt, PASSWORD_RABBIT_SALT_LEN);
    int len = password_rabbit_digest(password, salt, sha512, raw + PASSWORD_RABBIT_SALT_LEN);
    if (len < 0)
        return -1;
    size_t total = PASSWORD_RABBIT_SALT_LEN + (size_t)len;
    if (out_size < (total + 2) / 3 * 4 + 1)
        return -1;
    EVP_EncodeBlock((unsigned char *)out, raw, (int)total);
    return 0;
}
