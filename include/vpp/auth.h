/* Operator authentication: bearer tokens from a tokens file, stored as
 * SHA-256 hashes, each with a role. One line per token:
 *
 *   # name   role      hash
 *   alice    operator  sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
 *   grafana  viewer    sha256:...
 *
 * Make a hash with `printf %s "$TOKEN" | sha256sum`. Pure apart from file
 * reading; thread-safe once loaded. */
#ifndef VPP_AUTH_H
#define VPP_AUTH_H

#include <stddef.h>

typedef enum {
	VPP_ROLE_NONE = 0,
	VPP_ROLE_VIEWER = 1,   /* read fleet status and devices */
	VPP_ROLE_OPERATOR = 2, /* also command setpoints */
} vpp_role;

typedef struct vpp_tokens vpp_tokens;

/* Parses tokens file text |text|. Returns 0, VPP_EINVAL with the line
 * number and reason in |err|, or VPP_ENOMEM. */
int vpp_tokens_parse(const char *text, vpp_tokens **ret, char *err, size_t errlen);
/* Reads and parses the file at |path|. */
int vpp_tokens_load(const char *path, vpp_tokens **ret, char *err, size_t errlen);
void vpp_tokens_free(vpp_tokens *t);
size_t vpp_tokens_count(const vpp_tokens *t);

/* Checks an `authorization` header value ("Bearer <token>"). Returns the
 * token's role and sets |*name| (owned by |t|), or VPP_ROLE_NONE. */
vpp_role vpp_tokens_check(const vpp_tokens *t, const char *authorization, const char **name);

#endif
