#include "vpp/log.h"
#include "vpp/error.h"
#include "vpp/text.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

int vpp__log_min_level = VPP_LOG_INFO;

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

void vpp_log_set_level(vpp_log_level level)
{
	vpp__log_min_level = (int)level;
}

int vpp_log_level_parse(const char *s, vpp_log_level *ret)
{
	for (int i = 0; i <= VPP_LOG_OFF; i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*ret = (vpp_log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "warning") == 0) {
		*ret = VPP_LOG_WARN;
		return 0;
	}
	return VPP_EINVAL;
}

/* Appends |s| to |out| as the inside of a JSON string; returns the new length,
 * never more than |cap| - 1. */
static size_t json_escape(char *out, size_t len, size_t cap, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	for (; *s && len + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[len++] = '\\';
			out[len++] = (char)c;
		} else if (c == '\n') {
			out[len++] = '\\';
			out[len++] = 'n';
		} else if (c < 0x20 || c == 0x7f) {
			memcpy(out + len, "\\u00", 4);
			out[len + 4] = hex[c >> 4];
			out[len + 5] = hex[c & 15];
			len += 6;
		} else if (c < 0x80) {
			out[len++] = (char)c;
		} else {
			/* A log line stays valid UTF-8 (and JSON) whatever a peer
			 * sent: a byte that is not part of a character is U+FFFD. */
			size_t n = vpp_utf8_char_len(s, strnlen(s, 4));
			if (n == 0) {
				memcpy(out + len, "\\ufffd", 6);
				len += 6;
			} else {
				memcpy(out + len, s, n);
				len += n;
				s += n - 1;
			}
		}
	}
	return len;
}

void vpp__log_emit(vpp_log_level level, const char *comp, const char *fmt, ...)
{
	char msg[2048], line[4608];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	gmtime_r(&ts.tv_sec, &tm);
	int n = snprintf(line, sizeof(line),
			 "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\","
			 "\"comp\":\"",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, ts.tv_nsec / 1000000, level_names[level]);
	size_t len = (size_t)n;
	len = json_escape(line, len, sizeof(line) - 16, comp);
	memcpy(line + len, "\",\"msg\":\"", 9);
	len += 9;
	len = json_escape(line, len, sizeof(line) - 4, msg);
	memcpy(line + len, "\"}\n", 3);
	len += 3;
	/* One write(2) per event so that lines from threads never interleave. */
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

bool vpp_log_limit_take(vpp_log_limit *l, int64_t now_ms, uint32_t burst, int64_t window_ms,
			uint32_t *suppressed)
{
	int64_t start = atomic_load(&l->window_start_ms);
	if (now_ms - start >= window_ms &&
	    atomic_compare_exchange_strong(&l->window_start_ms, &start, now_ms))
		atomic_store(&l->in_window, 0);
	if (atomic_fetch_add(&l->in_window, 1) < burst) {
		*suppressed = atomic_exchange(&l->suppressed, 0);
		return true;
	}
	atomic_fetch_add(&l->suppressed, 1);
	return false;
}
