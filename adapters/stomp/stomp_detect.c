/* SPDX-License-Identifier: Apache-2.0 */
/* stomp_detect.c -- the STOMP first-bytes detector: a STOMP client's first
 * frame is CONNECT or STOMP (STOMP 1.2 §Connecting), possibly after end of
 * lines (heart-beats are allowed before any frame). The command ends at
 * "\n" or "\r\n". */
#include "stomp_detect.h"

#include <string.h>

/* Does `bytes` (len of them) start with the command line `command`? */
static enum adapter_detect stomp_detect_command(const unsigned char *bytes, size_t len,
                                                const char *command)
{
    size_t command_len = strlen(command);
    size_t compare = len < command_len ? len : command_len;
    if (memcmp(bytes, command, compare) != 0)
        return ADAPTER_DETECT_NO;
    if (len <= command_len)
        return ADAPTER_DETECT_MORE;
    unsigned char next = bytes[command_len];
    if (next == '\n')
        return ADAPTER_DETECT_YES;
    if (next != '\r')
        return ADAPTER_DETECT_NO;
    if (len == command_len + 1)
        return ADAPTER_DETECT_MORE;
    return bytes[command_len + 1] == '\n' ? ADAPTER_DETECT_YES : ADAPTER_DETECT_NO;
}

enum adapter_detect stomp_detect(const unsigned char *bytes, size_t len)
{
    size_t start = 0;
    while (start < len && (bytes[start] == '\n' || bytes[start] == '\r'))
        start++;
    if (start == len)
        return ADAPTER_DETECT_MORE;
    enum adapter_detect connect = stomp_detect_command(bytes + start, len - start, "CONNECT");
    if (connect != ADAPTER_DETECT_NO)
        return connect;
    return stomp_detect_command(bytes + start, len - start, "STOMP");
}
