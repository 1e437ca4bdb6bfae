/* The store: its thread and loop, the hand-over from other threads, and the
 * choice of path for each row (COPY batch or journal).
 *
 * Paths. While the journal is empty and the telemetry connection is up, rows
 * go from the queue into a batch and out by COPY (copyjob.c); other writes go
 * to the pipeline (pipe.c). As soon as anything has to be journaled (the
 * database is down, or too slow and the queue is past half full), the store
 * is "spilling": everything new is appended to the journal, and the journal
 * is replayed from its oldest record, batch by batch, while both connections
 * are up. When the replay reads the journal's last record, new work stops
 * going into the journal (it waits in the batch and the queue); once that
 * last chunk commits, the journal is deleted and the direct path resumes. A row therefore always
 * has exactly one owner: the queue, a batch, or the journal. */
#include "store_int.h"
#include "vpp/error.h"
#include "vpp/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

vpp__store_metrics vpp__sm;
static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;

static void metrics_init(void)
{
	vpp__sm.db_up =
	    vpp_gauge_get("vpp_store_db_up", NULL, "1 when both database connections are up");
	vpp__sm.queue_depth = vpp_gauge_get("vpp_store_queue_depth", NULL,
	                                    "telemetry rows waiting in the store's queue");
	vpp__sm.journal_bytes =
	    vpp_gauge_get("vpp_store_journal_bytes", NULL, "bytes held in the local journal");
	vpp__sm.lag = vpp_gauge_get("vpp_store_lag_seconds", NULL,
	                            "age of the oldest row of the last committed batch");
	vpp__sm.rows_written = vpp_counter_get("vpp_store_rows_written_total", NULL,
	                                       "telemetry rows inserted into the database");
	vpp__sm.rows_already = vpp_counter_get(
	    "vpp_store_rows_already_stored_total", NULL,
	    "telemetry rows written again and skipped: the database held them already (the "
	    "replay of a batch whose commit was in doubt)");
	vpp__sm.rows_journaled = vpp_counter_get("vpp_store_rows_journaled_total", NULL,
	                                         "telemetry rows written to the local journal");
	vpp__sm.rows_replayed = vpp_counter_get("vpp_store_rows_replayed_total", NULL,
	                                        "telemetry rows inserted from the journal");
	vpp__sm.db_errors = vpp_counter_get("vpp_store_db_errors_total", NULL,
	                                    "database errors (lost connections, refused batches)");
	vpp__sm.writes = vpp_counter_get("vpp_store_writes_total", NULL,
	                                 "other writes committed (devices, states, ticks...)");
	vpp__sm.write_errors = vpp_counter_get("vpp_store_write_errors_total", NULL,
	                                       "other writes refused by the database");
	vpp__sm.journal_discarded = vpp_counter_get(
	    "vpp_store_journal_discarded_bytes_total", NULL,
	    "journal bytes given up as torn or corrupt records (at start-up or during replay)");
	vpp__sm.rows_lost = vpp_counter_get(
	    "vpp_store_rows_lost_total", NULL,
	    "telemetry rows accepted but neither committed nor journaled (journal failing)");
	vpp__sm.writes_lost =
	    vpp_counter_get("vpp_store_writes_lost_total", NULL,
	                    "other writes accepted but neither committed nor journaled (journal "
	                    "full or failing)");
	vpp__sm.maint_errors = vpp_counter_get("vpp_store_maintenance_errors_total", NULL,
	                                       "failed telemetry partition maintenance calls");
	for (int r = 1; r < VPP_REJECT__COUNT; r++) {
		char labels[64];
		snprintf(labels, sizeof(labels), "reason=\"%s\"", vpp_reject_reason_name(r));
		vpp__sm.rejected[r] = vpp_counter_get("vpp_store_rejected_total", labels,
		                                      "telemetry rows rejected, by reason");
	}
	vpp__sm.batch_seconds = vpp_histogram_get("vpp_store_batch_seconds", NULL,
	                                          "time to commit one telemetry batch", NULL, 0);
}

void vpp__store_metrics_init(void)
{
	pthread_once(&metrics_once, metrics_init);
}

void vpp_store_options_init(vpp_store_options *o)
{
	memset(o, 0, sizeof(*o));
	o->conninfo = "";
	o->node_id = "node";
	o->journal_dir = "./vpp-journal";
	o->queue_rows = 262144;
	o->batch_rows = 10000;
	o->flush_ms = 250;
	o->fsync_policy = VPP_JOURNAL_FSYNC_ALWAYS;
	o->fsync_interval_ms = 1000;
	o->journal_max_bytes = 8LL << 30;
	o->reconnect_min_ms = 100;
	o->reconnect_max_ms = 10000;
	o->partition_hours = 24;
	o->partitions_ahead = 2;
	o->retention_days = 30;
	o->max_past_ms = 7LL * 24 * 3600 * 1000;
	o->max_future_ms = 5LL * 60 * 1000;
	o->stop_timeout_ms = 5000;
	o->check_devices = true;
	o->maintain_partitions = true;
}

void vpp__store_reject(vpp_store *s, vpp_reject_reason r, uint64_t n)
{
	if ((unsigned)r < VPP_REJECT__COUNT && vpp__sm.rejected[r])
		vpp_counter_add(vpp__sm.rejected[r], n);
	atomic_fetch_add(&s->n_rejected, n);
}

/* Says in the log when the database goes away, why, and when it is back:
 * once per change of reason (at most 5 lines a minute), not per attempt. */
static void log_db_change(vpp_store *s, bool up)
{
	uint64_t now = uv_now(&s->loop);
	const char *why = s->copy.state != VPP__PGC_READY ? s->copy.err : s->pipe.err;
	if (up) {
		if (!s->said_up && s->said_why[0])
			vpp_log(VPP_LOG_INFO, "store", "database reachable again after %.1f s",
				(double)(now - s->down_since) / 1000.0);
		else if (!s->said_up)
			vpp_log(VPP_LOG_INFO, "store", "database connected");
		s->said_up = true;
		s->said_why[0] = 0;
		return;
	}
	/* Before the first attempt ends there is nothing to say. */
	if (strstr(why, "not connected yet") || strcmp(why, s->said_why) == 0)
		return;
	if (s->said_up || !s->said_why[0])
		s->down_since = now;
	s->said_up = false;
	snprintf(s->said_why, sizeof(s->said_why), "%s", why);
	uint32_t more;
	if (vpp_log_limit_take(&s->down_lines, vpp__store_now_ms(), 5, 60000, &more))
		vpp_log(VPP_LOG_WARN, "store",
			"database unavailable: %s; rows go to the journal until it is back%s",
			why, more ? " (more reasons since the last line, not logged)" : "");
}

void vpp__store_update_ready(vpp_store *s)
{
	bool up = s->copy.state == VPP__PGC_READY && s->pipe.state == VPP__PGC_READY;
	log_db_change(s, up);
	pthread_mutex_lock(&s->ready_lock);
	if (up)
		s->why[0] = 0;
	else
		snprintf(s->why, sizeof(s->why), "%s",
		         s->copy.state != VPP__PGC_READY ? s->copy.err : s->pipe.err);
	pthread_mutex_unlock(&s->ready_lock);
	atomic_store(&s->db_up, up);
	vpp_gauge_set(vpp__sm.db_up, up ? 1 : 0);
}

/* ---- journal ---- */

/* Writes what was appended to the journal; rows count as durable once
 * written (a failed sync after the write is logged, not held against them).
 * Returns false when records still wait in memory. */
static bool commit_journal(vpp_store *s)
{
	int rv = vpp_journal_commit(s->journal);
	int err = errno;
	if (vpp_journal_unwritten(s->journal) == 0) {
		atomic_fetch_add(&s->n_durable, s->rows_unwritten);
		s->rows_unwritten = 0;
	}
	if (rv == 0)
		return true;
	static vpp_log_limit lines;
	uint32_t more;
	vpp_counter_inc(vpp__sm.db_errors);
	if (vpp_log_limit_take(&lines, (int64_t)uv_now(&s->loop), 1, 10000, &more))
		vpp_log(VPP_LOG_ERROR, "store",
		        "journal %s: cannot write or sync (%s): %llu bytes wait in memory; past %u "
		        "MiB new telemetry is refused (%u more failures)",
		        s->journal_dir, strerror(err),
		        (unsigned long long)vpp_journal_unwritten(s->journal),
		        VPP__JOURNAL_MAX_UNWRITTEN >> 20, more);
	return vpp_journal_unwritten(s->journal) == 0;
}

static void set_spilling(vpp_store *s, bool on)
{
	s->spilling = on;
	s->tail_replay = false;
	atomic_store(&s->spilling_pub, on);
}

/* True when new work may bypass the journal: it is empty, or its last chunk
 * is being replayed (waiting for the replay to reach a still journal would
 * never end under sustained load). */
static bool bypass_journal(const vpp_store *s)
{
	return !s->spilling || s->tail_replay;
}

int vpp__store_journal_rows(vpp_store *s, const vpp_telemetry_row *r, size_t n)
{
	unsigned char buf[VPP__ROW_WIRE_MAX];
	for (size_t i = 0; i < n; i++) {
		size_t len = vpp__row_encode(&r[i], buf);
		int rv = vpp_journal_append(s->journal, VPP__JREC_TELEMETRY, buf, len);
		if (rv != 0) {
			/* The rows appended so far are journaled too: the journal is
			 * the path now, and their replay deduplicates a retry. */
			if (i)
				set_spilling(s, true);
			return rv;
		}
	}
	set_spilling(s, true);
	s->rows_unwritten += n; /* durable once a commit writes them */
	atomic_fetch_add(&s->n_journaled, n);
	vpp_counter_add(vpp__sm.rows_journaled, n);
	return 0;
}

int vpp__store_journal_item(vpp_store *s, const vpp__item *it)
{
	int rv = vpp_journal_append(s->journal, VPP__JREC_STMT, it->st.blob, it->st.len);
	if (rv == 0)
		set_spilling(s, true);
	else
		vpp__store_lost(s, 0, 1);
	return rv;
}

/* True when the journal may not take more new work: past its limit, or
 * past what may wait in memory while its writes fail. At shutdown what was
 * accepted is kept anyway (the queues bound the excess). */
static bool journal_full(vpp_store *s)
{
	return !atomic_load(&s->closed) &&
	       ((int64_t)vpp_journal_bytes(s->journal) >= s->o.journal_max_bytes ||
		vpp_journal_unwritten(s->journal) >= VPP__JOURNAL_MAX_UNWRITTEN);
}

void vpp__store_lost(vpp_store *s, uint64_t rows, uint64_t writes)
{
	vpp_counter_add(vpp__sm.rows_lost, rows);
	vpp_counter_add(vpp__sm.writes_lost, writes);
	atomic_fetch_add(&s->n_rows_lost, rows);
	atomic_fetch_add(&s->n_writes_lost, writes);
	s->lost_rows_unlogged += rows;
	s->lost_writes_unlogged += writes;
}

#define LOST_LOG_MS 1000

/* Logs what was lost since the last time, at most once a second unless
 * |now_anyway|. */
static void log_lost(vpp_store *s, bool now_anyway)
{
	uint64_t now = uv_now(&s->loop);
	if (!s->lost_rows_unlogged && !s->lost_writes_unlogged)
		return;
	if (!now_anyway && now - s->lost_logged_at < LOST_LOG_MS)
		return;
	vpp_log(VPP_LOG_ERROR, "store",
	        "lost %llu telemetry rows and %llu other writes: the journal (%s, %llu bytes, "
	        "limit %lld) is full or failing",
	        (unsigned long long)s->lost_rows_unlogged,
	        (unsigned long long)s->lost_writes_unlogged, s->journal_dir,
	        (unsigned long long)vpp_journal_bytes(s->journal),
	        (long long)s->o.journal_max_bytes);
	s->lost_rows_unlogged = s->lost_writes_unlogged = 0;
	s->lost_logged_at = now;
}

void vpp__store_replay_done(vpp_store *s, uint64_t gen)
{
	if (gen != s->replay_gen || !s->replay_active)
		return;
	if (--s->replay_outstanding > 0)
		return;
	vpp_journal_release(s->journal, s->replay_end);
	s->replay_active = false;
	if (s->tail_replay && vpp_journal_bytes(s->journal) == 0) {
		set_spilling(s, false);
		s->read_pos = (vpp_journal_pos){0, 0};
	}
}

void vpp__store_replay_abandon(vpp_store *s)
{
	if (!s->replay_active)
		return;
	/* What was sent of this chunk is still in the journal: start over from
	 * the oldest record; deduplication absorbs what did commit. What was
	 * not sent yet is dropped here, or the next chunk would queue it a
	 * second time (and again at every abandon). */
	vpp__itemq keep = {0};
	vpp__item *it;
	while ((it = vpp__itemq_pop(&s->pending)) != NULL) {
		if (it->from_journal && it->gen == s->replay_gen)
			vpp__item_free(it);
		else
			vpp__itemq_push(&keep, it);
	}
	s->pending = keep;
	s->replay_gen++;
	s->replay_active = false;
	s->tail_replay = false;
	s->replay_outstanding = 0;
	s->read_pos = (vpp_journal_pos){0, 0};
}

static bool pos_at_or_after(vpp_journal_pos a, vpp_journal_pos b)
{
	return a.seg > b.seg || (a.seg == b.seg && a.off >= b.off);
}

/* A record that passed the checks at open no longer reads back (a disk
 * error under us): give up the rest of its segment only, and say so. */
static void skip_damaged(vpp_store *s, int rv)
{
	vpp_journal_pos at = s->read_pos;
	uint64_t bytes = vpp_journal_skip_segment(s->journal, &s->read_pos);
	vpp_counter_add(vpp__sm.journal_discarded, bytes);
	vpp_log(VPP_LOG_ERROR, "store",
	        "journal %s: unreadable record in segment %llu after offset %llu (%s): skipped the "
	        "last %llu bytes of that segment, replay goes on with the next",
	        s->journal_dir, (unsigned long long)(s->read_pos.seg - 1),
	        (unsigned long long)at.off, vpp_strerror(rv), (unsigned long long)bytes);
}

/* Statements of one replay chunk are held in memory until they commit. */
#define REPLAY_STMT_BYTES (4u << 20)

/* A journal record that checks out but cannot be decoded (written by
 * another version of vppd?): it cannot be replayed, so it is lost, and
 * said so. */
static void undecodable(vpp_store *s, vpp_journal_pos at, bool row, uint16_t type)
{
	static vpp_log_limit lines;
	uint32_t more;
	/* An abandoned chunk is read again: count each record once. */
	if (!pos_at_or_after(at, s->undecodable_upto))
		return;
	s->undecodable_upto = s->read_pos;
	vpp__store_lost(s, row ? 1 : 0, row ? 0 : 1);
	if (vpp_log_limit_take(&lines, (int64_t)uv_now(&s->loop), 5, 10000, &more))
		vpp_log(VPP_LOG_ERROR, "store",
		        "journal %s: a record of type %u cannot be decoded (written by another "
		        "version?): counted lost (%u more not logged before it)",
		        s->journal_dir, (unsigned)type, more);
}

static bool stmt_decodes(const void *p, size_t len)
{
	const char *params[32];
	vpp__stmt_id id;
	int n;
	return vpp__stmt_parse(p, len, &id, params, &n) == 0;
}

/* Reads the next chunk of the journal: up to a batch of telemetry rows (to
 * the COPY connection) and the statements between them (to the pipeline),
 * at most REPLAY_STMT_BYTES of those. */
static void replay_next(vpp_store *s)
{
	vpp__batch *b = &s->inflight;
	size_t nst = 0, stbytes = 0;
	uint16_t type;
	const void *p;
	size_t len;
	int rv = 0;
	b->n = 0;
	/* What new work appended goes to the file first: the chunk then reads
	 * it, and only a chunk that reaches the true end is the tail. */
	commit_journal(s);
	while (b->n < s->o.batch_rows && stbytes < REPLAY_STMT_BYTES) {
		vpp_journal_pos at = s->read_pos;
		rv = vpp_journal_read(s->journal, &s->read_pos, &type, &p, &len);
		if (rv == VPP_ECORRUPT || rv == VPP_EIO) {
			skip_damaged(s, rv);
			continue;
		}
		if (rv != 0)
			break;
		if (type == VPP__JREC_TELEMETRY) {
			if (vpp__row_decode(p, len, &b->rows[b->n]) == 0)
				b->n++;
			else
				undecodable(s, at, true, type);
		} else if (type != VPP__JREC_STMT || !stmt_decodes(p, len)) {
			/* Queued, a statement that does not parse would hold a
			 * place in the pipeline no result ever fills. */
			undecodable(s, at, false, type);
		} else {
			vpp__item *it = calloc(1, sizeof(*it));
			if (!it || !(it->st.blob = malloc(len))) {
				free(it);
				s->read_pos = at;
				break;
			}
			memcpy(it->st.blob, p, len);
			it->st.len = len;
			it->kind = VPP__IT_WRITE;
			it->from_journal = true;
			it->gen = s->replay_gen;
			vpp__itemq_push(&s->pending, it);
			nst++;
			stbytes += len;
		}
	}
	if (b->n == 0 && nst == 0) {
		/* Caught up: the journal is fully in the database. */
		vpp_journal_pos end = vpp_journal_end(s->journal);
		if (pos_at_or_after(s->read_pos, end)) {
			vpp_journal_release(s->journal, s->read_pos);
			if (vpp_journal_bytes(s->journal) == 0) {
				set_spilling(s, false);
				s->read_pos = (vpp_journal_pos){0, 0};
			}
		}
		return;
	}
	/* This chunk ends the journal: new work stops going into it. Not
	 * while records still wait in the write buffer (the commit above
	 * failed): they come after this chunk, and new rows would pass them. */
	if (rv == VPP_ENOENT && vpp_journal_unwritten(s->journal) == 0)
		s->tail_replay = true;
	s->replay_active = true;
	s->replay_end = s->read_pos;
	s->replay_outstanding = nst + (b->n ? 1 : 0);
	if (b->n) {
		b->from_journal = true;
		b->gen = s->replay_gen;
		vpp__copy_start_batch(s);
	}
}

/* ---- hand-over from other threads ---- */

/* Moves the device states of |got| into s->states, keeping only the newest
 * (by as_of) of each device not yet sent. States never go to the journal
 * while the store runs: one per device is all that matters, and it waits in
 * memory for the database, which keeps a long outage from filling the
 * journal with states. */
static void coalesce_states(vpp_store *s, vpp__itemq *got)
{
	vpp__strset newest = {0};
	for (vpp__item *it = s->states.head; it; it = it->next)
		vpp__strset_put_max(&newest, it->key, it->as_of_ms);
	for (vpp__item *it = got->head; it; it = it->next)
		if (it->key[0])
			vpp__strset_put_max(&newest, it->key, it->as_of_ms);
	if (newest.n) {
		vpp__itemq keep = {0}, rest = {0};
		vpp__item *it;
		/* A state is dropped when a newer one of its device is queued;
		 * clearing the entry keeps one of several equal ones. */
		while ((it = vpp__itemq_pop(&s->states)) != NULL)
			vpp__itemq_push(&keep, it);
		while ((it = vpp__itemq_pop(got)) != NULL)
			vpp__itemq_push(&keep, it);
		while ((it = vpp__itemq_pop(&keep)) != NULL) {
			int64_t best;
			if (!it->key[0]) {
				vpp__itemq_push(&rest, it);
			} else if (vpp__strset_get(&newest, it->key, &best) &&
			           best == it->as_of_ms) {
				vpp__strset_put_max(&newest, it->key, INT64_MAX); /* taken */
				vpp__itemq_push(&s->states, it);
			} else {
				vpp__item_free(it);
			}
		}
		*got = rest;
	}
	vpp__strset_free(&newest);
}

static void drain_cmds(vpp_store *s)
{
	vpp__itemq got;
	pthread_mutex_lock(&s->cmd_lock);
	got = s->cmds;
	memset(&s->cmds, 0, sizeof(s->cmds));
	pthread_mutex_unlock(&s->cmd_lock);
	if (!got.head)
		return;

	bool direct = bypass_journal(s) && s->pipe.state != VPP__PGC_DOWN;
	coalesce_states(s, &got);

	vpp__item *it;
	while ((it = vpp__itemq_pop(&got)) != NULL) {
		vpp__stmt_id id = (vpp__stmt_id)(it->st.blob[0] | it->st.blob[1] << 8);
		if (id == VPP__ST_DEVICE_UPSERT) {
			/* params[0] is the device id */
			const char *params[32];
			int n;
			vpp__stmt_id sid;
			if (vpp__stmt_parse(it->st.blob, it->st.len, &sid, params, &n) == 0)
				vpp__strset_add(&s->known, params[0]);
		}
		if (it->kind != VPP__IT_WRITE) {
			/* Reads and unjournaled writes need the database now. */
			if (s->pipe.state != VPP__PGC_DOWN)
				vpp__itemq_push(&s->pending, it);
			else
				vpp__pipe_orphan(s, it, VPP_EDB);
			continue;
		}
		if (direct) {
			vpp__itemq_push(&s->pending, it);
			continue;
		}
		if (journal_full(s))
			vpp__store_lost(s, 0, 1);
		else
			vpp__store_journal_item(s, it);
		vpp__item_free(it);
	}
}

static bool row_known(vpp_store *s, const vpp_telemetry_row *r, bool *redrained)
{
	if (!s->o.check_devices || !s->devices_loaded || vpp__strset_has(&s->known, r->device_id))
		return true;
	/* A device registers before it sends: its upsert may still be in the
	 * command queue. */
	if (!*redrained) {
		*redrained = true;
		drain_cmds(s);
		return vpp__strset_has(&s->known, r->device_id);
	}
	return false;
}

/* A row of an unknown device waits this long for its registration. */
#define DEFER_GRACE_MS 3000
#define DEFER_MAX 65536

static bool defer_row(vpp_store *s, const vpp_telemetry_row *r)
{
	if (s->ndeferred == s->capdeferred) {
		size_t cap = s->capdeferred ? s->capdeferred * 2 : 256;
		if (cap > DEFER_MAX)
			return false;
		struct vpp__deferred *d = realloc(s->deferred, cap * sizeof(*d));
		if (!d)
			return false;
		s->deferred = d;
		s->capdeferred = cap;
	}
	s->deferred[s->ndeferred].row = *r;
	s->deferred[s->ndeferred].since = uv_now(&s->loop);
	s->ndeferred++;
	return true;
}

/* Routes the deferred rows whose device registered meanwhile, and rejects
 * those that waited past the grace period (all of them when |final|). */
static void drain_deferred(vpp_store *s, bool final)
{
	if (!s->ndeferred)
		return;
	uint64_t now = uv_now(&s->loop);
	bool direct = bypass_journal(s) && s->copy.state != VPP__PGC_DOWN && !final;
	size_t k = 0;
	for (size_t i = 0; i < s->ndeferred; i++) {
		struct vpp__deferred *d = &s->deferred[i];
		if (vpp__strset_has(&s->known, d->row.device_id)) {
			if (direct && s->cur.n < s->o.batch_rows) {
				if (s->cur.n == 0)
					s->cur.first_ms = now;
				s->cur.rows[s->cur.n++] = d->row;
				continue;
			}
			if (!direct && vpp__store_journal_rows(s, &d->row, 1) == 0)
				continue;
		} else if (final || now - d->since >= DEFER_GRACE_MS) {
			vpp__store_reject(s, VPP_REJECT_UNKNOWN_DEVICE, 1);
			atomic_fetch_add(&s->n_durable, 1);
			continue;
		}
		s->deferred[k++] = *d;
	}
	s->ndeferred = k;
}

/* Moves rows from the queue to the batch or the journal, a bounded number
 * per call while the store runs (the rest on the next wake-up), all of them
 * at shutdown. */
static void drain_rows(vpp_store *s)
{
	vpp_telemetry_row r;
	bool redrained = false, final = atomic_load(&s->closed);
	size_t budget = final ? SIZE_MAX : 65536;
	/* While the telemetry connection is being (re)established, rows wait
	 * in the queue; once it has failed, they spill. */
	bool direct = bypass_journal(s) && s->copy.state != VPP__PGC_DOWN;
	if (!direct && s->cur.n) {
		if (vpp__store_journal_rows(s, s->cur.rows, s->cur.n) != 0)
			return; /* out of memory: the rows stay in the batch and the queue */
		s->cur.n = 0;
	}
	while (budget--) {
		if (direct && s->cur.n >= s->o.batch_rows) {
			/* The database is behind: past half a queue, spill. */
			if (vpp__rowq_depth(s->rows) <= s->o.queue_rows / 2)
				break;
			if (vpp__store_journal_rows(s, s->cur.rows, s->cur.n) != 0)
				break;
			s->cur.n = 0;
			direct = false;
		}
		if (!direct && journal_full(s))
			break; /* full: the queue fills and submitters get VPP_EFULL */
		if (!vpp__rowq_pop(s->rows, &r))
			break;
		if (!row_known(s, &r, &redrained)) {
			if (defer_row(s, &r))
				continue;
			vpp__store_reject(s, VPP_REJECT_UNKNOWN_DEVICE, 1);
			atomic_fetch_add(&s->n_durable, 1);
			continue;
		}
		if (direct) {
			if (s->cur.n == 0)
				s->cur.first_ms = uv_now(&s->loop);
			s->cur.rows[s->cur.n++] = r;
		} else if (vpp__store_journal_rows(s, &r, 1) != 0) {
			/* Out of memory for the journal buffer: keep the row. */
			s->cur.rows[0] = r;
			s->cur.n = 1;
			break;
		}
	}
	if (budget == (size_t)-1 && !final)
		uv_async_send(&s->wake); /* more to do: come back after other events */
}

static void copy_kick(vpp_store *s)
{
	if (!vpp__pgc_usable(&s->copy) || !vpp__copy_idle(s))
		return;
	if (!s->spilling) {
		vpp__batch *c = &s->cur;
		if (c->n == 0)
			return;
		if (c->n < s->o.batch_rows &&
		    uv_now(&s->loop) - c->first_ms < (uint64_t)s->o.flush_ms && !s->stop_started)
			return;
		vpp__batch t = s->inflight;
		s->inflight = *c;
		s->inflight.from_journal = false;
		*c = t;
		c->n = 0;
		vpp__copy_start_batch(s);
		return;
	}
	if (vpp__pgc_usable(&s->pipe) && !s->replay_active && !s->stop_started)
		replay_next(s);
}

/* ---- the loop ---- */

static bool fresh_work_left(vpp_store *s)
{
	if (vpp__rowq_depth(s->rows) || s->cur.n || (s->inflight.n && !s->inflight.from_journal))
		return true;
	/* States wait for the journal's replay, which stopping does not do. */
	if (s->states.n && bypass_journal(s))
		return true;
	for (vpp__item *it = s->pending.head; it; it = it->next)
		if (!it->from_journal)
			return true;
	for (vpp__group *g = s->groups; g; g = g->next)
		for (vpp__item *it = g->items.head; it; it = it->next)
			if (!it->from_journal)
				return true;
	pthread_mutex_lock(&s->cmd_lock);
	bool cmds = s->cmds.n > 0;
	pthread_mutex_unlock(&s->cmd_lock);
	return cmds;
}

static void shutdown_now(vpp_store *s)
{
	/* Whatever the database has not confirmed goes to the journal. */
	if (s->copy.state == VPP__PGC_SETUP || s->copy.state == VPP__PGC_READY)
		s->copy.on_lost(&s->copy);
	if (s->pipe.state == VPP__PGC_SETUP || s->pipe.state == VPP__PGC_READY)
		s->pipe.on_lost(&s->pipe);
	s->copy.state = s->pipe.state = VPP__PGC_DOWN;
	drain_cmds(s);
	vpp__pipe_abort_all(s, VPP_ECLOSED);
	vpp__item *it;
	while ((it = vpp__itemq_pop(&s->states)) != NULL)
		vpp__pipe_orphan(s, it, VPP_ECLOSED);
	drain_rows(s);
	drain_deferred(s, true);
	/* Left over only when the journal refused them (out of memory). */
	vpp_telemetry_row r;
	uint64_t left = s->cur.n + s->ndeferred;
	while (vpp__rowq_pop(s->rows, &r))
		left++;
	s->cur.n = s->ndeferred = 0;
	vpp__store_lost(s, left, 0);
	if (!commit_journal(s)) {
		vpp_log(VPP_LOG_ERROR, "store",
		        "journal %s: cannot write its last records at shutdown (%llu bytes held): "
		        "%llu telemetry rows lost",
		        s->journal_dir, (unsigned long long)vpp_journal_unwritten(s->journal),
		        (unsigned long long)s->rows_unwritten);
		vpp__store_lost(s, s->rows_unwritten, 0);
	}
	s->rows_unwritten = 0;
	if (vpp_journal_sync(s->journal) != 0)
		vpp_log(VPP_LOG_ERROR, "store", "journal %s: cannot sync at shutdown",
		        s->journal_dir);
	log_lost(s, true);
	vpp__pgc_close(&s->copy);
	vpp__pgc_close(&s->pipe);
	uv_close((uv_handle_t *)&s->wake, NULL);
	uv_close((uv_handle_t *)&s->tick, NULL);
	uv_close((uv_handle_t *)&s->maint, NULL);
}

void vpp__store_pump(vpp_store *s)
{
	if (atomic_load(&s->closed))
		return;
	drain_cmds(s);
	drain_deferred(s, false);
	drain_rows(s);
	copy_kick(s);
	drain_rows(s);
	vpp__pipe_kick(s);
	commit_journal(s);
	uint64_t jb = vpp_journal_bytes(s->journal);
	atomic_store(&s->journal_bytes, jb);
	vpp_gauge_set(vpp__sm.journal_bytes, (double)jb);
	vpp_gauge_set(vpp__sm.queue_depth, (double)vpp__rowq_depth(s->rows));
	log_lost(s, false);

	if (!atomic_load(&s->stopping))
		return;
	uint64_t now = uv_now(&s->loop);
	if (!s->stop_started) {
		s->stop_started = true;
		s->stop_deadline = now + (uint64_t)s->o.stop_timeout_ms;
		copy_kick(s);
		vpp__pipe_kick(s);
	}
	bool busy = fresh_work_left(s) || (s->inflight.n && s->copy.state == VPP__PGC_READY);
	if ((busy && now < s->stop_deadline && s->copy.state == VPP__PGC_READY &&
	     s->pipe.state == VPP__PGC_READY))
		return;
	atomic_store(&s->closed, true);
	shutdown_now(s);
}

static void on_wake(uv_async_t *h)
{
	vpp__store_pump(h->data);
}

static void on_tick(uv_timer_t *t)
{
	vpp__store_pump(t->data);
}

static int push_cmd(vpp_store *s, vpp__item *it);

static vpp__item *item_new(vpp__item_kind kind, vpp__stmt_id id, const char *const *params, int n)
{
	vpp__item *it = calloc(1, sizeof(*it));
	if (!it)
		return NULL;
	it->kind = kind;
	if (vpp__stmt_build(&it->st, id, params, n) != 0) {
		free(it);
		return NULL;
	}
	return it;
}

static void queue_maintenance(vpp_store *s)
{
	if (!s->o.maintain_partitions)
		return;
	char part[32], back[32], ahead[32], keep[32];
	snprintf(part, sizeof(part), "%lld hours", (long long)s->o.partition_hours);
	snprintf(back, sizeof(back), "%lld seconds", (long long)(s->o.max_past_ms / 1000));
	snprintf(ahead, sizeof(ahead), "%lld hours",
	         (long long)(s->o.partition_hours * s->o.partitions_ahead));
	snprintf(keep, sizeof(keep), "%lld days",
	         (long long)(s->o.retention_days ? s->o.retention_days : 1000000));
	const char *p[4] = {part, back, ahead, keep};
	vpp__item *it = item_new(VPP__IT_FIRE, VPP__ST_MAINTAIN, p, 4);
	if (it)
		vpp__itemq_push_front(&s->pending, it);
}

static void on_maint(uv_timer_t *t)
{
	vpp_store *s = t->data;
	if (s->pipe.state == VPP__PGC_READY)
		queue_maintenance(s);
	vpp__store_pump(s);
}

#define MAINT_INTERVAL_MS (3600 * 1000)
#define MAINT_RETRY_MIN_MS (10 * 1000)

void vpp__store_maintenance_done(vpp_store *s, const char *err)
{
	if (!err) {
		s->maint_failing = false;
		s->maint_backoff_ms = MAINT_RETRY_MIN_MS;
		return;
	}
	/* Not the connection's fault (e.g. 42P17: the partition width changed
	 * on an existing database; a lock or statement timeout): the other
	 * writes go on, the call is tried again later. */
	vpp_counter_inc(vpp__sm.maint_errors);
	vpp_log(VPP_LOG_ERROR, "store",
	        "telemetry partition maintenance failed, next try in %lld s: %.*s",
	        (long long)(s->maint_backoff_ms / 1000), (int)strcspn(err, "\n"), err);
	s->maint_failing = true;
	uv_timer_start(&s->maint, on_maint, (uint64_t)s->maint_backoff_ms, MAINT_INTERVAL_MS);
	s->maint_backoff_ms *= 2;
	if (s->maint_backoff_ms > MAINT_INTERVAL_MS)
		s->maint_backoff_ms = MAINT_INTERVAL_MS;
}

void vpp__store_on_pipe_ready(vpp_store *s)
{
	/* A failing maintenance waits for its own timer, not for reconnects. */
	if (!s->maint_failing)
		queue_maintenance(s);
	if (!s->devices_loaded && s->o.check_devices) {
		vpp__item *it = item_new(VPP__IT_DEVICE_IDS, VPP__ST_DEVICE_IDS, NULL, 0);
		if (it)
			vpp__itemq_push_front(&s->pending, it);
	}
}

static void *thread_main(void *arg)
{
	vpp_store *s = arg;
	uint64_t tick = (uint64_t)(s->o.flush_ms / 4 > 0 ? s->o.flush_ms / 4 : 1);
	if (tick > 50)
		tick = 50;
	uv_timer_start(&s->tick, on_tick, tick, tick);
	uv_timer_start(&s->maint, on_maint, MAINT_INTERVAL_MS, MAINT_INTERVAL_MS);
	vpp__pgc_connect(&s->copy);
	vpp__pgc_connect(&s->pipe);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* ---- public API ---- */

static int check_options(const vpp_store_options *o)
{
	if (!o->conninfo || !o->node_id || !vpp_id_valid(o->node_id) || !o->journal_dir ||
	    !o->journal_dir[0] || o->queue_rows < 2 || o->batch_rows < 1 ||
	    o->batch_rows > 1000000 || o->flush_ms < 1 || o->reconnect_min_ms < 1 ||
	    o->reconnect_max_ms < o->reconnect_min_ms || o->partition_hours < 1 ||
	    o->journal_max_bytes < 1 || o->stop_timeout_ms < 0 || o->max_past_ms < 0 ||
	    o->max_future_ms < 0 || o->fsync_policy < VPP_JOURNAL_FSYNC_ALWAYS ||
	    o->fsync_policy > VPP_JOURNAL_FSYNC_NEVER)
		return VPP_EINVAL;
	return 0;
}

static void free_store(vpp_store *s)
{
	vpp__item *it;
	while ((it = vpp__itemq_pop(&s->cmds)) != NULL)
		vpp__item_free(it);
	vpp_journal_close(s->journal);
	vpp__rowq_free(s->rows);
	vpp__strset_free(&s->known);
	free(s->cur.rows);
	free(s->inflight.rows);
	free(s->deferred);
	vpp__buf_free(&s->copybuf);
	pthread_mutex_destroy(&s->cmd_lock);
	pthread_mutex_destroy(&s->ready_lock);
	free(s->conninfo);
	free(s->node_id);
	free(s->journal_dir);
	free(s);
}

int vpp_store_start(const vpp_store_options *o, vpp_store **ret)
{
	int rv;
	uint64_t discarded = 0;
	if ((rv = check_options(o)) != 0)
		return rv;
	vpp__store_metrics_init();
	vpp_store *s = calloc(1, sizeof(*s));
	if (!s)
		return VPP_ENOMEM;
	pthread_mutex_init(&s->cmd_lock, NULL);
	pthread_mutex_init(&s->ready_lock, NULL);
	s->o = *o;
	s->conninfo = strdup(o->conninfo);
	s->node_id = strdup(o->node_id);
	s->journal_dir = strdup(o->journal_dir);
	rv = VPP_ENOMEM;
	if (!s->conninfo || !s->node_id || !s->journal_dir)
		goto fail;
	s->o.conninfo = s->conninfo;
	s->o.node_id = s->node_id;
	s->o.journal_dir = s->journal_dir;
	s->cmd_max = s->o.queue_rows;
	if ((rv = vpp__batch_reserve(&s->cur, s->o.batch_rows)) != 0 ||
	    (rv = vpp__batch_reserve(&s->inflight, s->o.batch_rows)) != 0 ||
	    (rv = vpp__rowq_new(s->o.queue_rows, &s->rows)) != 0)
		goto fail;
	vpp_journal_options jo = {o->fsync_policy, o->fsync_interval_ms, 64u << 20};
	if ((rv = vpp_journal_open(o->journal_dir, &jo, &s->journal, &discarded)) != 0)
		goto fail;
	vpp_counter_add(vpp__sm.journal_discarded, discarded);
	if (discarded)
		vpp_log(VPP_LOG_WARN, "store",
		        "journal %s: %llu bytes after the last whole record were cut at open (a "
		        "write torn by a crash, or damage): those records are lost",
		        o->journal_dir, (unsigned long long)discarded);
	atomic_store(&s->journal_bytes, vpp_journal_bytes(s->journal));
	if (vpp_journal_bytes(s->journal) > 0)
		set_spilling(s, true);
	rv = VPP_EIO;
	if (uv_loop_init(&s->loop) != 0)
		goto fail;
	uv_async_init(&s->loop, &s->wake, on_wake);
	s->wake.data = s;
	uv_timer_init(&s->loop, &s->tick);
	s->tick.data = s;
	uv_timer_init(&s->loop, &s->maint);
	s->maint.data = s;
	s->maint_backoff_ms = MAINT_RETRY_MIN_MS;
	vpp__copy_init(s);
	vpp__pipe_init(s);
	vpp__store_update_ready(s);
	if (pthread_create(&s->thread, NULL, thread_main, s) != 0) {
		uv_close((uv_handle_t *)&s->wake, NULL);
		uv_close((uv_handle_t *)&s->tick, NULL);
		uv_close((uv_handle_t *)&s->maint, NULL);
		vpp__pgc_close(&s->copy);
		vpp__pgc_close(&s->pipe);
		uv_run(&s->loop, UV_RUN_DEFAULT);
		uv_loop_close(&s->loop);
		goto fail;
	}
	*ret = s;
	return 0;
fail:
	free_store(s);
	return rv;
}

void vpp_store_stop(vpp_store *s)
{
	if (!s)
		return;
	atomic_store(&s->stopping, true);
	uv_async_send(&s->wake);
	pthread_join(s->thread, NULL);
	uv_loop_close(&s->loop);
	/* A caller that raced with the stop got in after the last drain. */
	uint64_t rows = vpp__rowq_depth(s->rows), writes = s->cmds.n;
	if (rows || writes) {
		vpp__store_lost(s, rows, writes);
		vpp_log(VPP_LOG_ERROR, "store",
		        "lost %llu telemetry rows and %llu other writes submitted during the stop",
		        (unsigned long long)rows, (unsigned long long)writes);
	}
	free_store(s);
}

int vpp_store_submit_telemetry(vpp_store *s, const vpp_telemetry_row *row)
{
	if (atomic_load_explicit(&s->stopping, memory_order_relaxed))
		return VPP_ECLOSED;
	vpp_reject_reason why =
	    vpp_telemetry_validate(row, vpp__store_now_ms(), s->o.max_past_ms, s->o.max_future_ms);
	if (why != VPP_REJECT_NONE) {
		vpp_counter_inc(vpp__sm.rejected[why]);
		return VPP_EINVAL;
	}
	size_t depth;
	if (vpp__rowq_push(s->rows, row, &depth) != 0)
		return VPP_EFULL;
	atomic_fetch_add_explicit(&s->n_submitted, 1, memory_order_relaxed);
	/* Wake the store thread once per batch's worth; its timer catches the
	 * rest within flush_ms. */
	if (depth % s->o.batch_rows == 0)
		uv_async_send(&s->wake);
	return 0;
}

static int push_cmd(vpp_store *s, vpp__item *it)
{
	if (!it)
		return VPP_ENOMEM;
	if (atomic_load(&s->stopping)) {
		vpp__item_free(it);
		return VPP_ECLOSED;
	}
	pthread_mutex_lock(&s->cmd_lock);
	if (s->cmds.n >= s->cmd_max) {
		pthread_mutex_unlock(&s->cmd_lock);
		vpp__item_free(it);
		return VPP_EFULL;
	}
	vpp__itemq_push(&s->cmds, it);
	pthread_mutex_unlock(&s->cmd_lock);
	uv_async_send(&s->wake);
	return 0;
}

#define D(x) snprintf(b[i], sizeof(b[i]), "%.17g", (double)(x)), p[i] = b[i], i++
#define I(x) snprintf(b[i], sizeof(b[i]), "%lld", (long long)(x)), p[i] = b[i], i++
#define S(x) p[i++] = (x)

static bool finite_all(const double *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] != v[i] || v[i] - v[i] != 0)
			return false;
	return true;
}

int vpp_store_upsert_device(vpp_store *s, const vpp_store_device *d)
{
	double v[6] = {d->rated_charge_kw, d->rated_discharge_kw, d->capacity_kwh, d->min_soc,
	               d->max_soc,         d->ramp_kw_per_s};
	if (!vpp_id_valid(d->device_id) || !memchr(d->firmware, 0, sizeof(d->firmware)) ||
	    !finite_all(v, 6))
		return VPP_EINVAL;
	char b[10][32];
	const char *p[10];
	int i = 0;
	S(d->device_id);
	S(d->firmware);
	D(d->rated_charge_kw);
	D(d->rated_discharge_kw);
	D(d->capacity_kwh);
	D(d->min_soc);
	D(d->max_soc);
	D(d->ramp_kw_per_s);
	S(s->node_id);
	I(d->last_seen_ms);
	return push_cmd(s, item_new(VPP__IT_WRITE, VPP__ST_DEVICE_UPSERT, p, i));
}

static const char *status_name(vpp_store_device_status st)
{
	switch (st) {
	case VPP_STORE_DEVICE_STALE:
		return "stale";
	case VPP_STORE_DEVICE_DEGRADED:
		return "degraded";
	case VPP_STORE_DEVICE_OFFLINE:
		return "offline";
	default:
		return "online";
	}
}

int vpp_store_put_device_states(vpp_store *s, const vpp_store_device_state *st, size_t n)
{
	vpp__itemq q = {0};
	vpp__item *it;
	int rv = 0;
	for (size_t k = 0; k < n; k++) {
		const vpp_store_device_state *x = &st[k];
		double v[7] = {x->power_kw,    x->power_sigma_kw, x->soc,        x->soc_sigma,
		               x->setpoint_kw, x->availability,   x->reliability};
		if (!vpp_id_valid(x->device_id) || !finite_all(v, 7)) {
			rv = VPP_EINVAL;
			goto fail;
		}
		char b[11][32];
		const char *p[11];
		int i = 0;
		S(x->device_id);
		S(s->node_id);
		I(x->as_of_ms);
		S(status_name(x->status));
		D(x->power_kw);
		D(x->power_sigma_kw);
		D(x->soc);
		D(x->soc_sigma);
		D(x->setpoint_kw);
		D(x->availability);
		D(x->reliability);
		if (!(it = item_new(VPP__IT_WRITE, VPP__ST_DEVICE_STATE, p, i))) {
			rv = VPP_ENOMEM;
			goto fail;
		}
		memcpy(it->key, x->device_id, sizeof(it->key));
		it->as_of_ms = x->as_of_ms;
		vpp__itemq_push(&q, it);
	}
	if (atomic_load(&s->stopping)) {
		rv = VPP_ECLOSED;
		goto fail;
	}
	pthread_mutex_lock(&s->cmd_lock);
	/* One batch larger than the bound is let in when the queue is empty. */
	if (s->cmds.n && s->cmds.n + q.n > s->cmd_max) {
		pthread_mutex_unlock(&s->cmd_lock);
		rv = VPP_EFULL;
		goto fail;
	}
	if (q.head) {
		if (s->cmds.tail)
			s->cmds.tail->next = q.head;
		else
			s->cmds.head = q.head;
		s->cmds.tail = q.tail;
		s->cmds.n += q.n;
	}
	pthread_mutex_unlock(&s->cmd_lock);
	uv_async_send(&s->wake);
	return 0;
fail:
	while ((it = vpp__itemq_pop(&q)) != NULL)
		vpp__item_free(it);
	return rv;
}

static void put_estimate(char b[][32], const char **p, int *ip, const vpp_estimate_value *e)
{
	int i = *ip;
	D(e->value);
	D(e->sigma);
	D(e->lower);
	D(e->upper);
	*ip = i;
}

int vpp_store_put_fleet_tick(vpp_store *s, const vpp_store_tick_row *t)
{
	char b[29][32];
	const char *p[29];
	int i = 0;
	S(s->node_id);
	I(t->tick_ms);
	D(t->target_kw);
	D(t->adjusted_target_kw);
	D(t->commanded_kw);
	put_estimate(b, p, &i, &t->measured_kw);
	put_estimate(b, p, &i, &t->discharge_headroom_kw);
	put_estimate(b, p, &i, &t->charge_headroom_kw);
	put_estimate(b, p, &i, &t->energy_kwh);
	put_estimate(b, p, &i, &t->expected_kw);
	I(t->online);
	I(t->stale);
	I(t->degraded);
	I(t->offline);
	/* Estimates may legitimately be infinite (no data): PostgreSQL takes
	 * "inf"/"nan" as float8 text too. */
	for (int k = 2; k < 25; k++) {
		if (strcmp(b[k], "inf") == 0)
			snprintf(b[k], sizeof(b[k]), "Infinity");
		else if (strcmp(b[k], "-inf") == 0)
			snprintf(b[k], sizeof(b[k]), "-Infinity");
		else if (strcmp(b[k], "nan") == 0 || strcmp(b[k], "-nan") == 0)
			snprintf(b[k], sizeof(b[k]), "NaN");
	}
	return push_cmd(s, item_new(VPP__IT_WRITE, VPP__ST_FLEET_TICK, p, i));
}

static int64_t new_uid(void)
{
	uint64_t u = 0;
	if (getrandom(&u, sizeof(u), 0) != (ssize_t)sizeof(u))
		u = (uint64_t)vpp__store_now_ms() * 1000003u ^ (uint64_t)rand();
	return (int64_t)(u >> 1);
}

int vpp_store_put_device_event(vpp_store *s, const char *device_id, int64_t at_ms,
                               vpp_store_event_kind kind, const char *reason)
{
	static const char *const kinds[] = {"connect", "disconnect", "replaced", "degraded",
	                                    "recovered"};
	if (!vpp_id_valid(device_id) || (unsigned)kind > VPP_STORE_EVENT_RECOVERED)
		return VPP_EINVAL;
	char b[6][32];
	const char *p[6];
	int i = 0;
	I(new_uid());
	S(device_id);
	S(s->node_id);
	I(at_ms);
	S(kinds[kind]);
	S(reason ? reason : "");
	return push_cmd(s, item_new(VPP__IT_WRITE, VPP__ST_DEVICE_EVENT, p, i));
}

int vpp_store_put_audit(vpp_store *s, const vpp_audit_entry *a)
{
	if (!memchr(a->principal, 0, sizeof(a->principal)) ||
	    !memchr(a->action, 0, sizeof(a->action)) ||
	    !memchr(a->request_id, 0, sizeof(a->request_id)) ||
	    !memchr(a->detail, 0, sizeof(a->detail)) || !memchr(a->result, 0, sizeof(a->result)))
		return VPP_EINVAL;
	char b[8][32];
	const char *p[8];
	int i = 0;
	I(new_uid());
	I(a->at_ms);
	S(s->node_id);
	S(a->principal);
	S(a->action);
	S(a->request_id);
	S(a->detail);
	S(a->result);
	return push_cmd(s, item_new(VPP__IT_WRITE, VPP__ST_AUDIT, p, i));
}

int vpp_store_heartbeat(vpp_store *s, int64_t started_at_ms, const char *version)
{
	char b[3][32];
	const char *p[3];
	int i = 0;
	S(s->node_id);
	S(version ? version : "");
	I(started_at_ms);
	return push_cmd(s, item_new(VPP__IT_FIRE, VPP__ST_HEARTBEAT, p, i));
}

int vpp_store_insert_setpoint(vpp_store *s, const vpp_setpoint *sp, vpp_store_setpoint_cb cb,
                              void *user_data)
{
	double v[3] = {sp->target_kw, sp->valid_for_s, sp->ramp_kw_per_s};
	if (!cb || !sp->request_id[0] || !memchr(sp->request_id, 0, sizeof(sp->request_id)) ||
	    !memchr(sp->reason, 0, sizeof(sp->reason)) ||
	    !memchr(sp->principal, 0, sizeof(sp->principal)) || !finite_all(v, 3))
		return VPP_EINVAL;
	char b[8][32];
	const char *p[8];
	int i = 0;
	S(sp->request_id);
	D(sp->target_kw);
	D(sp->valid_for_s);
	D(sp->ramp_kw_per_s);
	S(sp->reason);
	S(sp->principal);
	S(s->node_id);
	I(sp->created_at_ms);
	vpp__item *it = item_new(VPP__IT_SETPOINT, VPP__ST_SETPOINT, p, i);
	if (it) {
		it->cb = (void (*)(void))cb;
		it->user_data = user_data;
	}
	return push_cmd(s, it);
}

int vpp_store_list_devices(vpp_store *s, const char *after_id, size_t limit,
                           vpp_store_devices_cb cb, void *user_data)
{
	if (!cb || limit < 1 || limit > 10000 || (after_id && strlen(after_id) >= VPP_ID_CAP))
		return VPP_EINVAL;
	char b[2][32];
	const char *p[2];
	int i = 0;
	S(after_id ? after_id : "");
	I(limit);
	vpp__item *it = item_new(VPP__IT_DEVICES, VPP__ST_LIST_DEVICES, p, i);
	if (it) {
		it->cb = (void (*)(void))cb;
		it->user_data = user_data;
	}
	return push_cmd(s, it);
}

int vpp_store_get_device(vpp_store *s, const char *device_id, vpp_store_devices_cb cb,
                         void *user_data)
{
	if (!cb || !device_id || !vpp_id_valid(device_id))
		return VPP_EINVAL;
	const char *p[1] = {device_id};
	vpp__item *it = item_new(VPP__IT_DEVICES, VPP__ST_GET_DEVICE, p, 1);
	if (it) {
		it->cb = (void (*)(void))cb;
		it->user_data = user_data;
		it->get_one = true;
	}
	return push_cmd(s, it);
}

int vpp_store_device_telemetry(vpp_store *s, const char *device_id, int64_t since_ms, size_t limit,
                               vpp_store_telemetry_cb cb, void *user_data)
{
	if (!cb || !device_id || !vpp_id_valid(device_id) || limit < 1 || limit > 100000)
		return VPP_EINVAL;
	char b[3][32];
	const char *p[3];
	int i = 0;
	S(device_id);
	I(since_ms);
	I(limit);
	vpp__item *it = item_new(VPP__IT_TELEMETRY, VPP__ST_DEVICE_TELEMETRY, p, i);
	if (it) {
		it->cb = (void (*)(void))cb;
		it->user_data = user_data;
	}
	return push_cmd(s, it);
}

bool vpp_store_ready(vpp_store *s, char *why, size_t whylen)
{
	bool up = atomic_load(&s->db_up);
	if (!up && why && whylen) {
		pthread_mutex_lock(&s->ready_lock);
		snprintf(why, whylen, "%s", s->why);
		pthread_mutex_unlock(&s->ready_lock);
	}
	return up;
}

void vpp_store_get_stats(vpp_store *s, vpp_store_stats *st)
{
	st->submitted = atomic_load(&s->n_submitted);
	st->durable = atomic_load(&s->n_durable);
	st->committed = atomic_load(&s->n_committed);
	st->journaled = atomic_load(&s->n_journaled);
	st->replayed = atomic_load(&s->n_replayed);
	st->already_stored = atomic_load(&s->n_already);
	st->rejected = atomic_load(&s->n_rejected);
	st->writes_done = atomic_load(&s->n_writes_done);
	st->writes_failed = atomic_load(&s->n_writes_failed);
	st->rows_lost = atomic_load(&s->n_rows_lost);
	st->writes_lost = atomic_load(&s->n_writes_lost);
	st->queue_depth = vpp__rowq_depth(s->rows);
	st->journal_bytes = atomic_load(&s->journal_bytes);
	st->db_up = atomic_load(&s->db_up);
	st->spilling = atomic_load(&s->spilling_pub);
	st->last_lag_ms = atomic_load(&s->last_lag_ms);
	st->max_lag_ms = atomic_load(&s->max_lag_ms);
}
