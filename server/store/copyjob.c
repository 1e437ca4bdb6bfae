/* Telemetry writes on the COPY connection.
 *
 * A batch goes first as one COPY telemetry FROM STDIN (FORMAT binary): its
 * own transaction, the fast path. If the database refuses it for its data,
 * the batch is written again through a temporary staging table,
 *   BEGIN; COPY vpp_stage ...; INSERT INTO telemetry SELECT * FROM vpp_stage
 *   ON CONFLICT DO NOTHING; COMMIT
 * which skips rows already stored (a journal replay, a batch whose commit
 * was in doubt). If that fails too, the range is split in halves and each
 * retried, down to single rows, which are rejected and counted: one bad row
 * never sinks the rows of other devices. When the connection itself fails,
 * a fresh batch goes to the journal and a replayed one stays there; so it
 * does when the database refuses it for its state (read-only, a timeout),
 * and the connection then holds off for a while. */
#include "store_int.h"
#include "vpp/error.h"

#include <stdlib.h>
#include <string.h>

#define COPY_DIRECT "COPY telemetry (" VPP__TELEMETRY_COLUMNS ") FROM STDIN (FORMAT binary)"
#define COPY_STAGED "BEGIN; COPY vpp_stage (" VPP__TELEMETRY_COLUMNS ") FROM STDIN (FORMAT binary)"
#define MERGE "INSERT INTO telemetry SELECT * FROM vpp_stage ON CONFLICT DO NOTHING; COMMIT"
#define SETUP                                                                                      \
	"SET synchronous_commit = on; CREATE TEMP TABLE IF NOT EXISTS vpp_stage "                  \
	"(LIKE telemetry) ON COMMIT DELETE ROWS"

int vpp__batch_reserve(vpp__batch *b, size_t n)
{
	if (b->cap >= n)
		return 0;
	vpp_telemetry_row *r = realloc(b->rows, n * sizeof(*r));
	if (!r)
		return VPP_ENOMEM;
	b->rows = r;
	b->cap = n;
	return 0;
}

bool vpp__copy_idle(const vpp_store *s)
{
	return s->inflight.n == 0 && s->cstep == VPP__CS_IDLE;
}

static int send_query(vpp_store *s, const char *sql, vpp__copy_step next)
{
	if (!PQsendQuery(s->copy.conn, sql)) {
		vpp__pgc_fail(&s->copy, PQerrorMessage(s->copy.conn));
		return -1;
	}
	s->cstep = next;
	return vpp__pgc_flush(&s->copy);
}

static void start_range(vpp_store *s)
{
	vpp__range *r = &s->range;
	s->copybuf.len = 0;
	int rv = vpp__copy_header(&s->copybuf);
	for (size_t i = r->lo; rv == 0 && i < r->hi; i++)
		rv = vpp__copy_row(&s->copybuf, &s->inflight.rows[i], s->node_id);
	if (rv == 0)
		rv = vpp__copy_trailer(&s->copybuf);
	if (rv != 0) {
		vpp__pgc_fail(&s->copy, "out of memory encoding a batch");
		return;
	}
	s->range_failed = s->range_transient = s->range_broken = false;
	s->range_dupes = 0;
	send_query(s, r->staged ? COPY_STAGED : COPY_DIRECT, VPP__CS_COPY_START);
}

/* The whole of |inflight| is written (or rejected). */
static void batch_done(vpp_store *s)
{
	vpp__batch *b = &s->inflight;
	uint64_t now = uv_now(&s->loop), ok = b->n - s->batch_rejected;
	int64_t wall = vpp__store_now_ms(), lag = 0;
	for (size_t i = 0; i < b->n; i++)
		if (wall - b->rows[i].received_at_ms > lag)
			lag = wall - b->rows[i].received_at_ms;
	vpp_histogram_observe(vpp__sm.batch_seconds, (double)(now - s->batch_start_ms) / 1000.0);
	/* The metrics count rows inserted; the stats count the rows now in the
	 * database, those it held already included. */
	size_t dupes = s->batch_dupes < ok ? s->batch_dupes : ok;
	vpp_counter_add(vpp__sm.rows_written, ok - dupes);
	vpp_counter_add(vpp__sm.rows_already, dupes);
	atomic_fetch_add(&s->n_committed, ok);
	atomic_fetch_add(&s->n_already, dupes);
	if (b->from_journal) {
		vpp_counter_add(vpp__sm.rows_replayed, ok - dupes);
		atomic_fetch_add(&s->n_replayed, ok);
		vpp__store_replay_done(s, b->gen);
	} else {
		atomic_fetch_add(&s->n_durable, b->n);
		atomic_store(&s->last_lag_ms, lag);
		if (lag > atomic_load(&s->max_lag_ms))
			atomic_store(&s->max_lag_ms, lag);
		vpp_gauge_set(vpp__sm.lag, (double)lag / 1000.0);
	}
	b->n = 0;
	s->batch_rejected = s->batch_dupes = 0;
	s->nranges = 0;
	s->cstep = VPP__CS_IDLE;
	vpp__pgc_ok(&s->copy);
}

static void next_range(vpp_store *s)
{
	if (s->nranges == 0) {
		batch_done(s);
		return;
	}
	s->range = s->ranges[--s->nranges];
	start_range(s);
}

void vpp__copy_start_batch(vpp_store *s)
{
	s->batch_start_ms = uv_now(&s->loop);
	s->batch_rejected = s->batch_dupes = 0;
	s->nranges = 0;
	s->range = (vpp__range){0, s->inflight.n, false};
	start_range(s);
}

/* The current range failed for its data: retry it another way. */
static void range_refused(vpp_store *s)
{
	vpp__range r = s->range;
	vpp_counter_inc(vpp__sm.db_errors);
	if (!r.staged) {
		r.staged = true;
		s->ranges[s->nranges++] = r;
	} else if (r.hi - r.lo == 1) {
		s->batch_rejected++;
		vpp__store_reject(s, VPP_REJECT_DB, 1);
	} else if (s->nranges + 2 <= (int)(sizeof(s->ranges) / sizeof(s->ranges[0]))) {
		size_t mid = r.lo + (r.hi - r.lo) / 2;
		s->ranges[s->nranges++] = (vpp__range){mid, r.hi, true};
		s->ranges[s->nranges++] = (vpp__range){r.lo, mid, true};
	} else {
		s->batch_rejected += r.hi - r.lo; /* unreachable: depth is log2(batch) */
		vpp__store_reject(s, VPP_REJECT_DB, r.hi - r.lo);
	}
	next_range(s);
}

/* The connection is gone or will not take |inflight| now, perhaps half
 * written: a fresh batch's outcome is unknown, so it goes to the journal (a
 * replay skips what was committed); a replayed batch is still in the
 * journal. */
static void batch_give_back(vpp_store *s)
{
	vpp__batch *b = &s->inflight;
	if (b->n && !b->from_journal) {
		if (vpp__store_journal_rows(s, b->rows, b->n) != 0)
			vpp__store_lost(s, b->n, 0);
	} else if (b->n) {
		vpp__store_replay_abandon(s);
	}
	b->n = 0;
	s->nranges = 0;
	s->batch_rejected = s->batch_dupes = 0;
	s->cstep = VPP__CS_IDLE;
}

/* Refused for the database's state: give the batch back, wait a while. */
static void batch_held(vpp_store *s)
{
	batch_give_back(s);
	vpp__pgc_hold(&s->copy, s->range_err);
}

static void range_end(vpp_store *s)
{
	if (!s->range_failed) {
		s->batch_dupes += s->range_dupes;
		next_range(s);
		return;
	}
	if (s->range_broken) {
		vpp__pgc_fail(&s->copy, s->range_err);
		return;
	}
	PGTransactionStatusType ts = PQtransactionStatus(s->copy.conn);
	if (ts == PQTRANS_INERROR || ts == PQTRANS_INTRANS) {
		send_query(s, "ROLLBACK", VPP__CS_ROLLBACK);
		return;
	}
	if (s->range_transient)
		batch_held(s);
	else
		range_refused(s);
}

static void on_result(vpp_store *s, PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);
	if (st == PGRES_FATAL_ERROR) {
		if (!s->range_failed) {
			s->range_failed = true;
			s->range_transient = vpp__pg_transient(s->copy.conn, res);
			s->range_broken = vpp__pg_conn_broken(s->copy.conn, res);
			snprintf(s->range_err, sizeof(s->range_err), "%s",
			         PQresultErrorMessage(res));
		}
		return;
	}
	if (st == PGRES_COMMAND_OK && s->cstep == VPP__CS_MERGE &&
	    strncmp(PQcmdStatus(res), "INSERT", 6) == 0) {
		/* "INSERT 0 n": n of the range's rows were new. */
		size_t n = s->range.hi - s->range.lo;
		long long inserted = atoll(PQcmdTuples(res));
		s->range_dupes = inserted >= 0 && (size_t)inserted < n ? n - (size_t)inserted : 0;
		return;
	}
	if (st == PGRES_COPY_IN && s->cstep == VPP__CS_COPY_START) {
		if (PQputCopyData(s->copy.conn, (const char *)s->copybuf.p, (int)s->copybuf.len) !=
		        1 ||
		    PQputCopyEnd(s->copy.conn, NULL) != 1) {
			vpp__pgc_fail(&s->copy, PQerrorMessage(s->copy.conn));
			return;
		}
		s->cstep = VPP__CS_COPY_END;
		vpp__pgc_flush(&s->copy);
	}
}

static void on_end(vpp_store *s)
{
	switch (s->cstep) {
	case VPP__CS_SETUP:
		if (s->range_failed) {
			vpp__pgc_fail(&s->copy, s->range_err);
			return;
		}
		s->cstep = VPP__CS_IDLE;
		vpp__pgc_ready(&s->copy);
		break;
	case VPP__CS_COPY_START:
		/* The COPY failed before CopyIn (e.g. BEGIN refused). */
		range_end(s);
		break;
	case VPP__CS_COPY_END:
		if (!s->range_failed && s->range.staged)
			send_query(s, MERGE, VPP__CS_MERGE);
		else
			range_end(s);
		break;
	case VPP__CS_MERGE:
		range_end(s);
		break;
	case VPP__CS_ROLLBACK:
		if (s->range_transient)
			batch_held(s);
		else
			range_refused(s);
		break;
	case VPP__CS_IDLE:
		break;
	}
}

static void on_io(vpp__pgc *c, int events)
{
	vpp_store *s = c->s;
	if ((events & UV_WRITABLE) && vpp__pgc_flush(c) != 0)
		return;
	if (!PQconsumeInput(c->conn)) {
		vpp__pgc_fail(c, PQerrorMessage(c->conn));
		return;
	}
	while (c->conn && s->cstep != VPP__CS_IDLE && !PQisBusy(c->conn)) {
		PGresult *res = PQgetResult(c->conn);
		if (!res) {
			/* A COPY's result is followed by NULL; in a multi-statement
			 * query, BEGIN's result is followed by the COPY's. */
			on_end(s);
			continue;
		}
		on_result(s, res);
		PQclear(res);
	}
	if (c->conn && PQstatus(c->conn) == CONNECTION_BAD)
		vpp__pgc_fail(c, PQerrorMessage(c->conn));
}

static void on_connected(vpp__pgc *c)
{
	vpp_store *s = c->s;
	s->range_failed = false;
	send_query(s, SETUP, VPP__CS_SETUP);
}

static void on_lost(vpp__pgc *c)
{
	batch_give_back(c->s);
}

void vpp__copy_init(vpp_store *s)
{
	vpp__pgc_init(s, &s->copy, "telemetry");
	s->copy.on_io = on_io;
	s->copy.on_connected = on_connected;
	s->copy.on_lost = on_lost;
}
