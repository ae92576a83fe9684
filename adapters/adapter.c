/* SPDX-License-Identifier: Apache-2.0 */
/* adapter.c -- how much output a client connection may hold before its
 * deliveries stop (adapter_output_high). The transport under a connection
 * is transport.c; what every adapter does alike with its connections is the
 * adapter base, connection.c. */
#include "adapter.h"

size_t adapter_output_high(uint64_t max_frame_size)
{
    uint64_t high = ADAPTER_OUTPUT_HIGH_FRAMES * max_frame_size;
    if (high > ADAPTER_OUTPUT_HIGH_MAX)
        high = ADAPTER_OUTPUT_HIGH_MAX;
    return high > ADAPTER_OUTPUT_HIGH_MIN ? (size_t)high : (size_t)ADAPTER_OUTPUT_HIGH_MIN;
}
