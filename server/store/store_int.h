/* Internals of the store, shared by the files of server/store and the unit tests. */
#ifndef VPP_STORE_INT_H
#define VPP_STORE_INT_H

#include "vpp/journal.h"
#include "vpp/store.h"
#include "vpp/telemetry.h"

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- migrations (migrate.c, migrations.c generated from sql/) ---- */

typedef struct {
	int version;
	const char *name;
	const char *sql;
} vpp__migration;

extern const vpp__migration vpp__migrations[];
extern const size_t vpp__migrations_len;

/* ---- growable byte buffer ---- */

typedef struct {
	unsigned char *p;
	size_t len, cap;
} vpp__buf;

int vpp__buf_reserve(vpp__buf *b, size_t more);
void vpp__buf_free(vpp__buf *b);

/* ---- COPY BINARY encoding of telemetry (copy.c) ---- */

/* Column order of every COPY the store sends. */
#define VPP__TELEMETRY_COLUMNS                                                                     \
	"device_id, seq, measured_at, received_at, power_kw, power_sigma_kw, soc, soc_sigma, "     \
	"quality, node_id"
#define VPP__COPY_FIELDS 10

/* Unix ms to PostgreSQL timestamp (µs since 2000-01-01 UTC). */
#define VPP__PG_EPOCH_MS 946684800000LL
/* Journal records that could not be written (its disk full or failing) may
 * wait in memory up to this; then the journal counts as full. */
#define VPP__JOURNAL_MAX_UNWRITTEN (16u << 20)

/* Appends the COPY BINARY file header (signature, flags, extension). */
int vpp__copy_header(vpp__buf *b);
/* Appends one tuple of |r| with |node_id|; a NaN sigma ("not given") is
 * NULL. */
int vpp__copy_row(vpp__buf *b, const vpp_telemetry_row *r, const char *node_id);
/* Appends the file trailer (field count -1). */
int vpp__copy_trailer(vpp__buf *b);

/* ---- journal payloads (row.c) ---- */

enum {
	VPP__JREC_TELEMETRY = 1, /* one telemetry row */
	VPP__JREC_STMT = 2,      /* one write statement (vpp__stmt) */
};

/* Fixed little-endian encoding of a row: u8 id length, id, i64 seq,
 * measured_at_ms, received_at_ms, f64 power, power sigma, soc, soc sigma,
 * u32 quality. Doubles keep their bits: a NaN sigma ("not given") stays NaN
 * through the journal. At most VPP__ROW_WIRE_MAX bytes. */
#define VPP__ROW_WIRE_MAX (1 + (VPP_ID_CAP - 1) + 3 * 8 + 4 * 8 + 4)
size_t vpp__row_encode(const vpp_telemetry_row *r, unsigned char *out);
/* Returns 0 or VPP_ECORRUPT. */
int vpp__row_decode(const void *p, size_t len, vpp_telemetry_row *r);

/* ---- write statements (stmt.c) ---- */

typedef enum {
	VPP__ST_DEVICE_UPSERT = 0,
	VPP__ST_DEVICE_STATE,
	VPP__ST_FLEET_TICK,
	VPP__ST_DEVICE_EVENT,
	VPP__ST_AUDIT,
	VPP__ST_HEARTBEAT,
	VPP__ST_MAINTAIN,
	VPP__ST_SETPOINT,
	VPP__ST_LIST_DEVICES,
	VPP__ST_GET_DEVICE,
	VPP__ST_DEVICE_TELEMETRY,
	VPP__ST_DEVICE_IDS,
	VPP__ST__COUNT,
} vpp__stmt_id;

typedef struct {
	const char *name; /* prepared statement name */
	const char *sql;
	int nparams;
	bool journaled; /* a write replayed from the journal (idempotent) */
} vpp__stmt_def;

extern const vpp__stmt_def vpp__stmts[VPP__ST__COUNT];

/* One statement with its text parameters, flattened into one allocation so
 * it can be journaled as is: u16 id, u16 n, then per parameter i32 length
 * (-1 = NULL) and the bytes plus a NUL. */
typedef struct {
	unsigned char *blob;
	size_t len;
} vpp__stmt;

/* Builds a statement from |n| NUL-terminated parameters (NULL allowed).
 * Returns VPP_ENOMEM. */
int vpp__stmt_build(vpp__stmt *st, vpp__stmt_id id, const char *const *params, int n);
/* Decodes |blob| (e.g. from the journal): sets |*id|, |*n| and the
 * parameter pointers (into |blob|) in |params| (room for 32). Returns
 * VPP_ECORRUPT. */
int vpp__stmt_parse(const unsigned char *blob, size_t len, vpp__stmt_id *id, const char **params,
                    int *n);

/* ---- small string set (strset.c), owned by the store thread ---- */

typedef struct {
	char **keys;
	int64_t *vals;
	size_t cap, n;
} vpp__strset;

int vpp__strset_add(vpp__strset *s, const char *key);
bool vpp__strset_has(const vpp__strset *s, const char *key);
/* Adds |key| with |val|, or raises its value to |val| if larger. */
int vpp__strset_put_max(vpp__strset *s, const char *key, int64_t val);
/* Sets |*val| and returns true when |key| is present. */
bool vpp__strset_get(const vpp__strset *s, const char *key, int64_t *val);
void vpp__strset_free(vpp__strset *s);

/* ---- bounded MPSC queue of telemetry rows (queue.c) ---- */

typedef struct vpp__rowq vpp__rowq;

int vpp__rowq_new(size_t cap, vpp__rowq **ret);
void vpp__rowq_free(vpp__rowq *q);
/* Lock-free, any thread. Returns VPP_EFULL. Sets |*depth| to the depth
 * after the push. */
int vpp__rowq_push(vpp__rowq *q, const vpp_telemetry_row *r, size_t *depth);
/* Single consumer. Returns true when a row was popped. */
bool vpp__rowq_pop(vpp__rowq *q, vpp_telemetry_row *r);
size_t vpp__rowq_depth(const vpp__rowq *q);

/* ---- libpq error classification (pgerr.c) ---- */

/* True when a failed result of |conn| means the connection (not the data)
 * is at fault: the work should be retried elsewhere or later. */
bool vpp__pg_transient(PGconn *conn, const PGresult *res);
/* True when the failure means |conn| itself is unusable (broken, or closed
 * by the server): only then is it dropped. Other errors leave it working. */
bool vpp__pg_conn_broken(PGconn *conn, const PGresult *res);

/* Starts a non-blocking connection to |conninfo| (key=value or URI) with
 * the store's defaults for what it does not set: connect_timeout=10,
 * keepalives=1, keepalives_idle=30, keepalives_interval=10,
 * keepalives_count=3, tcp_user_timeout=30000. With several hosts, libpq
 * tries them in order starting at the |first_host|-th (modulo their
 * number). Returns NULL when out of memory; check PQstatus otherwise. */
PGconn *vpp__pg_connect_start(const char *conninfo, unsigned first_host);
/* The same, blocking (migrations). */
PGconn *vpp__pg_connect(const char *conninfo);

/* Milliseconds of the Unix wall clock. */
int64_t vpp__store_now_ms(void);

/* ---- the store thread (store.c, pgconn.c, copyjob.c, pipe.c) ---- */

#include "vpp/log.h"
#include "vpp/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

typedef struct vpp__pgc vpp__pgc;

typedef enum {
	VPP__PGC_DOWN = 0,   /* waiting for the reconnect timer */
	VPP__PGC_CONNECTING, /* PQconnectPoll in progress */
	VPP__PGC_SETUP,      /* connected, running its set-up queries */
	VPP__PGC_READY,
} vpp__pgc_state;

/* One non-blocking libpq connection on the store loop. */
struct vpp__pgc {
	vpp_store *s;
	const char *name;
	PGconn *conn;
	uv_poll_t *poll; /* malloc'd: freed in its close callback */
	int fd;
	int events;
	uv_timer_t retry;
	int64_t backoff_ms;
	vpp__pgc_state state;
	uint64_t up_since;   /* loop time it became READY */
	uint64_t held_until; /* loop time before which nothing is sent */
	int64_t hold_ms;     /* next hold-off, doubling like backoff_ms */
	uint64_t deadline_ms; /* to be READY after a connect starts */
	unsigned first_host;  /* of the conninfo's hosts, the one tried first */
	char err[256];
	/* Called on socket events once connected (SETUP and READY). */
	void (*on_io)(vpp__pgc *c, int events);
	/* Called when connected: sends set-up work, sets state READY when done. */
	void (*on_connected)(vpp__pgc *c);
	/* Called when the connection is lost, before it is closed. */
	void (*on_lost)(vpp__pgc *c);
};

void vpp__pgc_init(vpp_store *s, vpp__pgc *c, const char *name);
void vpp__pgc_connect(vpp__pgc *c);
/* Set-up done: the connection takes work. */
void vpp__pgc_ready(vpp__pgc *c);
/* The database refused work for its state, not the data's nor the
 * connection's (read-only, a lock or statement timeout, a missing table):
 * keep the connection but send nothing for a backoff that doubles at each
 * refusal. |why| is recorded for /readyz. */
void vpp__pgc_hold(vpp__pgc *c, const char *why);
/* Work committed: the next hold-off starts from the minimum again. */
void vpp__pgc_ok(vpp__pgc *c);
/* READY and not held off. */
bool vpp__pgc_usable(const vpp__pgc *c);
/* Drops the connection (after on_lost) and schedules a reconnect. |why| is
 * recorded for /readyz. */
void vpp__pgc_fail(vpp__pgc *c, const char *why);
/* Flushes libpq's output and sets the poll events accordingly. Returns -1
 * when the connection failed (already handled). */
int vpp__pgc_flush(vpp__pgc *c);
void vpp__pgc_close(vpp__pgc *c);

/* A batch of telemetry rows bound for one COPY. */
typedef struct {
	vpp_telemetry_row *rows;
	size_t n, cap;
	bool from_journal;
	uint64_t gen;      /* replay generation (from_journal only) */
	uint64_t first_ms; /* loop time of its first row */
} vpp__batch;

/* An item on the pipeline connection: one statement, and what to do with
 * its result. */
typedef enum {
	VPP__IT_WRITE = 0, /* journaled write */
	VPP__IT_FIRE,      /* write that is not journaled (heartbeat, maintenance) */
	VPP__IT_SETPOINT,
	VPP__IT_DEVICES,
	VPP__IT_TELEMETRY,
	VPP__IT_DEVICE_IDS,
} vpp__item_kind;

typedef struct vpp__item {
	struct vpp__item *next;
	vpp__item_kind kind;
	vpp__stmt st;
	bool from_journal;
	uint64_t gen;
	void (*cb)(void);
	void *user_data;
	bool get_one;         /* VPP__IT_DEVICES for get_device: empty is VPP_ENOENT */
	char key[VPP_ID_CAP]; /* device id of a DEVICE_STATE write (coalescing) */
	int64_t as_of_ms;     /* and its as_of */
} vpp__item;

typedef struct {
	vpp__item *head, *tail;
	size_t n;
} vpp__itemq;

void vpp__itemq_push(vpp__itemq *q, vpp__item *it);
void vpp__itemq_push_front(vpp__itemq *q, vpp__item *it);
vpp__item *vpp__itemq_pop(vpp__itemq *q);
void vpp__item_free(vpp__item *it);

/* A pipeline sync group in flight. */
typedef struct vpp__group {
	struct vpp__group *next;
	vpp__itemq items;
	vpp__item *cur; /* item whose results come next */
	int failed;     /* index of the item that failed, -1 */
	bool transient;
	bool broken; /* the connection itself failed */
	char err[200];
} vpp__group;

/* Range of a batch being written, and how. */
typedef struct {
	size_t lo, hi;
	bool staged; /* via the staging table with ON CONFLICT DO NOTHING */
} vpp__range;

typedef enum {
	VPP__CS_IDLE = 0,
	VPP__CS_SETUP,
	VPP__CS_COPY_START, /* COPY sent, waiting for CopyIn */
	VPP__CS_COPY_END,   /* data sent, waiting for the COPY's result */
	VPP__CS_MERGE,      /* INSERT ... ON CONFLICT; COMMIT sent */
	VPP__CS_ROLLBACK,
} vpp__copy_step;

struct vpp_store {
	vpp_store_options o;
	char *conninfo, *node_id, *journal_dir;

	pthread_t thread;
	uv_loop_t loop;
	uv_async_t wake;
	uv_timer_t tick;
	uv_timer_t maint;
	atomic_bool stopping;
	atomic_bool closed;
	bool stop_started;
	uint64_t stop_deadline;

	vpp__rowq *rows;
	pthread_mutex_t cmd_lock;
	vpp__itemq cmds; /* from other threads, under cmd_lock */
	size_t cmd_max;

	vpp_journal *journal;
	bool spilling; /* the journal holds rows: everything goes through it */
	vpp_journal_pos read_pos;
	bool replay_active;
	bool tail_replay; /* the chunk in flight ends the journal */
	uint64_t replay_gen;
	vpp_journal_pos replay_end;
	size_t replay_outstanding;

	vpp__strset known;
	bool devices_loaded;
	/* Rows of devices not known yet: the registration comes from another
	 * thread (dispatch) and may trail the first rows by a little. */
	struct vpp__deferred {
		vpp_telemetry_row row;
		uint64_t since; /* loop time */
	} * deferred;
	size_t ndeferred, capdeferred;

	/* Telemetry connection. */
	vpp__pgc copy;
	vpp__batch cur;      /* filling */
	vpp__batch inflight; /* being written */
	vpp__copy_step cstep;
	vpp__range ranges[64]; /* stack of ranges of |inflight| left to write */
	int nranges;
	vpp__range range; /* the one in progress */
	bool range_failed, range_transient, range_broken;
	char range_err[200];
	size_t batch_rejected;
	/* Rows the database already held: skipped by the staged merge of the
	 * range in progress, and of the batch's finished ranges. */
	size_t range_dupes, batch_dupes;
	uint64_t batch_start_ms;
	vpp__buf copybuf;

	/* Pipeline connection. */
	vpp__pgc pipe;
	vpp__itemq pending; /* not sent yet */
	vpp__itemq states;  /* device states, coalesced */
	vpp__group *groups, *groups_tail;
	size_t ngroups;

	/* Partition maintenance: retried with backoff while it fails. */
	bool maint_failing;
	int64_t maint_backoff_ms;

	/* Accepted work neither written nor journaled, not logged yet. */
	uint64_t lost_rows_unlogged, lost_writes_unlogged;
	uint64_t lost_logged_at; /* loop time */

	/* Readiness, for other threads. */
	pthread_mutex_t ready_lock;
	char why[256];
	/* What the log last said of the database (store thread). */
	bool said_up;
	char said_why[256];
	uint64_t down_since; /* loop time of the first failure since up */
	vpp_log_limit down_lines;

	/* Counters (vpp_store_stats). */
	uint64_t rows_unwritten; /* appended to the journal, not yet written */
	vpp_journal_pos undecodable_upto; /* counted lost up to here */
	atomic_uint_fast64_t n_submitted, n_durable, n_committed, n_journaled, n_replayed,
	    n_rejected, n_already, n_writes_done, n_writes_failed, n_rows_lost, n_writes_lost, journal_bytes;
	atomic_int_fast64_t last_lag_ms, max_lag_ms;
	atomic_bool db_up, spilling_pub;
};

/* Metrics, looked up once (store.c). */
typedef struct {
	vpp_gauge *db_up, *queue_depth, *journal_bytes, *lag;
	vpp_counter *rows_written, *rows_journaled, *rows_replayed, *rows_already, *db_errors, *writes,
	    *write_errors, *journal_discarded, *rows_lost, *writes_lost, *maint_errors;
	vpp_counter *rejected[VPP_REJECT__COUNT];
	vpp_histogram *batch_seconds;
} vpp__store_metrics;

extern vpp__store_metrics vpp__sm;

void vpp__store_metrics_init(void);
void vpp__store_reject(vpp_store *s, vpp_reject_reason r, uint64_t n);
/* Runs one round of the store thread's work: drains queues, starts writes. */
void vpp__store_pump(vpp_store *s);
/* Appends rows |r|[0..n) to the journal (they are durable once committed). */
int vpp__store_journal_rows(vpp_store *s, const vpp_telemetry_row *r, size_t n);
/* Journals the write |it|; on failure it is counted as lost. */
int vpp__store_journal_item(vpp_store *s, const vpp__item *it);
/* Counts |rows| telemetry rows and |writes| other writes that were accepted
 * but can be neither written nor journaled; the store logs the tally. */
void vpp__store_lost(vpp_store *s, uint64_t rows, uint64_t writes);
/* The result of a partition maintenance call: |err| is NULL on success. */
void vpp__store_maintenance_done(vpp_store *s, const char *err);
void vpp__store_update_ready(vpp_store *s);
/* The pipeline connection is ready: queue the device ids load and the
 * partition maintenance. */
void vpp__store_on_pipe_ready(vpp_store *s);
void vpp__store_replay_done(vpp_store *s, uint64_t gen);
void vpp__store_replay_abandon(vpp_store *s);

/* copyjob.c */
void vpp__copy_init(vpp_store *s);
/* Starts writing |s->inflight| (already filled). */
void vpp__copy_start_batch(vpp_store *s);
bool vpp__copy_idle(const vpp_store *s);

/* pipe.c */
void vpp__pipe_init(vpp_store *s);
/* Row |row| of a result whose columns are those of VPP__ST_DEVICE_TELEMETRY
 * (device_id, seq, measured_at ms, received_at ms, power_kw, power_sigma_kw,
 * soc, soc_sigma, quality). A NULL sigma reads as NaN ("not given"). */
void vpp__row_from_result(const PGresult *r, int row, vpp_telemetry_row *t);
/* The columns of a setpoint row, in the order vpp__setpoint_from_result
 * reads them. */
#define VPP__SETPOINT_COLUMNS                                                                      \
	"setpoint_id, request_id, target_kw, valid_for_s, ramp_kw_per_s, reason, principal, "    \
	"node_id, (extract(epoch FROM created_at) * 1000)::int8"
void vpp__setpoint_from_result(const PGresult *r, int row, vpp_setpoint *sp);
void vpp__pipe_kick(vpp_store *s);
bool vpp__pipe_idle(const vpp_store *s);
/* Fails every item not yet done with |status| (reads) or journals them
 * (fresh writes). */
void vpp__pipe_abort_all(vpp_store *s, int status);
/* Takes |it|, which will not be sent: journals a fresh write, abandons the
 * replay of a journaled one, fails a read with |status|. */
void vpp__pipe_orphan(vpp_store *s, vpp__item *it, int status);

int vpp__batch_reserve(vpp__batch *b, size_t n);

#endif
