/* Internals of the admin HTTP endpoint: the request-head parser, kept pure
 * (a buffer in, a description out) so unit tests and fuzzers call it
 * directly. */
#ifndef VPP_ADMIN_INT_H
#define VPP_ADMIN_INT_H

#include <stddef.h>

typedef struct {
	const char *method; /* points into the parsed buffer, not NUL-terminated */
	size_t method_len;
	const char *path; /* the request target without its query string */
	size_t path_len;
	int minor;      /* HTTP/1.|minor|: 0 or 1 */
	int keep_alive; /* version default, overridden by a Connection header */
	int has_body;   /* Content-Length > 0 or any Transfer-Encoding */
	size_t len;     /* bytes of the head, up to and including the empty line */
} vpp__http_req;

/* Parses the HTTP/1.x request head at the start of |buf| (|len| bytes).
 * Returns 0 and fills |*req| when the head is complete; VPP_EAGAIN when more
 * bytes are needed; VPP_EPROTO when the bytes so far cannot be a valid
 * request (bad request line, header syntax, version other than 1.0/1.1,
 * control characters, bad Content-Length); VPP_ETOOBIG when |len| reached
 * |max| without a complete head. */
int vpp__http_parse(const char *buf, size_t len, size_t max, vpp__http_req *req);

/* process.c: refreshes process_open_fds, process_max_fds and
 * process_resident_memory_bytes (admin thread, before rendering). */
void vpp__process_metrics_update(void);

#endif
