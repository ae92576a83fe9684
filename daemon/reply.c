/* reply.c -- request-reply tokens and reply topic names (see reply.h). */
#include "reply.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
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
