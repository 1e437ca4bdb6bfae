/* A minimal JSON writer for vppctl --json: objects, arrays, strings,
 * numbers (shortest text that reads back to the same double) and booleans.
 * Keys and values are escaped; non-finite numbers become null. */
#include "ctl_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void vpp__ctl_json_init(vpp__ctl_json *j)
{
	memset(j, 0, sizeof(*j));
}

void vpp__ctl_json_free(vpp__ctl_json *j)
{
	free(j->buf);
	memset(j, 0, sizeof(*j));
}

static void put(vpp__ctl_json *j, const char *s, size_t n)
{
	if (j->oom)
		return;
	if (j->len + n + 1 > j->cap) {
		size_t cap = j->cap ? j->cap : 256;
		while (cap < j->len + n + 1)
			cap *= 2;
		char *b = realloc(j->buf, cap);
		if (!b) {
			j->oom = true;
			return;
		}
		j->buf = b;
		j->cap = cap;
	}
	memcpy(j->buf + j->len, s, n);
	j->len += n;
	j->buf[j->len] = 0;
}

static void puts_(vpp__ctl_json *j, const char *s)
{
	put(j, s, strlen(s));
}

static void put_string(vpp__ctl_json *j, const char *s)
{
	put(j, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[8];
		switch (*p) {
		case '"':
			puts_(j, "\\\"");
			break;
		case '\\':
			puts_(j, "\\\\");
			break;
		case '\n':
			puts_(j, "\\n");
			break;
		case '\r':
			puts_(j, "\\r");
			break;
		case '\t':
			puts_(j, "\\t");
			break;
		default:
			if (*p < 0x20) {
				snprintf(esc, sizeof(esc), "\\u%04x", *p);
				puts_(j, esc);
			} else {
				put(j, (const char *)p, 1);
			}
		}
	}
	put(j, "\"", 1);
}

/* The comma and key before a value. */
static void lead(vpp__ctl_json *j, const char *key)
{
	if (j->need_comma)
		put(j, ",", 1);
	if (key) {
		put_string(j, key);
		put(j, ":", 1);
	}
	j->need_comma = true;
}

void vpp__ctl_json_begin(vpp__ctl_json *j, const char *key)
{
	lead(j, key);
	put(j, "{", 1);
	j->need_comma = false;
}

void vpp__ctl_json_end(vpp__ctl_json *j)
{
	put(j, "}", 1);
	j->need_comma = true;
}

void vpp__ctl_json_begin_array(vpp__ctl_json *j, const char *key)
{
	lead(j, key);
	put(j, "[", 1);
	j->need_comma = false;
}

void vpp__ctl_json_end_array(vpp__ctl_json *j)
{
	put(j, "]", 1);
	j->need_comma = true;
}

void vpp__ctl_json_str(vpp__ctl_json *j, const char *key, const char *v)
{
	lead(j, key);
	if (v)
		put_string(j, v);
	else
		puts_(j, "null");
}

void vpp__ctl_json_num(vpp__ctl_json *j, const char *key, double v)
{
	lead(j, key);
	if (!isfinite(v)) {
		puts_(j, "null");
		return;
	}
	char b[40];
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(b, sizeof(b), "%.*g", prec, v);
		if (strtod(b, NULL) == v)
			break;
	}
	puts_(j, b);
}

void vpp__ctl_json_int(vpp__ctl_json *j, const char *key, int64_t v)
{
	char b[32];
	lead(j, key);
	snprintf(b, sizeof(b), "%" PRId64, v);
	puts_(j, b);
}

void vpp__ctl_json_bool(vpp__ctl_json *j, const char *key, bool v)
{
	lead(j, key);
	puts_(j, v ? "true" : "false");
}

void vpp__ctl_json_estimate(vpp__ctl_json *j, const char *key, double value, double sigma,
                            double lower, double upper, int64_t as_of_ms)
{
	vpp__ctl_json_begin(j, key);
	vpp__ctl_json_num(j, "value", value);
	vpp__ctl_json_num(j, "sigma", sigma);
	vpp__ctl_json_num(j, "lower", lower);
	vpp__ctl_json_num(j, "upper", upper);
	vpp__ctl_json_int(j, "as_of_ms", as_of_ms);
	vpp__ctl_json_end(j);
}

const char *vpp__ctl_json_text(const vpp__ctl_json *j)
{
	if (j->oom)
		return NULL;
	return j->buf ? j->buf : "";
}
