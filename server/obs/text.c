/* UTF-8 checks and character-boundary truncation (include/vpp/text.h). */
#include "vpp/text.h"

#include <stdint.h>
#include <string.h>

/* Length of the character starting at |p| (at most |left| bytes), or 0
 * when it is not valid UTF-8. */
static size_t char_len(const unsigned char *p, size_t left)
{
	unsigned char c = p[0];
	size_t n;
	uint32_t cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07;
	} else {
		return 0; /* a continuation byte, or 0xc0, 0xc1, 0xf5.. */
	}
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0; /* overlong, past Unicode, or a surrogate */
	return n;
}

bool vpp_utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t left = strlen(s);
	while (left > 0) {
		size_t n = char_len(p, left);
		if (n == 0)
			return false;
		p += n;
		left -= n;
	}
	return true;
}

void vpp_utf8_copy(char *dst, size_t cap, const char *src)
{
	const unsigned char *p = (const unsigned char *)src;
	size_t left = strlen(src), used = 0;
	while (left > 0) {
		size_t n = char_len(p + used, left);
		if (n == 0 || used + n > cap - 1)
			break;
		used += n;
		left -= n;
	}
	memcpy(dst, src, used);
	dst[used] = 0;
}

size_t vpp_utf8_char_len(const char *p, size_t left)
{
	return left ? char_len((const unsigned char *)p, left) : 0;
}

void vpp_text_sanitize(char *dst, size_t cap, const char *src)
{
	const unsigned char *p = (const unsigned char *)src;
	size_t left = strlen(src), used = 0;
	while (left > 0) {
		size_t n = char_len(p, left);
		if (n == 0 || (n == 1 && (*p < 0x20 || *p == 0x7f))) {
			if (used + 1 > cap - 1)
				break;
			dst[used++] = '?';
			n = n ? n : 1;
		} else {
			if (used + n > cap - 1)
				break;
			memcpy(dst + used, p, n);
			used += n;
		}
		p += n;
		left -= n;
	}
	dst[used] = 0;
}
