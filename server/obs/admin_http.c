/* HTTP/1.x request-head parser for the admin endpoint. It accepts the small
 * subset a scraper or a health checker sends (a request line and header
 * fields) and is strict elsewhere: anything odd is a 400, because nothing
 * legitimate talks to this port in an odd way. */
#include "admin_int.h"
#include "vpp/error.h"

#include <string.h>
#include <strings.h>

static int is_tchar(unsigned char ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return 1;
	return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* Visible ASCII, space, tab and obs-text (bytes >= 0x80) may appear in
 * header values; other control characters never appear in a real request. */
static int is_field_char(unsigned char ch)
{
	return ch == '\t' || ch >= 0x20 ? ch != 0x7f : 0;
}

/* True when |len| bytes at |v| equal the token |tok|, ignoring case. */
static int token_eq(const char *v, size_t len, const char *tok)
{
	return strlen(tok) == len && strncasecmp(v, tok, len) == 0;
}

/* Applies the comma-separated options of a Connection header. */
static void parse_connection(const char *v, size_t len, vpp__http_req *req)
{
	size_t i = 0;
	while (i < len) {
		while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t start = i;
		while (i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t')
			i++;
		if (token_eq(v + start, i - start, "close"))
			req->keep_alive = 0;
		else if (token_eq(v + start, i - start, "keep-alive"))
			req->keep_alive = 1;
	}
}

static int parse_content_length(const char *v, size_t len, vpp__http_req *req)
{
	if (len == 0 || len > 18)
		return VPP_EPROTO;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return VPP_EPROTO;
		if (v[i] != '0')
			req->has_body = 1;
	}
	return 0;
}

/* Parses "METHOD SP target SP HTTP/1.x" (|len| bytes, without CRLF). */
static int parse_request_line(const char *p, size_t len, vpp__http_req *req)
{
	size_t i = 0;
	while (i < len && is_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i >= len || p[i] != ' ')
		return VPP_EPROTO;
	req->method = p;
	req->method_len = i++;
	size_t t = i;
	while (i < len && (unsigned char)p[i] > 0x20 && (unsigned char)p[i] < 0x7f)
		i++;
	if (i == t || i >= len || p[i] != ' ')
		return VPP_EPROTO;
	req->path = p + t;
	const char *q = memchr(p + t, '?', i - t);
	req->path_len = q ? (size_t)(q - (p + t)) : i - t;
	i++;
	if (len - i != 8 || memcmp(p + i, "HTTP/1.", 7) != 0)
		return VPP_EPROTO;
	if (p[i + 7] != '0' && p[i + 7] != '1')
		return VPP_EPROTO;
	req->minor = p[i + 7] - '0';
	req->keep_alive = req->minor == 1;
	return 0;
}

/* Parses one "name: value" field (|len| bytes, without CRLF). */
static int parse_field(const char *p, size_t len, vpp__http_req *req)
{
	size_t i = 0;
	while (i < len && is_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i >= len || p[i] != ':')
		return VPP_EPROTO;
	size_t nlen = i++;
	while (i < len && (p[i] == ' ' || p[i] == '\t'))
		i++;
	size_t end = len;
	while (end > i && (p[end - 1] == ' ' || p[end - 1] == '\t'))
		end--;
	const char *v = p + i;
	size_t vlen = end - i;
	if (token_eq(p, nlen, "connection"))
		parse_connection(v, vlen, req);
	else if (token_eq(p, nlen, "content-length"))
		return parse_content_length(v, vlen, req);
	else if (token_eq(p, nlen, "transfer-encoding"))
		req->has_body = 1;
	return 0;
}

int vpp__http_parse(const char *buf, size_t len, size_t max, vpp__http_req *req)
{
	vpp__http_req r;
	memset(&r, 0, sizeof(r));
	size_t start = 0;
	/* RFC 9112 2.2: ignore empty lines before the request line. */
	while (start + 1 < len && buf[start] == '\r' && buf[start + 1] == '\n')
		start += 2;
	/* Reject garbage (e.g. a TLS ClientHello) at once instead of waiting for
	 * a head that never comes. */
	for (size_t i = start; i < len; i++) {
		unsigned char ch = (unsigned char)buf[i];
		if (ch != '\r' && ch != '\n' && !is_field_char(ch))
			return VPP_EPROTO;
		/* A bare LF or CR ends nothing we accept: refuse now, not at
		 * the read timeout. */
		if ((ch == '\n' && (i == start || buf[i - 1] != '\r')) ||
		    (ch == '\r' && i + 1 < len && buf[i + 1] != '\n'))
			return VPP_EPROTO;
	}
	const char *end = len - start >= 4 ? memmem(buf + start, len - start, "\r\n\r\n", 4) : NULL;
	if (!end)
		return len >= max ? VPP_ETOOBIG : VPP_EAGAIN;
	const char *p = buf + start, *stop = end + 2;
	int first = 1, rv;
	while (p < stop) {
		const char *eol = memmem(p, (size_t)(stop - p), "\r\n", 2);
		/* A bare CR or LF inside a line is a smuggling vector: refuse. */
		if (memchr(p, '\n', (size_t)(eol - p)) || memchr(p, '\r', (size_t)(eol - p)))
			return VPP_EPROTO;
		if (first)
			rv = parse_request_line(p, (size_t)(eol - p), &r);
		else
			rv = parse_field(p, (size_t)(eol - p), &r);
		if (rv != 0)
			return rv;
		first = 0;
		p = eol + 2;
	}
	r.len = (size_t)(end + 4 - buf);
	*req = r;
	return 0;
}
