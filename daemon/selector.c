/* SPDX-License-Identifier: Apache-2.0 */
/* selector.c -- JMS message selectors: a hand-written recursive-descent
 * parser into a tree, and its evaluation with three-valued logic
 * (architecture §13). The grammar, from loosest to tightest binding
 * (keywords are case-insensitive):
 *
 *   selector       := or EOF
 *   or             := and { OR and }
 *   and            := not { AND not }
 *   not            := NOT not | comparison
 *   comparison     := sum [ ( '=' | '<>' | '<' | '>' | '<=' | '>=' ) sum
 *                         | [NOT] BETWEEN sum AND sum
 *                         | [NOT] IN '(' literal { ',' literal } ')'
 *                         | [NOT] LIKE string [ ESCAPE string ]
 *                         | IS [NOT] NULL ]
 *   sum            := product { ( '+' | '-' ) product }
 *   product        := unary { ( '*' | '/' ) unary }
 *   unary          := ( '+' | '-' ) unary | primary
 *   primary        := literal | identifier | '(' or ')'
 *   literal        := string | number | TRUE | FALSE
 *   string         := "'" { any character, "''" for a quote } "'"
 *   number         := digits [ '.' digits ] [ ( 'e' | 'E' ) [sign] digits ]
 *                   | '.' digits [exponent] | 0x hex digits
 *   identifier     := ( letter | '_' | '$' ) { letter | digit | '_' | '$' | '.' }
 *
 * Numbers are doubles (exact beyond 2^53 they are not: documented). String
 * ordering (<, >) is UNKNOWN as JMS says; only = and <> compare strings and
 * booleans. A comparison or arithmetic on a NULL or on values of types that
 * do not compare is UNKNOWN; NOT UNKNOWN is UNKNOWN; FALSE AND UNKNOWN is
 * FALSE; TRUE OR UNKNOWN is TRUE.
 *
 * Owns: the tree (struct selector_node), freed by selector_free. */
#include "selector.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum node_kind {
    NODE_LITERAL,
    NODE_IDENTIFIER,
    NODE_NOT,
    NODE_NEGATE,
    NODE_AND,
    NODE_OR,
    NODE_EQUAL,
    NODE_NOT_EQUAL,
    NODE_LESS,
    NODE_LESS_EQUAL,
    NODE_GREATER,
    NODE_GREATER_EQUAL,
    NODE_ADD,
    NODE_SUBTRACT,
    NODE_MULTIPLY,
    NODE_DIVIDE,
    NODE_BETWEEN, /* left BETWEEN low AND high; negated: NOT BETWEEN */
    NODE_IN,      /* left IN (list) */
    NODE_LIKE,    /* left LIKE pattern [ESCAPE c] */
    NODE_IS_NULL,
};

struct selector_node {
    enum node_kind kind;
    bool negated; /* NOT BETWEEN, NOT IN, NOT LIKE, IS NOT NULL */
    struct selector_node *left, *right, *third;
    struct selector_value literal; /* NODE_LITERAL; its string is owned (text) */
    char *text;                    /* identifier name, string literal, LIKE pattern */
    struct selector_value *list;   /* NODE_IN: literals (strings owned in list_texts) */
    char **list_texts;
    size_t list_count;
    int escape; /* NODE_LIKE: the escape character, or -1 */
};

struct selector {
    struct selector_node *root;
};

/* ---- tokens ------------------------------------------------------------------------ */

enum token_kind {
    TOKEN_END,
    TOKEN_IDENTIFIER,
    TOKEN_STRING,
    TOKEN_NUMBER,
    TOKEN_OPERATOR, /* = <> < > <= >= + - * / ( ) , */
    TOKEN_KEYWORD,  /* AND OR NOT BETWEEN IN LIKE ESCAPE IS NULL TRUE FALSE */
};

struct parser {
    const char *text;
    size_t at;    /* next byte to read */
    size_t start; /* where the current token starts (0-based) */
    enum token_kind kind;
    char op[3]; /* TOKEN_OPERATOR; TOKEN_KEYWORD in upper case in keyword */
    char keyword[8];
    char *string; /* TOKEN_STRING and TOKEN_IDENTIFIER: malloc'd */
    double number;
    int depth;
    bool failed;
    char *err;
    size_t err_size;
};

static void parser_fail(struct parser *p, size_t position, const char *format, ...)
{
    if (p->failed)
        return;
    p->failed = true;
    int used = snprintf(p->err, p->err_size, "position %zu: ", position + 1);
    if (used < 0 || (size_t)used >= p->err_size)
        return;
    va_list args;
    va_start(args, format);
    vsnprintf(p->err + used, p->err_size - (size_t)used, format, args);
    va_end(args);
}

static const char *const keywords[] = {"AND",    "OR", "NOT",  "BETWEEN", "IN",   "LIKE",
                                       "ESCAPE", "IS", "NULL", "TRUE",    "FALSE"};

static bool identifier_start(int c) { return isalpha(c) || c == '_' || c == '$'; }
static bool identifier_part(int c) { return isalnum(c) || c == '_' || c == '$' || c == '.'; }

/* Read the next token into p (the previous string is freed). */
static void next_token(struct parser *p)
{
    free(p->string);
    p->string = NULL;
    const char *t = p->text;
    while (t[p->at] == ' ' || t[p->at] == '\t' || t[p->at] == '\n' || t[p->at] == '\r')
        p->at++;
    p->start = p->at;
    int c = (unsigned char)t[p->at];
    if (c == '\0') {
        p->kind = TOKEN_END;
        return;
    }
    if (identifier_start(c)) {
        size_t end = p->at;
        while (identifier_part((unsigned char)t[end]))
            end++;
        size_t len = end - p->at;
        for (size_t k = 0; k < sizeof(keywords) / sizeof(keywords[0]); k++)
            if (strlen(keywords[k]) == len && strncasecmp(t + p->at, keywords[k], len) == 0) {
                p->kind = TOKEN_KEYWORD;
                strcpy(p->keyword, keywords[k]);
                p->at = end;
                return;
            }
        p->kind = TOKEN_IDENTIFIER;
        p->string = strndup(t + p->at, len);
        if (!p->string)
            parser_fail(p, p->start, "out of memory");
        p->at = end;
        return;
    }
    if (c == '\'') {
        size_t len = 0, end = p->at + 1;
        for (;; end++) {
            if (t[end] == '\0') {
                parser_fail(p, p->start, "a string that is never closed with '");
                p->kind = TOKEN_END;
                return;
            }
            if (t[end] == '\'') {
                if (t[end + 1] != '\'')
                    break;
                end++;
            }
            len++;
        }
        p->string = malloc(len + 1);
        if (!p->string) {
            parser_fail(p, p->start, "out of memory");
            p->kind = TOKEN_END;
            return;
        }
        size_t out = 0;
        for (size_t k = p->at + 1; k < end; k++) {
            p->string[out++] = t[k];
            if (t[k] == '\'')
                k++; /* '' is one quote */
        }
        p->string[out] = '\0';
        p->kind = TOKEN_STRING;
        p->at = end + 1;
        return;
    }
    if (isdigit(c) || (c == '.' && isdigit((unsigned char)t[p->at + 1]))) {
        char *end = NULL;
        errno = 0;
        if (c == '0' && (t[p->at + 1] == 'x' || t[p->at + 1] == 'X'))
            p->number = (double)strtoull(t + p->at, &end, 16);
        else
            p->number = strtod(t + p->at, &end);
        if (end == t + p->at || errno == ERANGE || !isfinite(p->number)) {
            parser_fail(p, p->start, "a number out of range");
            p->kind = TOKEN_END;
            return;
        }
        /* a Java-style type suffix on a literal (10L, 1.5D, 2F) is accepted */
        if (*end == 'l' || *end == 'L' || *end == 'd' || *end == 'D' || *end == 'f' || *end == 'F')
            end++;
        if (identifier_part((unsigned char)*end)) {
            parser_fail(p, p->start, "a number runs into a name");
            p->kind = TOKEN_END;
            return;
        }
        p->kind = TOKEN_NUMBER;
        p->at = (size_t)(end - t);
        return;
    }
    static const char *const two[] = {"<>", "<=", ">="};
    for (size_t k = 0; k < 3; k++)
        if (strncmp(t + p->at, two[k], 2) == 0) {
            p->kind = TOKEN_OPERATOR;
            strcpy(p->op, two[k]);
            p->at += 2;
            return;
        }
    if (strchr("=<>+-*/(),", c)) {
        p->kind = TOKEN_OPERATOR;
        p->op[0] = (char)c;
        p->op[1] = '\0';
        p->at++;
        return;
    }
    if (c >= 0x20 && c < 0x7f)
        parser_fail(p, p->start, "unexpected character '%c'", c);
    else
        parser_fail(p, p->start, "unexpected byte 0x%02x", (unsigned)c);
    p->kind = TOKEN_END;
}

static bool at_operator(const struct parser *p, const char *op)
{
    return p->kind == TOKEN_OPERATOR && strcmp(p->op, op) == 0;
}

static bool at_keyword(const struct parser *p, const char *keyword)
{
    return p->kind == TOKEN_KEYWORD && strcmp(p->keyword, keyword) == 0;
}

/* What the current token is, for messages. */
static const char *token_text(const struct parser *p, char *buf, size_t size)
{
    switch (p->kind) {
    case TOKEN_END: return "the end";
    case TOKEN_OPERATOR: snprintf(buf, size, "'%s'", p->op); return buf;
    case TOKEN_KEYWORD: snprintf(buf, size, "%s", p->keyword); return buf;
    case TOKEN_IDENTIFIER: snprintf(buf, size, "'%.40s'", p->string); return buf;
    case TOKEN_STRING: return "a string";
    case TOKEN_NUMBER: return "a number";
    }
    return "?";
}

/* ---- the tree ---------------------------------------------------------------------- */

static void node_free(struct selector_node *node)
{
    if (!node)
        return;
    node_free(node->left);
    node_free(node->right);
    node_free(node->third);
    free(node->text);
    for (size_t i = 0; i < node->list_count; i++)
        free(node->list_texts[i]);
    free(node->list_texts);
    free(node->list);
    free(node);
}

static struct selector_node *node_new(struct parser *p, enum node_kind kind,
                                      struct selector_node *left, struct selector_node *right)
{
    struct selector_node *node = calloc(1, sizeof(*node));
    if (!node) {
        parser_fail(p, p->start, "out of memory");
        node_free(left);
        node_free(right);
        return NULL;
    }
    node->kind = kind;
    node->left = left;
    node->right = right;
    node->escape = -1;
    return node;
}

static struct selector_node *parse_or(struct parser *p);

/* A literal token into *value (a string is taken from the token). */
static bool take_literal(struct parser *p, struct selector_value *value, char **owned)
{
    *owned = NULL;
    if (p->kind == TOKEN_STRING) {
        *owned = p->string;
        p->string = NULL;
        *value = (struct selector_value){
            .type = SELECTOR_STRING, .string = *owned, .string_len = strlen(*owned)};
    } else if (p->kind == TOKEN_NUMBER) {
        *value = (struct selector_value){.type = SELECTOR_NUMBER, .number = p->number};
    } else if (at_keyword(p, "TRUE") || at_keyword(p, "FALSE")) {
        *value =
            (struct selector_value){.type = SELECTOR_BOOLEAN, .boolean = at_keyword(p, "TRUE")};
    } else {
        return false;
    }
    next_token(p);
    return true;
}

static struct selector_node *parse_primary(struct parser *p)
{
    char buf[64];
    if (p->failed)
        return NULL;
    if (at_operator(p, "(")) {
        size_t open = p->start;
        next_token(p);
        struct selector_node *inner = parse_or(p);
        if (!inner)
            return NULL;
        if (!at_operator(p, ")")) {
            parser_fail(p, p->start, "expected ')' to close the '(' at position %zu, got %s",
                        open + 1, token_text(p, buf, sizeof(buf)));
            node_free(inner);
            return NULL;
        }
        next_token(p);
        return inner;
    }
    if (p->kind == TOKEN_IDENTIFIER) {
        struct selector_node *node = node_new(p, NODE_IDENTIFIER, NULL, NULL);
        if (!node)
            return NULL;
        node->text = p->string;
        p->string = NULL;
        next_token(p);
        return node;
    }
    struct selector_value value;
    char *owned;
    size_t start = p->start;
    if (take_literal(p, &value, &owned)) {
        struct selector_node *node = node_new(p, NODE_LITERAL, NULL, NULL);
        if (!node) {
            free(owned);
            return NULL;
        }
        node->literal = value;
        node->text = owned;
        return node;
    }
    parser_fail(p, start, "expected a value, a name or '(', got %s",
                token_text(p, buf, sizeof(buf)));
    return NULL;
}

static struct selector_node *parse_unary(struct parser *p)
{
    if (++p->depth > SELECTOR_MAX_DEPTH) {
        parser_fail(p, p->start, "nested deeper than %d", SELECTOR_MAX_DEPTH);
        return NULL;
    }
    struct selector_node *node;
    if (at_operator(p, "-") || at_operator(p, "+")) {
        bool negate = p->op[0] == '-';
        next_token(p);
        struct selector_node *operand = parse_unary(p);
        node = !operand ? NULL : negate ? node_new(p, NODE_NEGATE, operand, NULL) : operand;
    } else {
        node = parse_primary(p);
    }
    p->depth--;
    return node;
}

static struct selector_node *parse_product(struct parser *p)
{
    struct selector_node *left = parse_unary(p);
    while (left && (at_operator(p, "*") || at_operator(p, "/"))) {
        enum node_kind kind = p->op[0] == '*' ? NODE_MULTIPLY : NODE_DIVIDE;
        next_token(p);
        struct selector_node *right = parse_unary(p);
        left = right ? node_new(p, kind, left, right) : (node_free(left), NULL);
    }
    return left;
}

static struct selector_node *parse_sum(struct parser *p)
{
    struct selector_node *left = parse_product(p);
    while (left && (at_operator(p, "+") || at_operator(p, "-"))) {
        enum node_kind kind = p->op[0] == '+' ? NODE_ADD : NODE_SUBTRACT;
        next_token(p);
        struct selector_node *right = parse_product(p);
        left = right ? node_new(p, kind, left, right) : (node_free(left), NULL);
    }
    return left;
}

/* left [NOT] IN ( literal, ... ) after IN */
static struct selector_node *parse_in(struct parser *p, struct selector_node *left, bool negated)
{
    char buf[64];
    struct selector_node *node = node_new(p, NODE_IN, left, NULL);
    if (!node)
        return NULL;
    node->negated = negated;
    if (!at_operator(p, "(")) {
        parser_fail(p, p->start, "expected '(' after IN, got %s", token_text(p, buf, sizeof(buf)));
        node_free(node);
        return NULL;
    }
    next_token(p);
    for (;;) {
        struct selector_value value;
        char *owned;
        size_t start = p->start;
        if (p->failed || !take_literal(p, &value, &owned)) {
            parser_fail(p, start, "expected a value in the IN list, got %s",
                        token_text(p, buf, sizeof(buf)));
            node_free(node);
            return NULL;
        }
        struct selector_value *list = realloc(node->list, (node->list_count + 1) * sizeof(*list));
        char **texts =
            list ? realloc(node->list_texts, (node->list_count + 1) * sizeof(*texts)) : NULL;
        if (list)
            node->list = list;
        if (texts)
            node->list_texts = texts;
        if (!list || !texts) {
            free(owned);
            parser_fail(p, start, "out of memory");
            node_free(node);
            return NULL;
        }
        node->list[node->list_count] = value;
        node->list_texts[node->list_count] = owned;
        node->list_count++;
        if (at_operator(p, ")"))
            break;
        if (!at_operator(p, ",")) {
            parser_fail(p, p->start, "expected ',' or ')' in the IN list, got %s",
                        token_text(p, buf, sizeof(buf)));
            node_free(node);
            return NULL;
        }
        next_token(p);
    }
    next_token(p);
    return node;
}

/* left [NOT] LIKE 'pattern' [ESCAPE 'c'] after LIKE */
static struct selector_node *parse_like(struct parser *p, struct selector_node *left, bool negated)
{
    char buf[64];
    struct selector_node *node = node_new(p, NODE_LIKE, left, NULL);
    if (!node)
        return NULL;
    node->negated = negated;
    if (p->kind != TOKEN_STRING) {
        parser_fail(p, p->start, "expected a string pattern after LIKE, got %s",
                    token_text(p, buf, sizeof(buf)));
        node_free(node);
        return NULL;
    }
    node->text = p->string;
    p->string = NULL;
    next_token(p);
    if (at_keyword(p, "ESCAPE")) {
        next_token(p);
        if (p->kind != TOKEN_STRING || strlen(p->string) != 1) {
            parser_fail(p, p->start, "expected a one-character string after ESCAPE");
            node_free(node);
            return NULL;
        }
        node->escape = (unsigned char)p->string[0];
        next_token(p);
    }
    return node;
}

static struct selector_node *parse_comparison(struct parser *p)
{
    char buf[64];
    struct selector_node *left = parse_sum(p);
    if (!left)
        return NULL;
    static const struct {
        const char *op;
        enum node_kind kind;
    } comparisons[] = {{"=", NODE_EQUAL},       {"<>", NODE_NOT_EQUAL}, {"<", NODE_LESS},
                       {"<=", NODE_LESS_EQUAL}, {">", NODE_GREATER},    {">=", NODE_GREATER_EQUAL}};
    for (size_t k = 0; k < sizeof(comparisons) / sizeof(comparisons[0]); k++)
        if (at_operator(p, comparisons[k].op)) {
            next_token(p);
            struct selector_node *right = parse_sum(p);
            return right ? node_new(p, comparisons[k].kind, left, right) : (node_free(left), NULL);
        }
    if (at_keyword(p, "IS")) {
        next_token(p);
        bool negated = at_keyword(p, "NOT");
        if (negated)
            next_token(p);
        if (!at_keyword(p, "NULL")) {
            parser_fail(p, p->start, "expected NULL after IS%s, got %s", negated ? " NOT" : "",
                        token_text(p, buf, sizeof(buf)));
            node_free(left);
            return NULL;
        }
        next_token(p);
        struct selector_node *node = node_new(p, NODE_IS_NULL, left, NULL);
        if (node)
            node->negated = negated;
        return node;
    }
    bool negated = at_keyword(p, "NOT");
    if (negated) {
        next_token(p);
        if (!at_keyword(p, "BETWEEN") && !at_keyword(p, "IN") && !at_keyword(p, "LIKE")) {
            parser_fail(p, p->start, "expected BETWEEN, IN or LIKE after NOT, got %s",
                        token_text(p, buf, sizeof(buf)));
            node_free(left);
            return NULL;
        }
    }
    if (at_keyword(p, "BETWEEN")) {
        next_token(p);
        struct selector_node *low = parse_sum(p);
        if (low && !at_keyword(p, "AND")) {
            parser_fail(p, p->start, "expected AND in BETWEEN, got %s",
                        token_text(p, buf, sizeof(buf)));
            node_free(low);
            low = NULL;
        }
        struct selector_node *high = NULL;
        if (low) {
            next_token(p);
            high = parse_sum(p);
        }
        if (!low || !high) {
            node_free(left);
            node_free(low);
            return NULL;
        }
        struct selector_node *node = node_new(p, NODE_BETWEEN, left, low);
        if (!node) {
            node_free(high);
            return NULL;
        }
        node->third = high;
        node->negated = negated;
        return node;
    }
    if (at_keyword(p, "IN")) {
        next_token(p);
        return parse_in(p, left, negated);
    }
    if (at_keyword(p, "LIKE")) {
        next_token(p);
        return parse_like(p, left, negated);
    }
    return left;
}

static struct selector_node *parse_not(struct parser *p)
{
    if (++p->depth > SELECTOR_MAX_DEPTH) {
        parser_fail(p, p->start, "nested deeper than %d", SELECTOR_MAX_DEPTH);
        return NULL;
    }
    struct selector_node *node;
    if (at_keyword(p, "NOT")) {
        next_token(p);
        struct selector_node *operand = parse_not(p);
        node = operand ? node_new(p, NODE_NOT, operand, NULL) : NULL;
    } else {
        node = parse_comparison(p);
    }
    p->depth--;
    return node;
}

static struct selector_node *parse_and(struct parser *p)
{
    struct selector_node *left = parse_not(p);
    while (left && at_keyword(p, "AND")) {
        next_token(p);
        struct selector_node *right = parse_not(p);
        left = right ? node_new(p, NODE_AND, left, right) : (node_free(left), NULL);
    }
    return left;
}

static struct selector_node *parse_or(struct parser *p)
{
    if (++p->depth > SELECTOR_MAX_DEPTH) {
        parser_fail(p, p->start, "nested deeper than %d", SELECTOR_MAX_DEPTH);
        return NULL;
    }
    struct selector_node *left = parse_and(p);
    while (left && at_keyword(p, "OR")) {
        next_token(p);
        struct selector_node *right = parse_and(p);
        left = right ? node_new(p, NODE_OR, left, right) : (node_free(left), NULL);
    }
    p->depth--;
    return left;
}

struct selector *selector_parse(const char *text, char *err, size_t err_size)
{
    struct parser p = {.text = text, .err = err, .err_size = err_size};
    if (strlen(text) > SELECTOR_MAX_LENGTH) {
        snprintf(err, err_size, "longer than %d bytes", SELECTOR_MAX_LENGTH);
        return NULL;
    }
    next_token(&p);
    if (p.kind == TOKEN_END && !p.failed) {
        snprintf(err, err_size, "position 1: the selector is empty");
        return NULL;
    }
    struct selector_node *root = parse_or(&p);
    if (root && !p.failed && p.kind != TOKEN_END) {
        char buf[64];
        parser_fail(&p, p.start, "unexpected %s after a complete selector",
                    token_text(&p, buf, sizeof(buf)));
    }
    free(p.string);
    if (p.failed || !root) {
        node_free(root);
        if (!p.failed)
            snprintf(err, err_size, "out of memory");
        return NULL;
    }
    struct selector *selector = malloc(sizeof(*selector));
    if (!selector) {
        node_free(root);
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    selector->root = root;
    return selector;
}

void selector_free(struct selector *selector)
{
    if (!selector)
        return;
    node_free(selector->root);
    free(selector);
}

/* ---- evaluation -------------------------------------------------------------------- */

struct evaluation {
    selector_lookup_fn lookup;
    void *opaque;
};

static const struct selector_value null_value = {.type = SELECTOR_NULL};

/* A string that is wholly a number (as ActiveMQ reads STOMP header values). */
static bool string_number(const struct selector_value *v, double *out)
{
    if (v->string_len == 0 || v->string_len > 64)
        return false;
    char buf[65];
    memcpy(buf, v->string, v->string_len);
    buf[v->string_len] = '\0';
    char *end = NULL;
    errno = 0;
    double d = strtod(buf, &end);
    if (end == buf || *end != '\0' || errno == ERANGE || !isfinite(d) ||
        isspace((unsigned char)buf[0]))
        return false;
    *out = d;
    return true;
}

static bool as_number(const struct selector_value *v, double *out)
{
    if (v->type == SELECTOR_NUMBER) {
        *out = v->number;
        return true;
    }
    return v->type == SELECTOR_STRING && string_number(v, out);
}

static bool as_boolean(const struct selector_value *v, bool *out)
{
    if (v->type == SELECTOR_BOOLEAN) {
        *out = v->boolean;
        return true;
    }
    if (v->type != SELECTOR_STRING)
        return false;
    if (v->string_len == 4 && strncasecmp(v->string, "true", 4) == 0)
        *out = true;
    else if (v->string_len == 5 && strncasecmp(v->string, "false", 5) == 0)
        *out = false;
    else
        return false;
    return true;
}

static struct selector_value truth(bool b)
{
    return (struct selector_value){.type = SELECTOR_BOOLEAN, .boolean = b};
}

static struct selector_value number_value(double d)
{
    return (struct selector_value){.type = SELECTOR_NUMBER, .number = d};
}

static struct selector_value evaluate(const struct selector_node *node, const struct evaluation *e);

/* = and <>: -1 when the two do not compare (UNKNOWN), else 1 if equal, 0 if not. */
static int values_equal(const struct selector_value *a, const struct selector_value *b)
{
    if (a->type == SELECTOR_NULL || b->type == SELECTOR_NULL)
        return -1;
    double x, y;
    bool p, q;
    if (a->type == SELECTOR_STRING && b->type == SELECTOR_STRING)
        return a->string_len == b->string_len && memcmp(a->string, b->string, a->string_len) == 0;
    if ((a->type == SELECTOR_NUMBER || b->type == SELECTOR_NUMBER) && as_number(a, &x) &&
        as_number(b, &y))
        return x == y;
    if ((a->type == SELECTOR_BOOLEAN || b->type == SELECTOR_BOOLEAN) && as_boolean(a, &p) &&
        as_boolean(b, &q))
        return p == q;
    return -1;
}

static struct selector_value compare(enum node_kind kind, const struct selector_value *a,
                                     const struct selector_value *b)
{
    if (kind == NODE_EQUAL || kind == NODE_NOT_EQUAL) {
        int equal = values_equal(a, b);
        if (equal < 0)
            return null_value;
        return truth(kind == NODE_EQUAL ? equal == 1 : equal == 0);
    }
    double x, y;
    if (a->type == SELECTOR_NULL || b->type == SELECTOR_NULL || !as_number(a, &x) ||
        !as_number(b, &y))
        return null_value; /* ordering is for numbers only */
    switch (kind) {
    case NODE_LESS: return truth(x < y);
    case NODE_LESS_EQUAL: return truth(x <= y);
    case NODE_GREATER: return truth(x > y);
    default: return truth(x >= y);
    }
}

static struct selector_value arithmetic(enum node_kind kind, const struct selector_value *a,
                                        const struct selector_value *b)
{
    double x, y;
    if (!as_number(a, &x) || !as_number(b, &y))
        return null_value;
    switch (kind) {
    case NODE_ADD: return number_value(x + y);
    case NODE_SUBTRACT: return number_value(x - y);
    case NODE_MULTIPLY: return number_value(x * y);
    default: return y == 0 ? null_value : number_value(x / y);
    }
}

/* SQL LIKE: '%' any run, '_' one character, `escape` makes the next literal. */
static bool like_match(const char *s, size_t s_len, const char *pattern, int escape)
{
    size_t si = 0, pi = 0, star_p = (size_t)-1, star_s = 0;
    size_t p_len = strlen(pattern);
    while (si < s_len) {
        if (pi < p_len) {
            int c = (unsigned char)pattern[pi];
            if (c == escape && pi + 1 < p_len) {
                if (pattern[pi + 1] == s[si]) {
                    pi += 2;
                    si++;
                    continue;
                }
            } else if (c == '%') {
                star_p = pi++;
                star_s = si;
                continue;
            } else if (c == '_' || c == (unsigned char)s[si]) {
                pi++;
                si++;
                continue;
            }
        }
        if (star_p == (size_t)-1)
            return false;
        pi = star_p + 1;
        si = ++star_s;
    }
    while (pi < p_len && pattern[pi] == '%' && (int)'%' != escape)
        pi++;
    return pi == p_len;
}

static struct selector_value evaluate(const struct selector_node *node, const struct evaluation *e)
{
    struct selector_value a, b, c;
    switch (node->kind) {
    case NODE_LITERAL: return node->literal;
    case NODE_IDENTIFIER:
        if (e->lookup && e->lookup(e->opaque, node->text, &a))
            return a;
        return null_value;
    case NODE_NOT: {
        bool v;
        a = evaluate(node->left, e);
        return as_boolean(&a, &v) ? truth(!v) : null_value;
    }
    case NODE_NEGATE: {
        double x;
        a = evaluate(node->left, e);
        return as_number(&a, &x) ? number_value(-x) : null_value;
    }
    case NODE_AND:
    case NODE_OR: {
        bool is_and = node->kind == NODE_AND;
        bool x, y;
        a = evaluate(node->left, e);
        bool known_a = as_boolean(&a, &x);
        if (known_a && x != is_and)
            return truth(x); /* FALSE AND ..., TRUE OR ... */
        b = evaluate(node->right, e);
        bool known_b = as_boolean(&b, &y);
        if (known_b && y != is_and)
            return truth(y);
        if (known_a && known_b)
            return truth(x); /* both TRUE (AND) or both FALSE (OR) */
        return null_value;
    }
    case NODE_EQUAL:
    case NODE_NOT_EQUAL:
    case NODE_LESS:
    case NODE_LESS_EQUAL:
    case NODE_GREATER:
    case NODE_GREATER_EQUAL:
        a = evaluate(node->left, e);
        b = evaluate(node->right, e);
        return compare(node->kind, &a, &b);
    case NODE_ADD:
    case NODE_SUBTRACT:
    case NODE_MULTIPLY:
    case NODE_DIVIDE:
        a = evaluate(node->left, e);
        b = evaluate(node->right, e);
        return arithmetic(node->kind, &a, &b);
    case NODE_BETWEEN: {
        double x, low, high;
        a = evaluate(node->left, e);
        b = evaluate(node->right, e);
        c = evaluate(node->third, e);
        if (!as_number(&a, &x) || !as_number(&b, &low) || !as_number(&c, &high))
            return null_value;
        bool inside = x >= low && x <= high;
        return truth(node->negated ? !inside : inside);
    }
    case NODE_IN: {
        a = evaluate(node->left, e);
        if (a.type == SELECTOR_NULL)
            return null_value;
        for (size_t i = 0; i < node->list_count; i++)
            if (values_equal(&a, &node->list[i]) == 1)
                return truth(!node->negated);
        return truth(node->negated);
    }
    case NODE_LIKE:
        a = evaluate(node->left, e);
        if (a.type != SELECTOR_STRING)
            return null_value;
        return truth(like_match(a.string, a.string_len, node->text, node->escape) != node->negated);
    case NODE_IS_NULL:
        a = evaluate(node->left, e);
        return truth((a.type == SELECTOR_NULL) != node->negated);
    }
    return null_value;
}

bool selector_matches(const struct selector *selector, selector_lookup_fn lookup, void *opaque)
{
    struct evaluation e = {lookup, opaque};
    struct selector_value v = evaluate(selector->root, &e);
    bool b;
    return as_boolean(&v, &b) && b;
}
