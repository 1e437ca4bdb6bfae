/* The store: persists the fleet to PostgreSQL from a thread of its own.
 *
 * vpp_store_start() spawns the store thread, which runs its own libuv loop
 * and two non-blocking libpq connections driven by uv_poll on PQsocket: one
 * writes telemetry in COPY BINARY batches, the other sends every other write
 * and the reads in pipeline mode. Callers on any thread hand rows over
 * through bounded queues and never block on the database.
 *
 * Nothing lost, nothing twice: telemetry waits in a bounded queue
 * (VPP_EFULL when full: apply backpressure). When PostgreSQL is down or too
 * slow, rows and writes spill to an append-only checksummed journal on local
 * disk (see vpp/journal.h) and are replayed when it returns; replays are
 * deduplicated on (device_id, seq, measured_at) for telemetry and by
 * idempotent statements for the rest. vpp_store_stop() flushes what it can
 * and leaves the rest in the journal, which the next start replays.
 *
 * Callbacks of reads run on the store thread: do not block in them, copy
 * what you need (the data is valid only during the call) and marshal back to
 * your own loop (e.g. with uv_async_send). */
#ifndef VPP_STORE_H
#define VPP_STORE_H

#include "vpp/telemetry.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vpp_store vpp_store;

typedef enum {
	VPP_JOURNAL_FSYNC_ALWAYS = 0, /* fdatasync after every group of appended records */
	VPP_JOURNAL_FSYNC_INTERVAL,   /* fdatasync at most every fsync_interval_ms */
	VPP_JOURNAL_FSYNC_NEVER,      /* leave it to the kernel (survives a process crash only) */
} vpp_journal_fsync;

typedef struct {
	const char *conninfo;    /* libpq conninfo string or URI */
	const char *node_id;     /* written into every row */
	const char *journal_dir; /* created if missing; one store per folder */
	size_t queue_rows;       /* bound of the telemetry queue (rounded up to a power of 2) */
	size_t batch_rows;       /* rows per COPY batch */
	int64_t flush_ms;        /* longest a row waits for its batch to fill */
	vpp_journal_fsync fsync_policy;
	int64_t fsync_interval_ms;
	int64_t journal_max_bytes; /* beyond this, the queue fills and callers get VPP_EFULL;
	                            * other writes are dropped and counted (device states
	                            * are not journaled: the newest per device waits) */
	int64_t reconnect_min_ms;  /* reconnect backoff: doubles from min to max, with jitter */
	int64_t reconnect_max_ms;
	int64_t partition_hours;  /* width of a telemetry partition */
	int64_t partitions_ahead; /* partitions created ahead of now */
	int64_t retention_days;   /* telemetry partitions older than this are dropped (0 = keep) */
	int64_t max_past_ms;      /* telemetry measured earlier than now - this is rejected */
	int64_t max_future_ms;    /* telemetry measured later than now + this is rejected */
	int64_t stop_timeout_ms;  /* time vpp_store_stop() gives the database to take the rest */
	bool check_devices;       /* reject telemetry of devices never registered */
	bool maintain_partitions; /* create/drop telemetry partitions periodically */
} vpp_store_options;

/* Called for each migration applied. */
typedef void (*vpp_store_migrate_cb)(int version, const char *name, void *user_data);

/* Applies the migrations embedded in this binary (sql/migrations) that the
 * database at |conninfo| lacks, in order, each in a transaction recorded in
 * schema_migrations; a no-op when it is up to date. Blocking. Sets
 * |*version| (may be NULL) to the schema version afterwards. Returns
 * VPP_EDB (cannot connect, or a migration failed) or VPP_ESCHEMA (the
 * database is newer than this binary), with a message in |err|. */
int vpp_store_migrate(const char *conninfo, vpp_store_migrate_cb cb, void *user_data, int *version,
                      char *err, size_t errlen);

/* The newest operator setpoint node |node_id| recorded (highest
 * setpoint_id: the one in force until its validity ends, as no later one
 * replaced it), read at start-up so that a restarted vppd carries on with
 * it. Blocking. Returns 0 with |*found| saying whether there is one, or
 * VPP_EDB with a message in |err|. */
int vpp_store_newest_setpoint(const char *conninfo, const char *node_id, vpp_setpoint *out,
                              bool *found, char *err, size_t errlen);

/* The newest schema version this binary knows. */
int vpp_store_schema_version(void);

/* Fills |o| with the defaults. */
void vpp_store_options_init(vpp_store_options *o);

/* Opens the journal (replaying what it holds once the database is up) and
 * starts the store thread. Connecting happens in the background: the store
 * runs, journaling, while the database is unreachable. Strings in |o| are
 * copied. Sets |*ret| on success; returns VPP_EINVAL (bad options), VPP_EIO
 * (journal folder), VPP_EEXIST (journal in use by another store) or
 * VPP_ENOMEM. */
int vpp_store_start(const vpp_store_options *o, vpp_store **ret);

/* Stops the thread: drains the queue, gives the database up to
 * stop_timeout_ms to commit it, journals whatever is left (past
 * journal_max_bytes if need be: the queues bound the excess) and frees |s|.
 * What the journal cannot take is counted in vpp_store_rows_lost_total /
 * vpp_store_writes_lost_total and logged. Accepts NULL. Call from a thread
 * that does not submit concurrently. */
void vpp_store_stop(vpp_store *s);

/* Queues one telemetry row (copied). Thread-safe, lock-free, never blocks.
 * Returns 0, VPP_EFULL (queue full: back off, e.g. stop reading that device),
 * VPP_EINVAL (row rejected by vpp_telemetry_validate: counted in
 * vpp_store_rejected_total{reason}) or VPP_ECLOSED. Rows of unknown devices
 * are checked later, on the store thread: such a row waits up to 3 s for
 * its device's vpp_store_upsert_device() (which may come from another
 * thread), then is rejected and counted. */
int vpp_store_submit_telemetry(vpp_store *s, const vpp_telemetry_row *row);

/* Registers or updates a device. Its id counts as known for telemetry from
 * the moment this returns. Thread-safe; returns 0, VPP_EINVAL, VPP_ENOMEM,
 * VPP_EFULL or VPP_ECLOSED (same for every write below). */
int vpp_store_upsert_device(vpp_store *s, const vpp_store_device *d);

/* Latest state of |n| devices. Coalesced: only the newest state of each
 * device is written, and never over a newer one already stored. */
int vpp_store_put_device_states(vpp_store *s, const vpp_store_device_state *st, size_t n);

int vpp_store_put_fleet_tick(vpp_store *s, const vpp_store_tick_row *t);

/* |reason| may be NULL. */
int vpp_store_put_device_event(vpp_store *s, const char *device_id, int64_t at_ms,
                               vpp_store_event_kind kind, const char *reason);

int vpp_store_put_audit(vpp_store *s, const vpp_audit_entry *a);

/* Upserts this node's cluster_nodes row (heartbeat_at = now). */
int vpp_store_heartbeat(vpp_store *s, int64_t started_at_ms, const char *version);

/* Result of vpp_store_insert_setpoint: |created| is false when the
 * request_id was already used; |row| is then the stored original. */
typedef void (*vpp_store_setpoint_cb)(int status, const vpp_setpoint *row, bool created,
                                      void *user_data);

/* Inserts an operator command; setpoint_id of |sp| is assigned by the
 * database, and so is created_at_ms when it is 0 (else it is the node's
 * clock, the one its validity is applied on). Not journaled: when the database is
 * down the callback gets VPP_EDB. The callback runs on the store thread,
 * exactly once if this returns 0. */
int vpp_store_insert_setpoint(vpp_store *s, const vpp_setpoint *sp, vpp_store_setpoint_cb cb,
                              void *user_data);

typedef void (*vpp_store_devices_cb)(int status, const vpp_store_device_record *devs, size_t n,
                                     void *user_data);
typedef void (*vpp_store_telemetry_cb)(int status, const vpp_telemetry_row *rows, size_t n,
                                       void *user_data);

/* Devices ordered by id, those with id > |after_id| ("" or NULL: from the
 * start), at most |limit| (1..10000). The next page starts after the last id
 * returned. Callback on the store thread; status 0 or VPP_EDB. */
int vpp_store_list_devices(vpp_store *s, const char *after_id, size_t limit,
                           vpp_store_devices_cb cb, void *user_data);

/* One device: status 0 with n = 1, or VPP_ENOENT, or VPP_EDB. */
int vpp_store_get_device(vpp_store *s, const char *device_id, vpp_store_devices_cb cb,
                         void *user_data);

/* A device's newest telemetry measured at or after |since_ms|, newest first,
 * at most |limit| (1..100000). A sigma the device did not give reads as NaN. */
int vpp_store_device_telemetry(vpp_store *s, const char *device_id, int64_t since_ms, size_t limit,
                               vpp_store_telemetry_cb cb, void *user_data);

/* Database health for /readyz. Thread-safe. Returns true when both
 * connections are up; otherwise false with the reason in |why|. */
bool vpp_store_ready(vpp_store *s, char *why, size_t whylen);

typedef struct {
	uint64_t submitted;   /* telemetry rows accepted by vpp_store_submit_telemetry */
	uint64_t durable;     /* of those: committed, written to the journal or rejected by the
			       * store thread */
	uint64_t committed;   /* telemetry rows committed (incl. replays and duplicates skipped) */
	uint64_t journaled;   /* telemetry rows written to the journal */
	uint64_t replayed;    /* telemetry rows committed from the journal */
	uint64_t already_stored; /* of the committed: skipped, the database held them already */
	uint64_t rejected;    /* rows rejected by the store thread (unknown device, db error) */
	uint64_t writes_done; /* other writes committed */
	uint64_t writes_failed; /* other writes refused by the database (constraint...) */
	uint64_t rows_lost;   /* accepted rows neither committed nor journaled (journal failing) */
	uint64_t writes_lost; /* other writes likewise, or refused by a full journal */
	uint64_t queue_depth;
	uint64_t journal_bytes;
	int64_t last_lag_ms; /* age of the oldest row of the last committed fresh batch */
	int64_t max_lag_ms;
	bool db_up;
	bool spilling; /* the journal is the path to the database */
} vpp_store_stats;

/* Thread-safe snapshot of the counters. */
void vpp_store_get_stats(vpp_store *s, vpp_store_stats *st);

#endif
