/* SPDX-License-Identifier: Apache-2.0 */
/* reply.c -- request-reply tokens and reply topic names (see reply.h). */
#include "reply.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static bool reply_word_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

int reply_node_word(const char *node_id, char *out, size_t out_size)
{
    const char *source = node_id && *node_id ? node_id : "node";
    size_t length = strnlen(source, REPLY_NODE_MAX);
    if (out_size <= length)
        return -1;
    for (size_t i = 0; i < length; i++)
        out[i] = reply_word_char(source[i]) ? source[i] : '_';
    out[length] = '\0';
    return 0;
}

int reply_topic_name(const char *node_id, char *out, size_t out_size)
{
    char word[REPLY_NODE_MAX + 1];
    if (reply_node_word(node_id, word, sizeof(word)) < 0)
        return -1;
    int n = snprintf(out, out_size, "%s%s", REPLY_TOPIC_BASE, word);
    return n < 0 || (size_t)n >= out_size ? -1 : 0;
}

int reply_token_new(const char *node_id, char *out, size_t out_size)
{
    char word[REPLY_NODE_MAX + 1];
    if (reply_node_word(node_id, word, sizeof(word)) < 0) {
        errno = ENOBUFS;
        return -1;
    }
    uint8_t random[REPLY_RANDOM_HEX / 2];
    size_t got = 0;
    while (got < sizeof(random)) {
        ssize_t n = getrandom(random + got, sizeof(random) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    size_t word_len = strlen(word);
    if (out_size < word_len + 1 + REPLY_RANDOM_HEX + 1) {
        errno = ENOBUFS;
        return -1;
    }
    memcpy(out, word, word_len);
    out[word_len] = '.';
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(random); i++) {
        out[word_len + 1 + 2 * i] = hex[random[i] >> 4];
        out[word_len + 2 + 2 * i] = hex[random[i] & 15];
    }
    out[word_len + 1 + REPLY_RANDOM_HEX] = '\0';
    return 0;
}

int reply_token_node(const char *token, char *node, size_t node_size)
{
    size_t length = strlen(token);
    if (length < REPLY_RANDOM_HEX + 2 || length > REPLY_TOKEN_MAX)
        return -1;
    size_t word_len = length - REPLY_RANDOM_HEX - 1;
    if (token[word_len] != '.')
        return -1;
    for (size_t i = 0; i < word_len; i++)
        if (!reply_word_char(token[i]))
            return -1;
    for (size_t i = word_len + 1; i < length; i++)
        if (!((token[i] >= '0' && token[i] <= '9') || (token[i] >= 'a' && token[i] <= 'f')))
            return -1;
    if (node_size <= word_len)
        return -1;
    memcpy(node, token, word_len);
    node[word_len] = '\0';
    return 0;
}

/* ---- outstanding requests ------------------------------------------------------------ */

struct reply_request {
    struct reply_request *hash_next;
    struct reply_request *older; /* FIFO by time of sending */
    struct reply_request *newer;
    uint64_t sent_ms;
    char id[REPLY_REQUEST_ID_LEN + 1];
    size_t correlation_id_len;
    char correlation_id[]; /* NUL-terminated copy */
};

struct reply_requests {
    size_t max;
    uint64_t ttl_ms;
    size_t count;
    size_t bucket_count;
    struct reply_request **buckets;
    struct reply_request *oldest;
    struct reply_request *newest;
};

static size_t reply_hash(const char *id, size_t buckets)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < REPLY_REQUEST_ID_LEN && id[i]; i++) {
        h ^= (unsigned char)id[i];
        h *= 1099511628211ULL;
    }
    return (size_t)(h % buckets);
}

struct reply_requests *reply_requests_new(size_t max, uint64_t ttl_ms)
{
    struct reply_requests *requests = calloc(1, sizeof(*requests));
    if (!requests)
        return NULL;
    requests->max = max ? max : 1;
    requests->ttl_ms = ttl_ms;
    requests->bucket_count = requests->max < 1024 ? 1024 : requests->max;
    requests->buckets = calloc(requests->bucket_count, sizeof(*requests->buckets));
    if (!requests->buckets) {
        free(requests);
        return NULL;
    }
    return requests;
}

static void reply_requests_remove_oldest(struct reply_requests *requests)
{
    struct reply_request *victim = requests->oldest;
    if (!victim)
        return;
    struct reply_request **link =
        &requests->buckets[reply_hash(victim->id, requests->bucket_count)];
    while (*link && *link != victim)
        link = &(*link)->hash_next;
    if (*link)
        *link = victim->hash_next;
    requests->oldest = victim->newer;
    if (requests->oldest)
        requests->oldest->older = NULL;
    else
        requests->newest = NULL;
    requests->count--;
    free(victim);
}

static void reply_requests_expire(struct reply_requests *requests, uint64_t now_ms)
{
    while (requests->oldest && now_ms >= requests->oldest->sent_ms + requests->ttl_ms)
        reply_requests_remove_oldest(requests);
}

void reply_requests_free(struct reply_requests *requests)
{
    if (!requests)
        return;
    while (requests->oldest)
        reply_requests_remove_oldest(requests);
    free(requests->buckets);
    free(requests);
}

int reply_requests_put(struct reply_requests *requests, const char *id, const char *correlation_id,
                       size_t correlation_id_len, uint64_t now_ms)
{
    reply_requests_expire(requests, now_ms);
    while (requests->count >= requests->max)
        reply_requests_remove_oldest(requests);
    struct reply_request *request = malloc(sizeof(*request) + correlation_id_len + 1);
    if (!request)
        return -1;
    memset(request, 0, sizeof(*request));
    snprintf(request->id, sizeof(request->id), "%s", id);
    request->sent_ms = now_ms;
    request->correlation_id_len = correlation_id_len;
    if (correlation_id_len)
        memcpy(request->correlation_id, correlation_id, correlation_id_len);
    request->correlation_id[correlation_id_len] = '\0';
    size_t bucket = reply_hash(request->id, requests->bucket_count);
    request->hash_next = requests->buckets[bucket];
    requests->buckets[bucket] = request;
    request->older = requests->newest;
    if (requests->newest)
        requests->newest->newer = request;
    else
        requests->oldest = request;
    requests->newest = request;
    requests->count++;
    return 0;
}

const char *reply_requests_find(struct reply_requests *requests, const char *id, uint64_t now_ms,
                                size_t *correlation_id_len, uint64_t *sent_ms)
{
    reply_requests_expire(requests, now_ms);
    for (struct reply_request *r = requests->buckets[reply_hash(id, requests->bucket_count)]; r;
         r = r->hash_next)
        if (strncmp(r->id, id, REPLY_REQUEST_ID_LEN) == 0 && strlen(id) == REPLY_REQUEST_ID_LEN) {
            *correlation_id_len = r->correlation_id_len;
            if (sent_ms)
                *sent_ms = r->sent_ms;
            return r->correlation_id;
        }
    return NULL;
}

void reply_requests_configure(struct reply_requests *requests, size_t max, uint64_t ttl_ms)
{
    requests->max = max ? max : 1;
    requests->ttl_ms = ttl_ms;
    while (requests->count > requests->max)
        reply_requests_remove_oldest(requests);
}

size_t reply_requests_count(const struct reply_requests *requests) { return requests->count; }
