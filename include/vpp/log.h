/* Structured JSON logging: one event a line, to stderr.
 *
 *   vpp_log(VPP_LOG_WARN, "session", "device=%s handshake failed: %s", id, e);
 *
 * prints {"ts":"2026-11-22T10:00:00.123Z","level":"warn","comp":"session",
 * "msg":"device=... handshake failed: ..."}. The level is checked before
 * the message is formatted. Only the program layer (vppd, handlers, tools)
 * logs; libraries return error codes. Thread-safe. */
#ifndef VPP_LOG_H
#define VPP_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
	VPP_LOG_DEBUG = 0,
	VPP_LOG_INFO = 1,
	VPP_LOG_WARN = 2,
	VPP_LOG_ERROR = 3,
	VPP_LOG_OFF = 4,
} vpp_log_level;

extern int vpp__log_min_level;

void vpp_log_set_level(vpp_log_level level);

/* Parses "debug", "info", "warn", "error" or "off"; returns VPP_EINVAL on
 * anything else, leaving |*ret| unset. */
int vpp_log_level_parse(const char *s, vpp_log_level *ret);

void vpp__log_emit(vpp_log_level level, const char *comp, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define vpp_log_enabled(level) ((int)(level) >= vpp__log_min_level)

#define vpp_log(level, comp, ...)                                              \
	do {                                                                   \
		if (vpp_log_enabled(level))                                    \
			vpp__log_emit(level, comp, __VA_ARGS__);               \
	} while (0)

/* A limit on lines of one kind that peers can cause (refused logins, say):
 * at most |burst| per |window_ms|; the others are counted and reported by
 * the next line let through. Zero-initialised; thread-safe (approximate
 * under contention, which only moves a line or two). */
typedef struct {
	_Atomic int64_t window_start_ms;
	_Atomic uint32_t in_window;
	_Atomic uint32_t suppressed;
} vpp_log_limit;

/* True when this event may be logged; then |*suppressed| is how many were
 * not since the last one that was. */
bool vpp_log_limit_take(vpp_log_limit *l, int64_t now_ms, uint32_t burst, int64_t window_ms,
			uint32_t *suppressed);

#endif
