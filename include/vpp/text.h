/* Text from the network that goes into the database or the logs: the
 * database's encoding is UTF-8, so every such string is checked, and
 * shortened only at a character boundary. */
#ifndef VPP_TEXT_H
#define VPP_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* True when the NUL-terminated |s| is valid UTF-8: shortest forms only,
 * no surrogates, nothing past U+10FFFF. */
bool vpp_utf8_valid(const char *s);

/* Copies |src| (valid UTF-8) into |dst| of |cap| >= 1 bytes, NUL-terminated,
 * cut before the first character that does not fit whole. */
void vpp_utf8_copy(char *dst, size_t cap, const char *src);

#endif
