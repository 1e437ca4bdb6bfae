/* vppctl internals. args.c, fmt.c, json.c and status.c are pure (no I/O
 * beyond what the caller hands them) and unit tested on their own
 * (tests/unit/test_vppctl.c); rpc.c is the synchronous gRPC wrapper and
 * cmd_*.c are the commands. */
#ifndef VPP_CTL_INT_H
#define VPP_CTL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes, documented in --help. */
enum {
	VPP__CTL_EXIT_OK = 0,
	VPP__CTL_EXIT_ERROR = 1,   /* the server refused or answered an error status */
	VPP__CTL_EXIT_USAGE = 2,   /* bad arguments or unreadable local files */
	VPP__CTL_EXIT_CONNECT = 3, /* cannot connect to vppd */
};

typedef enum {
	VPP__CTL_NONE = 0,
	VPP__CTL_STATUS,
	VPP__CTL_WATCH,
	VPP__CTL_SET,
	VPP__CTL_PREVIEW,
	VPP__CTL_DEVICES,
	VPP__CTL_DEVICE,
	VPP__CTL_HEALTH,
	VPP__CTL_NODES,
	VPP__CTL_DRAIN,   /* node drain <id> */
	VPP__CTL_UNDRAIN, /* node undrain <id> */
} vpp__ctl_cmd;

/* Everything the command line and environment say. Strings point into argv
 * or the environment (not owned). */
typedef struct {
	vpp__ctl_cmd cmd;
	bool help;
	/* connection */
	const char *server; /* HOST:PORT as given */
	char host[256];
	int port;
	const char *ca, *cert, *key, *server_name, *token;
	char token_buf[1024]; /* the token, trimmed */
	bool h2c;
	uint32_t timeout_ms;
	bool json;
	bool verbose;
	/* set / preview (reason: set, node drain) */
	double kw;
	uint32_t valid_for_s;
	double ramp_kw_per_s;
	const char *reason;
	const char *request_id; /* NULL: the set command makes one */
	/* devices / device */
	int state; /* DeviceState value; 0 = all */
	uint32_t limit;
	bool all;
	const char *device_id;
	/* node drain / undrain: a valid node id */
	const char *node_id;
	/* watch */
	uint64_t count; /* 0: until Ctrl-C */
} vpp__ctl_opts;

/* ---- args.c -------------------------------------------------------------- */

/* Parses |argv| (argv[0] skipped) over the defaults and the environment
 * (VPP_SERVER, VPP_CA, VPP_CERT, VPP_KEY, VPP_TOKEN, VPP_H2C) into |o|.
 * Flags go anywhere, as `--name value` or `--name=value`; a positional that
 * looks like a negative number ("-500") is a value, not a flag. Returns 0,
 * or VPP_EINVAL with a one-line reason in |err|. With --help, o->help is set
 * and the rest need not be valid. */
int vpp__ctl_parse(int argc, char **argv, vpp__ctl_opts *o, char *err, size_t errlen);

/* "90s", "15m", "1h", "500ms", "2.5s" or a bare number of seconds. Returns
 * 0 and the duration in ms, or VPP_EINVAL (empty, negative, zero, not
 * finite, unknown unit, over a year). */
int vpp__ctl_parse_duration_ms(const char *s, uint64_t *ret);

/* A power in kW: "1200", "-350.5", "1.2MW", "800kW". Returns 0 or
 * VPP_EINVAL (not a finite number, trailing text, NaN, infinity). */
int vpp__ctl_parse_kw(const char *s, double *ret);

/* "online" -> 1 ... "offline" -> 4; VPP_EINVAL otherwise. */
int vpp__ctl_parse_state(const char *s, int *ret);
/* The lower-case name of a DeviceState value ("unknown" out of range). */
const char *vpp__ctl_state_name(int state);

/* Prints the usage text. */
void vpp__ctl_usage(FILE *out);

/* ---- fmt.c: human-readable numbers ----------------------------------------
 * Each writes a NUL-terminated string into |buf| (|len| bytes, truncating)
 * and returns |buf|. */

/* 1204.34 -> "1,204.3" with |decimals| decimals; NaN/inf -> "n/a". Never
 * prints "-0.0". */
char *vpp__ctl_fmt_num(char *buf, size_t len, double v, int decimals);
/* "1,204.3 kW ±12.1 (90%: 1,184.2–1,224.4)" with |unit| ("kW", "kWh"). */
char *vpp__ctl_fmt_estimate(char *buf, size_t len, double value, double sigma, double lower,
                            double upper, const char *unit);
/* An age in ms: "0.4 s" (under 10 s), "12 s", "3 min" or "90 min" (under
 * 2 h), "5 h" (under 2 days), "3 d"; negative ages (clock skew) print as
 * "0.0 s". */
char *vpp__ctl_fmt_age(char *buf, size_t len, int64_t age_ms);
/* Unix ms as local time "2024-05-01 14:03:07 CEST". */
char *vpp__ctl_fmt_local_time(char *buf, size_t len, int64_t unix_ms);

/* Number of terminal columns |s| (UTF-8) takes: one per code point. */
size_t vpp__ctl_width(const char *s);
/* Writes |s| to |out| padded with spaces to |width| columns (left aligned,
 * or right aligned when |right|). */
void vpp__ctl_pad(FILE *out, const char *s, size_t width, bool right);
/* Writes a table to |out|: a line of the |ncols| |headers|, then |nrows|
 * lines of |cells| (row after row, nrows x ncols strings). Each column is
 * as wide as its widest cell, right aligned where |right| says, two spaces
 * apart; the last one is not padded unless right aligned. Every line
 * starts with |indent|. Writes nothing beyond VPP__CTL_TABLE_MAX_COLS
 * columns. */
#define VPP__CTL_TABLE_MAX_COLS 16
void vpp__ctl_table(FILE *out, const char *indent, size_t ncols, const char *const *headers,
                    const bool *right, const char *const *cells, size_t nrows);

/* ---- json.c: a small JSON writer into a growing buffer ------------------ */

typedef struct {
	char *buf;
	size_t len, cap;
	bool oom;
	bool need_comma; /* a value was just written at this level */
} vpp__ctl_json;

void vpp__ctl_json_init(vpp__ctl_json *j);
void vpp__ctl_json_free(vpp__ctl_json *j);
void vpp__ctl_json_begin(vpp__ctl_json *j, const char *key); /* '{'; |key| NULL at top */
void vpp__ctl_json_end(vpp__ctl_json *j);
void vpp__ctl_json_begin_array(vpp__ctl_json *j, const char *key);
void vpp__ctl_json_end_array(vpp__ctl_json *j);
void vpp__ctl_json_str(vpp__ctl_json *j, const char *key, const char *v); /* NULL -> null */
void vpp__ctl_json_num(vpp__ctl_json *j, const char *key, double v);      /* NaN/inf -> null */
void vpp__ctl_json_int(vpp__ctl_json *j, const char *key, int64_t v);
void vpp__ctl_json_bool(vpp__ctl_json *j, const char *key, bool v);
/* An Estimate object {value, sigma, lower, upper, as_of_ms}. */
void vpp__ctl_json_estimate(vpp__ctl_json *j, const char *key, double value, double sigma,
                            double lower, double upper, int64_t as_of_ms);
/* The text so far ("" when empty); NULL after an allocation failure. */
const char *vpp__ctl_json_text(const vpp__ctl_json *j);

/* ---- status.c: what a gRPC failure means to the user -------------------- */

/* The outcome of one call as rpc.c reports it. */
typedef struct {
	int status;        /* gRPC status code */
	char message[512]; /* the server's message ("" when none) */
	bool connected;    /* the connection was ever ready */
	bool answered;     /* vppd answered this call: the status is its own */
	bool heard;        /* vppd's response headers to this call arrived */
	int conn_err;      /* VPP_E* the connection closed with, 0 if none */
	bool tls;          /* TLS was used */
} vpp__ctl_outcome;

/* A one-line explanation of a failed |oc| for |o| (server address, timeout,
 * command) into |buf|. */
char *vpp__ctl_explain(char *buf, size_t len, const vpp__ctl_outcome *oc, const vpp__ctl_opts *o);
/* The exit code of a failed |oc|: VPP__CTL_EXIT_CONNECT when vppd could
 * not be reached, else VPP__CTL_EXIT_ERROR. */
int vpp__ctl_exit_code(const vpp__ctl_outcome *oc);
/* Prints the failure: the explanation on stderr, and with --json also
 * {"error": {...}} on stdout. Returns the exit code. */
int vpp__ctl_report_failure(const vpp__ctl_outcome *oc, const vpp__ctl_opts *o);

/* ---- rpc.c: one connection, calls run to completion ---------------------- */

typedef struct vpp__ctl_client vpp__ctl_client;

/* Loads TLS files and starts connecting to o->host:o->port. Returns 0,
 * VPP_ETLS (unreadable TLS files), VPP_EINVAL (unresolvable host) or
 * VPP_ENOMEM. */
int vpp__ctl_client_new(const vpp__ctl_opts *o, vpp__ctl_client **ret);
/* Closes the connection and frees everything. Accepts NULL. */
void vpp__ctl_client_free(vpp__ctl_client *c);

/* Unary call of |path| with the packed request |req|; on OK |*resp| is the
 * malloc'd response (caller frees) and |*resp_len| its length. The outcome
 * is always filled. Returns 0 when the status is OK, else VPP_EIO. */
int vpp__ctl_unary(vpp__ctl_client *c, const char *path, const uint8_t *req, size_t len,
                   uint8_t **resp, size_t *resp_len, vpp__ctl_outcome *oc);

/* Server-streaming call: |on_msg| runs for every message; returning
 * non-zero from it ends the call (cancelled, reported as OK). Ctrl-C
 * (SIGINT/SIGTERM) ends it the same way. No deadline. Returns 0 when the
 * call ended OK or was ended by the caller, else VPP_EIO. */
int vpp__ctl_stream(vpp__ctl_client *c, const char *path, const uint8_t *req, size_t len,
                    int (*on_msg)(void *ud, const uint8_t *data, size_t len), void *ud,
                    vpp__ctl_outcome *oc);

/* ---- commands: each returns the process exit code ------------------------ */

int vpp__ctl_cmd_status(vpp__ctl_client *c, vpp__ctl_opts *o);
int vpp__ctl_cmd_watch(vpp__ctl_client *c, vpp__ctl_opts *o);
int vpp__ctl_cmd_set(vpp__ctl_client *c, vpp__ctl_opts *o);
int vpp__ctl_cmd_preview(vpp__ctl_client *c, vpp__ctl_opts *o);
int vpp__ctl_cmd_devices(vpp__ctl_client *c, vpp__ctl_opts *o);
int vpp__ctl_cmd_device(vpp__ctl_client *c, vpp__ctl_opts *o);
int vpp__ctl_cmd_health(vpp__ctl_client *c, vpp__ctl_opts *o);
int vpp__ctl_cmd_nodes(vpp__ctl_client *c, vpp__ctl_opts *o);
int vpp__ctl_cmd_drain(vpp__ctl_client *c, vpp__ctl_opts *o); /* drain and undrain */

/* Unix time now in ms (wall clock). */
int64_t vpp__ctl_now_ms(void);

#endif
