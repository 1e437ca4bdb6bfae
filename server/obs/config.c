#include "vpp/config.h"
#include "vpp/error.h"
#include "vpp/file.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Compares option names treating '-' and '_' as equal, case-insensitively. */
static int name_eq(const char *a, const char *b)
{
	for (; *a && *b; a++, b++) {
		char ca = *a == '_' ? '-' : (char)tolower((unsigned char)*a);
		char cb = *b == '_' ? '-' : (char)tolower((unsigned char)*b);
		if (ca != cb)
			return 0;
	}
	return *a == *b;
}

static const vpp_config_opt *find(const vpp_config_opt *opts, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (name_eq(opts[i].name, name))
			return &opts[i];
	return NULL;
}

static void env_name(const char *name, char *out, size_t cap)
{
	size_t j = 0;
	for (const char *p = "VPP_"; *p && j + 1 < cap; p++)
		out[j++] = *p;
	for (; *name && j + 1 < cap; name++)
		out[j++] = *name == '-' ? '_' : (char)toupper((unsigned char)*name);
	out[j] = 0;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *yes[] = {"1", "true", "yes", "on"};
	static const char *no[] = {"0", "false", "no", "off"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return VPP_EINVAL;
}

static int set_opt(const vpp_config_opt *o, void *target, const char *value, const char *origin,
		   char *err, size_t errlen)
{
	char *field = (char *)target + o->offset;
	char *end;
	switch (o->type) {
	case VPP_CFG_INT: {
		errno = 0;
		long long v = strtoll(value, &end, 10);
		if (errno || end == value || *end) {
			snprintf(err, errlen, "%s: invalid value '%s' for %s: not an integer",
				 origin, value, o->name);
			return VPP_EINVAL;
		}
		if ((double)v < o->min || (double)v > o->max) {
			snprintf(err, errlen, "%s: invalid value '%s' for %s: must be in [%.0f, %.0f]",
				 origin, value, o->name, o->min, o->max);
			return VPP_EINVAL;
		}
		*(int64_t *)field = v;
		return 0;
	}
	case VPP_CFG_DOUBLE: {
		errno = 0;
		double v = strtod(value, &end);
		if (errno || end == value || *end || !isfinite(v)) {
			snprintf(err, errlen, "%s: invalid value '%s' for %s: not a finite number",
				 origin, value, o->name);
			return VPP_EINVAL;
		}
		if (v < o->min || v > o->max) {
			snprintf(err, errlen, "%s: invalid value '%s' for %s: must be in [%g, %g]",
				 origin, value, o->name, o->min, o->max);
			return VPP_EINVAL;
		}
		*(double *)field = v;
		return 0;
	}
	case VPP_CFG_STRING: {
		char *s = strdup(value);
		if (!s) {
			snprintf(err, errlen, "out of memory");
			return VPP_ENOMEM;
		}
		free(*(char **)field);
		*(char **)field = s;
		return 0;
	}
	case VPP_CFG_BOOL:
		if (parse_bool(value, (bool *)field) != 0) {
			snprintf(err, errlen, "%s: invalid value '%s' for %s: expected true or false",
				 origin, value, o->name);
			return VPP_EINVAL;
		}
		return 0;
	}
	return VPP_EINVAL;
}

int vpp_config_set(const vpp_config_opt *opts, size_t n, void *target, const char *name,
		   const char *value, const char *origin, char *err, size_t errlen)
{
	const vpp_config_opt *o = find(opts, n, name);
	if (!o) {
		snprintf(err, errlen, "%s: unknown setting '%s' (see --help)", origin, name);
		return VPP_ENOENT;
	}
	return set_opt(o, target, value, origin, err, errlen);
}

typedef struct {
	const vpp_config_opt *opts;
	size_t n;
	void *target;
	const char *path;
	char *err;
	size_t errlen;
	int rv;
} ini_ctx;

static int on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
	ini_ctx *c = user;
	if (c->rv)
		return 0;
	char full[256], origin[512];
	if (section && section[0])
		snprintf(full, sizeof(full), "%s-%s", section, name);
	else
		snprintf(full, sizeof(full), "%s", name);
	snprintf(origin, sizeof(origin), "config file %s", c->path);
	/* A key in a section may also be the full option name ([x] x-y = 1). */
	if (section && section[0] && !find(c->opts, c->n, full) && find(c->opts, c->n, name))
		snprintf(full, sizeof(full), "%s", name);
	int rv = vpp_config_set(c->opts, c->n, c->target, full, value, origin, c->err, c->errlen);
	if (rv) {
		c->rv = rv == VPP_ENOENT ? VPP_EINVAL : rv;
		return 0;
	}
	return 1;
}

/* Returns the value of flag |o| in argv, or NULL. */
static const char *flag_value(const vpp_config_opt *o, int argc, char **argv)
{
	const char *found = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2) != 0)
			continue;
		a += 2;
		const char *eq = strchr(a, '=');
		size_t len = eq ? (size_t)(eq - a) : strlen(a);
		char name[128];
		if (len >= sizeof(name))
			continue;
		memcpy(name, a, len);
		name[len] = 0;
		if (!name_eq(name, o->name))
			continue;
		if (eq)
			found = eq + 1;
		else if (i + 1 < argc)
			found = argv[i + 1];
	}
	return found;
}

/* libinih (Debian's build) cuts lines at 200 bytes and reads a directory
 * as an empty file: both would pass silently. The file is read whole
 * (a regular file, or a pipe such as a shell's <(...)), checked, then
 * parsed from memory. */
#define INI_LINE_MAX 200
#define INI_FILE_MAX (1 << 20)

static char *read_ini_file(const char *path, char *err, size_t errlen)
{
	char *buf, why[100];
	size_t n;
	if (vpp_file_read_small(path, INI_FILE_MAX, &buf, &n, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "config file %s: %s", path, why);
		return NULL;
	}
	int line = 1;
	size_t len = 0;
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\n') {
			line++;
			len = 0;
		} else if (++len >= INI_LINE_MAX - 1) {
			snprintf(err, errlen, "config file %s: line %d is longer than %d bytes", path,
				 line, INI_LINE_MAX - 2);
			free(buf);
			return NULL;
		}
	}
	return buf;
}

int vpp_config_parse(const vpp_config_opt *opts, size_t n, void *target, int argc, char **argv,
		     int *pos, int pos_cap, int *npos, bool *help, char *err, size_t errlen)
{
	int rv;
	*help = false;
	*npos = 0;
	for (size_t i = 0; i < n; i++) {
		if (opts[i].def == NULL)
			continue;
		if ((rv = set_opt(&opts[i], target, opts[i].def, "default", err, errlen)) != 0)
			return rv;
	}

	/* The INI file first, so that environment and flags override it. */
	const vpp_config_opt *cfg = find(opts, n, VPP_CONFIG_FILE_OPT);
	if (cfg) {
		char ename[128];
		env_name(cfg->name, ename, sizeof(ename));
		const char *path = flag_value(cfg, argc, argv);
		if (!path)
			path = getenv(ename);
		if (path && path[0]) {
			char *text = read_ini_file(path, err, errlen);
			if (!text)
				return VPP_EINVAL;
			ini_ctx c = {opts, n, target, path, err, errlen, 0};
			int prv = ini_parse_string(text, on_ini_entry, &c);
			free(text);
			if (c.rv)
				return c.rv;
			if (prv < 0) {
				snprintf(err, errlen, "config file %s: out of memory", path);
				return VPP_EINVAL;
			}
			if (prv > 0) {
				snprintf(err, errlen, "config file %s: syntax error on line %d", path,
					 prv);
				return VPP_EINVAL;
			}
		}
	}

	for (size_t i = 0; i < n; i++) {
		char ename[128], origin[160];
		if (opts[i].no_env)
			continue;
		env_name(opts[i].name, ename, sizeof(ename));
		const char *v = getenv(ename);
		if (!v)
			continue;
		snprintf(origin, sizeof(origin), "environment %s", ename);
		if ((rv = set_opt(&opts[i], target, v, origin, err, errlen)) != 0)
			return rv;
	}

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			*help = true;
			continue;
		}
		if (strncmp(a, "--", 2) != 0) {
			if (a[0] == '-' && a[1]) {
				snprintf(err, errlen, "unknown flag '%s' (see --help)", a);
				return VPP_EINVAL;
			}
			if (*npos < pos_cap)
				pos[*npos] = i;
			(*npos)++;
			continue;
		}
		const char *name = a + 2, *eq = strchr(name, '=');
		char nbuf[128];
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		if (len >= sizeof(nbuf)) {
			snprintf(err, errlen, "unknown flag '%s' (see --help)", a);
			return VPP_EINVAL;
		}
		memcpy(nbuf, name, len);
		nbuf[len] = 0;
		const vpp_config_opt *o = find(opts, n, nbuf);
		if (!o) {
			snprintf(err, errlen, "unknown flag '--%s' (see --help)", nbuf);
			return VPP_EINVAL;
		}
		const char *v;
		if (eq) {
			v = eq + 1;
		} else if (o->type == VPP_CFG_BOOL &&
			   (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0 ||
			    parse_bool(argv[i + 1], &(bool){false}) != 0)) {
			v = "true"; /* a bare boolean flag */
		} else if (i + 1 < argc) {
			v = argv[++i];
		} else {
			snprintf(err, errlen, "flag --%s needs a value", o->name);
			return VPP_EINVAL;
		}
		char origin[160];
		snprintf(origin, sizeof(origin), "flag --%s", o->name);
		if ((rv = set_opt(o, target, v, origin, err, errlen)) != 0)
			return rv;
	}
	return 0;
}

void vpp_config_print_help(const vpp_config_opt *opts, size_t n, FILE *out)
{
	static const char *type_names[] = {"INT", "NUM", "STR", "BOOL"};
	for (size_t i = 0; i < n; i++) {
		const vpp_config_opt *o = &opts[i];
		char ename[128], flag[160];
		env_name(o->name, ename, sizeof(ename));
		snprintf(flag, sizeof(flag), "--%s %s", o->name, type_names[o->type]);
		fprintf(out, "  %-34s %s\n", flag, o->help);
		if (o->no_env)
			fprintf(out, "  %-34s no environment variable", "");
		else
			fprintf(out, "  %-34s env %s", "", ename);
		if (o->def)
			fprintf(out, ", default %s", o->def[0] ? o->def : "\"\"");
		if (o->type == VPP_CFG_INT)
			fprintf(out, ", range %.0f..%.0f", o->min, o->max);
		else if (o->type == VPP_CFG_DOUBLE)
			fprintf(out, ", range %g..%g", o->min, o->max);
		fprintf(out, "\n");
	}
}

void vpp_config_free(const vpp_config_opt *opts, size_t n, void *target)
{
	for (size_t i = 0; i < n; i++) {
		if (opts[i].type != VPP_CFG_STRING)
			continue;
		char **f = (char **)((char *)target + opts[i].offset);
		free(*f);
		*f = NULL;
	}
}
