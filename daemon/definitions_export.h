/* SPDX-License-Identifier: Apache-2.0 */
/* definitions_export.h -- a view of the definitions in RabbitMQ's export
 * shape (architecture §11): what GET /api/definitions on the ops listener
 * serves, and what the admin API will. Pure: no I/O. */
#ifndef KBRIDGE_DEFINITIONS_EXPORT_H
#define KBRIDGE_DEFINITIONS_EXPORT_H

#include <stdbool.h>

struct definitions;

/* {"kbridge_version", "ready", "vhosts", "exchanges", "queues", "bindings"}
 * as compact JSON, each array sorted by record key so two nodes with the
 * same view print the same text. Built-in exchanges are left out, as
 * RabbitMQ does; queues carry kbridge's "exclusive" (and "owner") fields.
 * malloc'd (the caller frees), NULL out of memory. */
char *definitions_export_json(const struct definitions *view, bool ready);

#endif
