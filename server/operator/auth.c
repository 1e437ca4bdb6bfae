/* Tokens file: parsing and constant-time checking of bearer tokens. */
#include "vpp/auth.h"
#include "vpp/error.h"
#include "vpp/file.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct {
	char name[64];
	vpp_role role;
	unsigned char hash[32];
} entry;

struct vpp_tokens {
	entry *v;
	size_t n;
};

static int unhex(const char *s, unsigned char *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi = isxdigit((unsigned char)s[2 * i]) ? s[2 * i] : -1;
		int lo = isxdigit((unsigned char)s[2 * i + 1]) ? s[2 * i + 1] : -1;
		if (hi < 0 || lo < 0)
			return VPP_EINVAL;
		hi = isdigit(hi) ? hi - '0' : tolower(hi) - 'a' + 10;
		lo = isdigit(lo) ? lo - '0' : tolower(lo) - 'a' + 10;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return s[2 * n] == 0 ? 0 : VPP_EINVAL;
}

int vpp_tokens_parse(const char *text, vpp_tokens **ret, char *err, size_t errlen)
{
	vpp_tokens *t = calloc(1, sizeof(*t));
	if (!t)
		return VPP_ENOMEM;
	char *copy = strdup(text), *save = NULL;
	if (!copy) {
		free(t);
		return VPP_ENOMEM;
	}
	int lineno = 0, rv = 0;
	char *p = copy;
	while (p && *p) {
		char *line = p, *nl = strchr(p, '\n');
		if (nl)
			*nl = 0;
		p = nl ? nl + 1 : NULL;
		lineno++;
		char *hash_at = strchr(line, '#');
		if (hash_at)
			*hash_at = 0;
		char *name = strtok_r(line, " \t\r", &save);
		if (!name)
			continue;
		char *role = strtok_r(NULL, " \t\r", &save);
		char *hash = strtok_r(NULL, " \t\r", &save);
		char *extra = strtok_r(NULL, " \t\r", &save);
		entry e;
		memset(&e, 0, sizeof(e));
		if (!role || !hash || extra) {
			snprintf(err, errlen, "line %d: expected 'name role sha256:HEX'", lineno);
			rv = VPP_EINVAL;
			break;
		}
		if (strlen(name) >= sizeof(e.name)) {
			snprintf(err, errlen, "line %d: name longer than 63 characters", lineno);
			rv = VPP_EINVAL;
			break;
		}
		if (strcasecmp(role, "operator") == 0)
			e.role = VPP_ROLE_OPERATOR;
		else if (strcasecmp(role, "viewer") == 0)
			e.role = VPP_ROLE_VIEWER;
		else {
			snprintf(err, errlen, "line %d: role must be operator or viewer, not '%.32s'",
				 lineno, role);
			rv = VPP_EINVAL;
			break;
		}
		if (strncmp(hash, "sha256:", 7) != 0 || strlen(hash + 7) != 64 ||
		    unhex(hash + 7, e.hash, 32) != 0) {
			snprintf(err, errlen, "line %d: hash must be sha256: and 64 hex digits "
					      "(the token itself is never stored)",
				 lineno);
			rv = VPP_EINVAL;
			break;
		}
		snprintf(e.name, sizeof(e.name), "%s", name);
		entry *nv = realloc(t->v, (t->n + 1) * sizeof(*nv));
		if (!nv) {
			rv = VPP_ENOMEM;
			break;
		}
		t->v = nv;
		t->v[t->n++] = e;
	}
	free(copy);
	if (rv) {
		vpp_tokens_free(t);
		return rv;
	}
	*ret = t;
	return 0;
}

/* A tokens file larger than this is not one. */
#define TOKENS_FILE_MAX (1 << 20)

int vpp_tokens_load(const char *path, vpp_tokens **ret, char *err, size_t errlen)
{
	/* A pipe is fine too: a secret handed over as <(vault read ...). */
	char *buf, inner[200];
	size_t n;
	int rv = vpp_file_read_small(path, TOKENS_FILE_MAX, &buf, &n, inner, sizeof(inner));
	if (rv != 0) {
		if (rv == VPP_EINVAL)
			snprintf(err, errlen, "%s: %s", path, inner);
		return rv;
	}
	vpp_tokens *t = NULL;
	rv = vpp_tokens_parse(buf, &t, inner, sizeof(inner));
	OPENSSL_cleanse(buf, n);
	free(buf);
	if (rv == VPP_EINVAL)
		snprintf(err, errlen, "%s: %s", path, inner);
	if (rv == 0 && vpp_tokens_count(t) == 0) {
		/* Every call would be refused without a word: a mistake. */
		vpp_tokens_free(t);
		snprintf(err, errlen, "%s: no tokens in it", path);
		return VPP_EINVAL;
	}
	if (rv == 0)
		*ret = t;
	return rv;
}

void vpp_tokens_free(vpp_tokens *t)
{
	if (!t)
		return;
	OPENSSL_cleanse(t->v, t->n * sizeof(*t->v));
	free(t->v);
	free(t);
}

size_t vpp_tokens_count(const vpp_tokens *t)
{
	return t ? t->n : 0;
}

vpp_role vpp_tokens_check(const vpp_tokens *t, const char *authorization, const char **name)
{
	if (!t || !authorization || strncasecmp(authorization, "bearer ", 7) != 0)
		return VPP_ROLE_NONE;
	const char *tok = authorization + 7;
	while (*tok == ' ')
		tok++;
	if (!*tok)
		return VPP_ROLE_NONE;
	unsigned char h[32];
	unsigned int hl = 0;
	if (EVP_Digest(tok, strlen(tok), h, &hl, EVP_sha256(), NULL) != 1 || hl != 32)
		return VPP_ROLE_NONE;
	/* Every entry is compared, in constant time, whatever matches. */
	vpp_role role = VPP_ROLE_NONE;
	for (size_t i = 0; i < t->n; i++) {
		if (CRYPTO_memcmp(h, t->v[i].hash, 32) == 0 && role == VPP_ROLE_NONE) {
			role = t->v[i].role;
			*name = t->v[i].name;
		}
	}
	return role;
}
