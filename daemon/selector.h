/* SPDX-License-Identifier: Apache-2.0 */
/* selector.h -- JMS message selectors (architecture §13): the SQL-92 subset
 * JMS defines, parsed once per subscription into a small tree and evaluated
 * per message with SQL's three-valued logic.
 *
 * A message is selected when the selector evaluates to TRUE; FALSE and
 * UNKNOWN (a NULL somewhere that decides the outcome) do not select it.
 * Values come from the caller's lookup (header or property by name); a
 * string that looks like a number compares as a number with a number, and
 * "true"/"false" as a boolean with a boolean, as ActiveMQ does for STOMP
 * headers, whose values are all strings.
 *
 * Ownership: selector_parse returns a tree the caller frees with
 * selector_free; it keeps no pointer to the text. Pure: no I/O, no globals. */
#ifndef KBRIDGE_SELECTOR_H
#define KBRIDGE_SELECTOR_H

#include <stdbool.h>
#include <stddef.h>

/* Longest selector text accepted, in bytes, and deepest nesting of
 * parentheses and operators (the parser recurses). */
#define SELECTOR_MAX_LENGTH 4096
#define SELECTOR_MAX_DEPTH 64

struct selector;

enum selector_type {
    SELECTOR_NULL,
    SELECTOR_BOOLEAN,
    SELECTOR_NUMBER,
    SELECTOR_STRING,
};

/* A value from the message (or computed). A string is borrowed: it must stay
 * valid for the selector_eval call that looked it up. */
struct selector_value {
    enum selector_type type;
    bool boolean;
    double number;
    const char *string;
    size_t string_len;
};

/* Fill *out with the value of identifier `name` (as written in the
 * selector, e.g. "color" or "JMSPriority"); false when the message has no
 * such value (it is NULL). */
typedef bool (*selector_lookup_fn)(void *opaque, const char *name, struct selector_value *out);

/* Parse `text`. NULL on a bad selector, with err saying where and why
 * ("position 7: expected a value after '='"; positions count bytes from 1)
 * or "out of memory". */
struct selector *selector_parse(const char *text, char *err, size_t err_size);

/* Does the message whose values `lookup` gives select itself? */
bool selector_matches(const struct selector *selector, selector_lookup_fn lookup, void *opaque);

void selector_free(struct selector *selector);

#endif
