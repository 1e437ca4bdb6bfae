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

/* Length of the UTF-8 character at |p| (reading at most |left| bytes), or 0
 * when it is not valid UTF-8. */
size_t vpp_utf8_char_len(const char *p, size_t left);

/* Copies any bytes |src| into |dst| of |cap| >= 1 bytes as printable UTF-8,
 * for a log or an audit row: control characters and bytes that are not
 * UTF-8 become '?'; cut at a character boundary. */
void vpp_text_sanitize(char *dst, size_t cap, const char *src);

#endif
