/* libFuzzer target for the admin endpoint's HTTP/1.x request-head parser
 * (server/obs/admin_http.c), fed as server/obs/admin.c feeds it: the bytes
 * read so far (at most VPP_ADMIN_MAX_REQUEST), and after each parsed head
 * the rest of a pipelined buffer. A parsed head must lie within the bytes
 * given, and any shorter prefix of it must ask for more bytes, never be
 * refused (a request split across reads is still a request). */
#include "../../server/obs/admin_int.h"
#include "vpp/admin.h"
#include "vpp/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const char *buf, size_t len, const vpp__http_req *r)
{
	if (r->len < 4 || r->len > len || memcmp(buf + r->len - 4, "\r\n\r\n", 4) != 0)
		abort();
	if (r->method < buf || r->method + r->method_len > buf + r->len || r->method_len == 0)
		abort();
	if (r->path < buf || r->path + r->path_len > buf + r->len)
		abort();
	if ((r->minor != 0 && r->minor != 1) || (r->keep_alive != 0 && r->keep_alive != 1))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > VPP_ADMIN_MAX_REQUEST)
		size = VPP_ADMIN_MAX_REQUEST;
	/* A copy of exactly |size| bytes: ASan sees any read past it. */
	char *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	size_t off = 0;
	for (int round = 0; round < 16 && off < size; round++) {
		vpp__http_req r;
		int rv = vpp__http_parse(buf + off, size - off, VPP_ADMIN_MAX_REQUEST - off, &r);
		if (rv != 0) {
			if (rv != VPP_EAGAIN && rv != VPP_EPROTO && rv != VPP_ETOOBIG)
				abort();
			break;
		}
		check(buf + off, size - off, &r);
		/* Prefixes of the head, as reads may cut it. */
		size_t cuts[] = {r.len - 1, r.len / 2, r.len > 2 ? r.len - 2 : 0};
		for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
			vpp__http_req q;
			if (cuts[i] == 0)
				continue;
			int prv = vpp__http_parse(buf + off, cuts[i], VPP_ADMIN_MAX_REQUEST, &q);
			if (prv != VPP_EAGAIN)
				abort();
		}
		/* And the head alone parses to the same request. */
		vpp__http_req again;
		if (vpp__http_parse(buf + off, r.len, VPP_ADMIN_MAX_REQUEST, &again) != 0 ||
		    memcmp(&again, &r, sizeof(r)) != 0)
			abort();
		off += r.len;
	}
	free(buf);
	return 0;
}
