/* Internals of vpp-emulator shared by its files:
 *   config.c    the option table, --profile loading, validation
 *   session.c   one device's gRPC session (hello, telemetry, acks, pongs,
 *               faults, reconnect with backoff)
 *   worker.c    one thread: a libuv loop with its share of the devices,
 *               connect pacing, physics ticks, per-second samples
 *   stats.c     latency histogram and fan-out groups
 *   report.c    the ground-truth JSON report and the progress line
 *   malformed.c the bad messages of the malformed fault
 *   wheel.c     the timing wheel of a worker's device deadlines
 * and tools/vpp-emulator.c, the program's main. */
#ifndef VPP_EMUL_INT_H
#define VPP_EMUL_INT_H

#include "physics.h"
#include "vpp/config.h"
#include "vpp/grpc.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <uv.h>

/* ---- config.c ------------------------------------------------------------ */

typedef struct {
	char *server, *certs, *profile, *report, *device_prefix, *server_name, *log_level,
	    *firmware;
	int64_t devices, threads, first_index, seed, connect_rate;
	double duration, telemetry_jitter, server_silence_s;
	int64_t telemetry_interval_ms, physics_ms, progress_s;
	int64_t backoff_base_ms, backoff_cap_ms;
	int64_t per_address;
	bool preload_tls;
	/* fault fractions and their knobs */
	double offline, flaky, ignore, partial, late_ack, malformed;
	double partial_factor, flaky_period_s, malformed_period_s;
	int64_t late_ack_ms;
	/* physics defaults */
	double rated_charge_kw, rated_discharge_kw, capacity_kwh, min_soc, max_soc;
	double initial_soc_min, initial_soc_max, ramp_kw_per_s, charge_efficiency,
	    discharge_efficiency, lag_tau_s, noise_kw, soc_sigma, rating_spread;
	int64_t delay_ms, clock_offset_ms;
	/* derived */
	char host[256];
	int port;
} vpp__emul_config;

extern const vpp_config_opt vpp__emul_opts[];
extern const size_t vpp__emul_nopts;

/* Parses flags over the --profile file over the defaults and validates the
 * result. Returns 0; 1 when --help was asked (help printed to stdout); or
 * VPP_EINVAL with a message in |err|. */
int vpp__emul_config_load(vpp__emul_config *cfg, int argc, char **argv, char *err, size_t errlen);
void vpp__emul_config_free(vpp__emul_config *cfg);

/* ---- stats.c ------------------------------------------------------------- */

/* Log-linear histogram of microseconds: 16 linear sub-buckets per power of
 * two, so percentiles are within ~6 %; the max is exact. */
#define VPP__EMUL_HIST_BUCKETS (64 * 16)

typedef struct {
	uint64_t b[VPP__EMUL_HIST_BUCKETS];
	uint64_t count, max_us;
} vpp__emul_hist;

void vpp__emul_hist_add(vpp__emul_hist *h, uint64_t us);
void vpp__emul_hist_merge(vpp__emul_hist *into, const vpp__emul_hist *h);
/* The |q| quantile (0..1), in microseconds (the bucket's upper edge). */
uint64_t vpp__emul_hist_quantile(const vpp__emul_hist *h, double q);

/* Setpoints commanded in the same control tick share valid_until_ms and
 * server_time_ms (the tick's time; vppd caps leases at the operator's end,
 * so near it every tick shares valid_until_ms): the fan-out of a tick is
 * the spread of the times devices received them. */
typedef struct {
	int64_t key;    /* valid_until_ms */
	int64_t issued; /* server_time_ms, 0 when the server sends none */
	uint64_t count;
	int64_t first_us, last_us; /* true time (Unix µs) of first and last receipt */
} vpp__emul_group;

typedef struct {
	vpp__emul_group *v;
	size_t n, cap; /* open addressing, cap a power of two */
} vpp__emul_groups;

int vpp__emul_groups_add(vpp__emul_groups *g, int64_t key, int64_t issued, int64_t at_us,
                         uint64_t count, int64_t last_us);
void vpp__emul_groups_free(vpp__emul_groups *g);

/* ---- counters ------------------------------------------------------------ */

typedef enum {
	C_CONNECT_ATTEMPTS,
	C_SESSIONS,    /* welcomes received */
	C_RECONNECTS,  /* connect attempts after the first of a device */
	C_DISCONNECTS, /* established sessions that ended */
	C_DROPS,       /* flaky fault: connections dropped on purpose */
	C_MSGS_SENT,
	C_MSGS_RECV,
	C_TELEMETRY_SENT,
	C_SETPOINTS_RECV,
	C_ACKS_SENT,
	C_SETPOINTS_REFUSED, /* acked as not accepted: power_kw not a number */
	C_LATE_ACKS,
	C_PINGS_RECV,
	C_BACKOFFS_RECV,
	C_MALFORMED_SENT,
	C_MALFORMED_REJECTED, /* INVALID_ARGUMENT after a malformed message */
	C_CONNECT_FAILED,     /* ended before a welcome */
	C_BAD_SERVER_MSG,     /* server messages we could not decode */
	C_SEND_FAILED,
	C_SERVER_SILENT, /* sessions dropped: the server said nothing for too long */
	C__COUNT
} vpp__emul_counter;

extern const char *const vpp__emul_counter_names[C__COUNT];

/* ---- wheel.c ------------------------------------------------------------- */

/* 1 ms slots; deadlines further than the span wait whole rounds. */
#define VPP__EMUL_WHEEL_SLOTS 4096

typedef struct vpp__emul_wnode {
	struct vpp__emul_wnode *prev, *next; /* NULL when not armed */
	uint64_t due_ms;                     /* loop time (uv_now) */
} vpp__emul_wnode;

typedef struct {
	vpp__emul_wnode slot[VPP__EMUL_WHEEL_SLOTS]; /* list heads */
	uint64_t next_ms;      /* the first slot time not yet run */
	uint64_t timer_due_ms; /* when |timer| fires */
	size_t n;              /* nodes armed */
	uv_timer_t timer;
	void (*fire)(vpp__emul_wnode *n);
} vpp__emul_wheel;

void vpp__emul_wheel_init(vpp__emul_wheel *wh, uv_loop_t *loop, void (*fire)(vpp__emul_wnode *));
/* (Re)arms |n| to fire |delay_ms| from the loop's time, at 1 ms
 * resolution (like a uv_timer). */
void vpp__emul_wheel_arm(vpp__emul_wheel *wh, vpp__emul_wnode *n, uint64_t delay_ms);
void vpp__emul_wheel_cancel(vpp__emul_wheel *wh, vpp__emul_wnode *n);
bool vpp__emul_wheel_armed(const vpp__emul_wnode *n);

/* ---- session.c / worker.c ----------------------------------------------- */

typedef struct vpp__emul_worker vpp__emul_worker;

typedef enum {
	S_IDLE,       /* not started (offline, or waiting for pacing) */
	S_CONNECTING, /* connection or call open, no welcome yet */
	S_UP,         /* welcomed */
	S_WAIT,       /* waiting out a backoff */
	S_STOPPED,
} vpp__emul_state;

typedef struct vpp__emul_dev {
	vpp__emul_worker *w;
	uint32_t index; /* local index in the fleet, 0..devices-1 */
	uint8_t fault;
	uint8_t state;
	bool dropping;       /* we close on purpose (flaky fault) */
	bool malformed_sent; /* in this session */
	bool ever_connected;
	char id[40];
	vpp__emul_battery bat;
	vpp__emul_rng rng;
	int64_t clock_offset_ms;
	int64_t skew_ms; /* server clock − device clock, from welcome and pings */
	bool skew_known; /* a server time arrived this session (else skew 0) */
	uint64_t seq;    /* last telemetry seq, kept across sessions */
	uint32_t attempt, retry_after_ms, interval_ms;
	uint32_t session_no; /* connect attempts */
	uint32_t welcomes;   /* sessions established */
	int64_t next_telemetry_us, next_drop_us, next_malformed_us;
	int64_t last_recv_us; /* the server's last message (or the connect) */
	vpp_grpc_identity *ident; /* certificate and key, loaded once */
	vpp_grpc_conn *conn;
	vpp_grpc_call *call;
	vpp__emul_wnode timer; /* on the worker's wheel */
} vpp__emul_dev;

typedef struct {
	int64_t t_ms; /* start of the second, Unix ms */
	double true_kw, commanded_kw;
	uint32_t connected;
} vpp__emul_sample;

typedef struct {
	uint32_t dev;
	uint32_t session_no;
	uint64_t seq;
	int64_t recv_us, due_us;
} vpp__emul_late;

struct vpp__emul_worker {
	int id;
	const vpp__emul_config *cfg;
	int64_t start_us; /* common to all workers: the emulator's t = 0 */
	uv_loop_t loop;
	uv_async_t stop_async;
	uv_timer_t tick, pace, late_timer;
	vpp__emul_wheel wheel; /* the devices' deadlines */
	uv_thread_t thread;
	vpp_grpc_tls *tls;		/* one client context: CA, ALPN */
	vpp_grpc_identity *last_ident;	/* its key is shared when it matches */
	vpp__emul_dev *devs;
	size_t ndevs;
	size_t next_connect;
	double connect_credit;
	uint64_t pace_last_ms;
	bool stopping;
	_Atomic bool preload_abort; /* stop asked while still loading */
	int64_t last_second;

	vpp__emul_late *late;
	size_t late_head, late_n, late_cap;

	/* Read by the main thread while running: atomics. */
	_Atomic uint64_t c[C__COUNT];
	_Atomic uint64_t status[17]; /* sessions ended, by gRPC status */
	_Atomic int64_t connected;

	/* Owned by the loop thread; read by main after join. */
	vpp__emul_hist ack_hist;
	vpp__emul_groups groups;

	pthread_mutex_t mu; /* samples: appended here, read by the progress line */
	vpp__emul_sample *samples;
	size_t nsamples, samples_cap;
};

static inline void vpp__emul_count(vpp__emul_worker *w, vpp__emul_counter c, uint64_t n)
{
	atomic_fetch_add_explicit(&w->c[c], n, memory_order_relaxed);
}

int64_t vpp__emul_now_us(void);
/* Seconds since the emulator's start: the physics time line. */
double vpp__emul_true_s(const vpp__emul_worker *w, int64_t us);

/* Fills |d| (identity, physics, fault) for local index |index|. */
void vpp__emul_dev_init(vpp__emul_dev *d, vpp__emul_worker *w, uint32_t index, uint8_t fault);
/* Loads the device's certificate and key into its TLS context (once).
 * Returns 0 or VPP_ETLS (logged on the first failure). */
int vpp__emul_dev_load_tls(vpp__emul_dev *d);
/* Opens the device's connection and stream. */
void vpp__emul_dev_connect(vpp__emul_dev *d);
/* Closes whatever the device has open; no reconnect follows. */
void vpp__emul_dev_stop(vpp__emul_dev *d);
/* The wheel's callback: a device's deadline. */
void vpp__emul_dev_on_timer(vpp__emul_wnode *n);
/* Frees what outlives the loop (the TLS context). */
void vpp__emul_dev_release(vpp__emul_dev *d);
/* Sends the ack of |seq| (received at |recv_us|) now if the session
 * |session_no| is still up. Returns whether it was sent. */
bool vpp__emul_dev_send_ack(vpp__emul_dev *d, uint32_t session_no, uint64_t seq, int64_t recv_us);

int vpp__emul_worker_init(vpp__emul_worker *w, int id, const vpp__emul_config *cfg,
                          vpp__emul_dev *devs, size_t ndevs, int64_t start_us);
int vpp__emul_worker_start(vpp__emul_worker *w);
/* Asks the worker to stop (any thread) and joins it. */
void vpp__emul_worker_stop(vpp__emul_worker *w);
void vpp__emul_worker_free(vpp__emul_worker *w);
/* Records the whole seconds passed up to |now_us| (loop thread): call
 * before advancing or commanding a battery. */
void vpp__emul_worker_sync(vpp__emul_worker *w, int64_t now_us);
/* Queues a late ack (loop thread). */
void vpp__emul_worker_late_ack(vpp__emul_worker *w, vpp__emul_dev *d, uint64_t seq);

/* ---- malformed.c --------------------------------------------------------- */

/* Writes into |buf| (|cap| >= 64) one message the server must refuse:
 * garbage bytes, a Telemetry with a NaN power or one with SoC 1.7, chosen
 * by |r|. Returns its length; |*kind| names it. */
size_t vpp__emul_malformed(vpp__emul_rng *r, uint64_t seq, int64_t now_ms, uint8_t *buf, size_t cap,
                           const char **kind);

/* ---- report.c ------------------------------------------------------------ */

typedef struct {
	const vpp__emul_config *cfg;
	vpp__emul_worker *workers;
	int nworkers;
	vpp__emul_dev *devs;
	size_t ndevs;
	int64_t start_us, end_us;
	const char *stop_reason;
} vpp__emul_fleet;

/* Writes the JSON report to |path| (via a temp file, renamed). Returns 0 or
 * VPP_EIO. */
int vpp__emul_report_write(const vpp__emul_fleet *f, const char *path);

/* One line for stderr: connected, true power, setpoints/s, errors. */
void vpp__emul_progress(const vpp__emul_fleet *f, double dt_s, uint64_t *last_setpoints, FILE *out);

#endif
