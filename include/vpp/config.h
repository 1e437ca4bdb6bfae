/* Configuration as one declarative table (name, type, bounds, default, help)
 * read from, in increasing precedence: defaults, an optional INI file, VPP_*
 * environment variables and command-line flags. The same table prints
 * --help. Each value is validated; the first invalid one is reported naming
 * the setting and where it came from.
 *
 * Option "device-port" is set by --device-port=N or --device-port N, by
 * VPP_DEVICE_PORT, or in the INI file by `device-port = N`,
 * `device_port = N`, or `port = N` in a [device] section. */
#ifndef VPP_CONFIG_H
#define VPP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
	VPP_CFG_INT,    /* int64_t, within [min, max] */
	VPP_CFG_DOUBLE, /* double, finite, within [min, max] */
	VPP_CFG_STRING, /* char *, malloc'd; NULL when the default is NULL */
	VPP_CFG_BOOL,   /* bool: true/false, yes/no, on/off, 1/0 */
} vpp_config_type;

typedef struct {
	const char *name; /* lower-case, words separated by '-' */
	vpp_config_type type;
	size_t offset; /* offsetof(the target struct, field) */
	double min, max;
	const char *def; /* default, as text; NULL for an unset string */
	const char *help;
	bool no_env; /* not read from VPP_<NAME> (a name another program owns) */
} vpp_config_opt;

/* Name of the option that names the INI file; when present in the table it
 * is read first (from flags or environment) and the file is loaded. */
#define VPP_CONFIG_FILE_OPT "config"

/* Fills |target| from the table |opts| (|n| entries) and |argc|/|argv|
 * (argv[0] is skipped; arguments that do not start with "--" are returned
 * as positional arguments: their indexes in |argv| are stored in |pos|, up to
 * |pos_cap|, and their count in |*npos|). "--help" and "-h" set |*help|.
 * Returns 0, or VPP_EINVAL with a message in |err|. On failure |target| may
 * be partly filled: release it with vpp_config_free(). */
int vpp_config_parse(const vpp_config_opt *opts, size_t n, void *target, int argc, char **argv,
		     int *pos, int pos_cap, int *npos, bool *help, char *err, size_t errlen);

/* Sets one option |name| from text |value|; |origin| names where it came from
 * in error messages. Returns 0, VPP_ENOENT (unknown name) or VPP_EINVAL. */
int vpp_config_set(const vpp_config_opt *opts, size_t n, void *target, const char *name,
		   const char *value, const char *origin, char *err, size_t errlen);

/* Prints one line per option: flag, environment variable, default, bounds
 * and help. */
void vpp_config_print_help(const vpp_config_opt *opts, size_t n, FILE *out);

/* Frees the strings of |target|. Accepts a partly filled target. */
void vpp_config_free(const vpp_config_opt *opts, size_t n, void *target);

#endif
