/* SPDX-License-Identifier: Apache-2.0 */
/* amqp_detect.c -- the AMQP 1.0 first-bytes detector (AMQP 1.0 part 2
 * §2.2 protocol header, part 5 §5.3.1 SASL layer): 8 bytes "AMQP", a
 * protocol id, then major 1, minor 0, revision 0. Proton's driver reads the
 * same bytes again: the detector only looks. */
#include "amqp_detect.h"

#define AMQP_HEADER_LEN 8
#define AMQP_ID_PLAIN 0
#define AMQP_ID_TLS 2 /* claimed so the adapter refuses it clearly (no in-band TLS) */
#define AMQP_ID_SASL 3

enum adapter_detect amqp_detect(const unsigned char *bytes, size_t len)
{
    static const unsigned char magic[4] = {'A', 'M', 'Q', 'P'};
    for (size_t i = 0; i < len && i < AMQP_HEADER_LEN; i++) {
        unsigned char byte = bytes[i];
        bool ok;
        switch (i) {
        case 0:
        case 1:
        case 2:
        case 3: ok = byte == magic[i]; break;
        case 4: ok = byte == AMQP_ID_PLAIN || byte == AMQP_ID_TLS || byte == AMQP_ID_SASL; break;
        case 5: ok = byte == 1; break;  /* major: 0-9-1 has 0 here */
        default: ok = byte == 0; break; /* minor, revision */
        }
        if (!ok)
            return ADAPTER_DETECT_NO;
    }
    return len >= AMQP_HEADER_LEN ? ADAPTER_DETECT_YES : ADAPTER_DETECT_MORE;
}
