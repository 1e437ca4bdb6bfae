/* Every write but telemetry, and the reads, on the pipeline connection.
 *
 * Statements are prepared once per connection, then sent in pipeline mode
 * in groups ended by a Sync: a group is one implicit transaction, so many
 * small writes share a commit. A write the database refuses for its data
 * aborts its group: that one write is counted and dropped, the others are
 * sent again. A group refused for the database's state (read-only, a
 * timeout) goes to the journal and the connection holds off for a while;
 * only a broken connection is dropped. Reads, setpoint inserts and the
 * partition maintenance travel alone in their group. */
#include "store_int.h"
#include "vpp/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GROUP_MAX 256
#define GROUPS_IN_FLIGHT 32

typedef void (*devices_cb)(int, const vpp_store_device_record *, size_t, void *);
typedef void (*telemetry_cb)(int, const vpp_telemetry_row *, size_t, void *);

void vpp__itemq_push(vpp__itemq *q, vpp__item *it)
{
	it->next = NULL;
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
	q->n++;
}

void vpp__itemq_push_front(vpp__itemq *q, vpp__item *it)
{
	it->next = q->head;
	q->head = it;
	if (!q->tail)
		q->tail = it;
	q->n++;
}

vpp__item *vpp__itemq_pop(vpp__itemq *q)
{
	vpp__item *it = q->head;
	if (!it)
		return NULL;
	q->head = it->next;
	if (!q->head)
		q->tail = NULL;
	q->n--;
	it->next = NULL;
	return it;
}

void vpp__item_free(vpp__item *it)
{
	if (!it)
		return;
	free(it->st.blob);
	free(it);
}

static bool is_read(const vpp__item *it)
{
	return it->kind == VPP__IT_SETPOINT || it->kind == VPP__IT_DEVICES ||
	       it->kind == VPP__IT_TELEMETRY || it->kind == VPP__IT_DEVICE_IDS;
}

static vpp__stmt_id stmt_of(const vpp__item *it)
{
	return (vpp__stmt_id)(it->st.blob[0] | it->st.blob[1] << 8);
}

/* Travels in a group of its own, so that its failure costs no other item. */
static bool alone(const vpp__item *it)
{
	return is_read(it) || stmt_of(it) == VPP__ST_MAINTAIN;
}

static int64_t to_i64(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* NULL is NaN: a value nobody gave (a telemetry sigma the device did not
 * send), never a 0 that would claim an exact one. */
static double to_f64(const PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NAN : strtod(PQgetvalue(r, row, col), NULL);
}

static void to_str(const PGresult *r, int row, int col, char *out, size_t cap)
{
	snprintf(out, cap, "%s", PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col));
}

void vpp__setpoint_from_result(const PGresult *r, int row, vpp_setpoint *sp)
{
	memset(sp, 0, sizeof(*sp));
	sp->setpoint_id = to_i64(r, row, 0);
	to_str(r, row, 1, sp->request_id, sizeof(sp->request_id));
	sp->target_kw = to_f64(r, row, 2);
	sp->valid_for_s = to_f64(r, row, 3);
	sp->ramp_kw_per_s = to_f64(r, row, 4);
	to_str(r, row, 5, sp->reason, sizeof(sp->reason));
	to_str(r, row, 6, sp->principal, sizeof(sp->principal));
	to_str(r, row, 7, sp->node_id, sizeof(sp->node_id));
	sp->created_at_ms = to_i64(r, row, 8);
}

void vpp__row_from_result(const PGresult *r, int row, vpp_telemetry_row *t)
{
	memset(t, 0, sizeof(*t));
	to_str(r, row, 0, t->device_id, sizeof(t->device_id));
	t->seq = to_i64(r, row, 1);
	t->measured_at_ms = to_i64(r, row, 2);
	t->received_at_ms = to_i64(r, row, 3);
	t->power_kw = to_f64(r, row, 4);
	t->power_sigma_kw = to_f64(r, row, 5);
	t->soc = to_f64(r, row, 6);
	t->soc_sigma = to_f64(r, row, 7);
	t->quality = (uint32_t)to_i64(r, row, 8);
}

static vpp_store_device_status parse_status(const char *s)
{
	if (strcmp(s, "stale") == 0)
		return VPP_STORE_DEVICE_STALE;
	if (strcmp(s, "degraded") == 0)
		return VPP_STORE_DEVICE_DEGRADED;
	if (strcmp(s, "offline") == 0)
		return VPP_STORE_DEVICE_OFFLINE;
	return VPP_STORE_DEVICE_ONLINE;
}

/* Fails a read with |status| (no data). */
static void read_fail(vpp__item *it, int status)
{
	switch (it->kind) {
	case VPP__IT_SETPOINT:
		((vpp_store_setpoint_cb)it->cb)(status, NULL, false, it->user_data);
		break;
	case VPP__IT_DEVICES:
		((devices_cb)it->cb)(status, NULL, 0, it->user_data);
		break;
	case VPP__IT_TELEMETRY:
		((telemetry_cb)it->cb)(status, NULL, 0, it->user_data);
		break;
	default:
		break;
	}
}

static void deliver(vpp_store *s, vpp__item *it, const PGresult *r)
{
	int n = PQntuples(r);
	switch (it->kind) {
	case VPP__IT_DEVICE_IDS:
		for (int i = 0; i < n; i++)
			vpp__strset_add(&s->known, PQgetvalue(r, i, 0));
		s->devices_loaded = true;
		break;
	case VPP__IT_SETPOINT: {
		if (n != 1) {
			read_fail(it, VPP_EAGAIN); /* a concurrent insert of the same id */
			break;
		}
		vpp_setpoint sp;
		vpp__setpoint_from_result(r, 0, &sp);
		bool created = strcmp(PQgetvalue(r, 0, 9), "t") == 0;
		sp.newest_setpoint_id = to_i64(r, 0, 10);
		((vpp_store_setpoint_cb)it->cb)(0, &sp, created, it->user_data);
		break;
	}
	case VPP__IT_DEVICES: {
		if (n == 0) {
			((devices_cb)it->cb)(it->get_one ? VPP_ENOENT : 0, NULL, 0, it->user_data);
			break;
		}
		vpp_store_device_record *d = calloc((size_t)n, sizeof(*d));
		if (!d) {
			read_fail(it, VPP_ENOMEM);
			break;
		}
		for (int i = 0; i < n; i++) {
			vpp_store_device *in = &d[i].info;
			to_str(r, i, 0, in->device_id, sizeof(in->device_id));
			to_str(r, i, 1, in->firmware, sizeof(in->firmware));
			in->rated_charge_kw = to_f64(r, i, 2);
			in->rated_discharge_kw = to_f64(r, i, 3);
			in->capacity_kwh = to_f64(r, i, 4);
			in->min_soc = to_f64(r, i, 5);
			in->max_soc = to_f64(r, i, 6);
			in->ramp_kw_per_s = to_f64(r, i, 7);
			to_str(r, i, 8, d[i].node_id, sizeof(d[i].node_id));
			d[i].first_seen_ms = to_i64(r, i, 9);
			in->last_seen_ms = to_i64(r, i, 10);
			d[i].has_state = strcmp(PQgetvalue(r, i, 11), "t") == 0;
			if (d[i].has_state) {
				vpp_store_device_state *st = &d[i].state;
				memcpy(st->device_id, in->device_id, sizeof(st->device_id));
				st->as_of_ms = to_i64(r, i, 12);
				st->status = parse_status(PQgetvalue(r, i, 13));
				st->power_kw = to_f64(r, i, 14);
				st->power_sigma_kw = to_f64(r, i, 15);
				st->soc = to_f64(r, i, 16);
				st->soc_sigma = to_f64(r, i, 17);
				st->setpoint_kw = to_f64(r, i, 18);
				st->availability = to_f64(r, i, 19);
				st->reliability = to_f64(r, i, 20);
			}
		}
		((devices_cb)it->cb)(0, d, (size_t)n, it->user_data);
		free(d);
		break;
	}
	case VPP__IT_TELEMETRY: {
		vpp_telemetry_row *t = calloc(n ? (size_t)n : 1, sizeof(*t));
		if (!t) {
			read_fail(it, VPP_ENOMEM);
			break;
		}
		for (int i = 0; i < n; i++)
			vpp__row_from_result(r, i, &t[i]);
		((telemetry_cb)it->cb)(0, t, (size_t)n, it->user_data);
		free(t);
		break;
	}
	default:
		break;
	}
}

/* A write is done with (committed or refused). */
static void write_done(vpp_store *s, vpp__item *it, bool ok)
{
	if (it->kind == VPP__IT_WRITE) {
		if (ok) {
			atomic_fetch_add(&s->n_writes_done, 1);
			vpp_counter_inc(vpp__sm.writes);
		} else {
			atomic_fetch_add(&s->n_writes_failed, 1);
			vpp_counter_inc(vpp__sm.write_errors);
		}
		if (it->from_journal)
			vpp__store_replay_done(s, it->gen);
	}
	vpp__item_free(it);
}

/* Disposes of an item that will not get a result from this connection. */
void vpp__pipe_orphan(vpp_store *s, vpp__item *it, int status)
{
	if (it->kind == VPP__IT_WRITE && !it->from_journal) {
		vpp__store_journal_item(s, it);
	} else if (it->kind == VPP__IT_WRITE) {
		/* Of an older chunk, already abandoned: the current one is
		 * not at fault. */
		if (it->gen == s->replay_gen)
			vpp__store_replay_abandon(s);
	} else if (is_read(it)) {
		read_fail(it, status);
	}
	vpp__item_free(it);
}

void vpp__pipe_abort_all(vpp_store *s, int status)
{
	vpp__item *it;
	while (s->groups) {
		vpp__group *g = s->groups;
		s->groups = g->next;
		while ((it = vpp__itemq_pop(&g->items)) != NULL)
			vpp__pipe_orphan(s, it, status);
		free(g);
	}
	s->groups_tail = NULL;
	s->ngroups = 0;
	while ((it = vpp__itemq_pop(&s->pending)) != NULL)
		vpp__pipe_orphan(s, it, status);
}

/* |g| failed for the database's state, not its data: a maintenance call is
 * retried later by the store; anything else goes back to the journal (or
 * stays there) and the connection holds off before sending more. */
static void group_held(vpp_store *s, vpp__group *g)
{
	vpp__item *it = g->items.head;
	if (g->items.n == 1 && (stmt_of(it) == VPP__ST_MAINTAIN || is_read(it))) {
		/* A read that timed out fails alone: writes need not wait. */
		if (is_read(it))
			read_fail(it, VPP_EDB);
		else
			vpp__store_maintenance_done(s, g->err);
		vpp__item_free(vpp__itemq_pop(&g->items));
		free(g);
		return;
	}
	while ((it = vpp__itemq_pop(&g->items)) != NULL)
		vpp__pipe_orphan(s, it, VPP_EDB);
	vpp__pgc_hold(&s->pipe, g->err);
	free(g);
}

static void finish_group(vpp_store *s, vpp__group *g)
{
	vpp__item *it;
	if (g->failed >= 0 && g->broken && g->items.n) {
		vpp__pgc_fail(&s->pipe, g->err);
		return;
	}
	s->groups = g->next;
	if (!s->groups)
		s->groups_tail = NULL;
	s->ngroups--;
	if (g->items.n == 0) {
		/* The set-up group: statements prepared (or not: e.g. the schema
		 * is missing; try again later). */
		if (g->failed >= 0) {
			char why[sizeof(g->err)];
			memcpy(why, g->err, sizeof(why));
			s->groups = g;
			s->ngroups++;
			vpp__pgc_fail(&s->pipe, why);
			return;
		}
		free(g);
		vpp__pgc_ready(&s->pipe);
		vpp__store_on_pipe_ready(s);
		return;
	}
	if (g->failed < 0) {
		vpp__pgc_ok(&s->pipe);
		while ((it = vpp__itemq_pop(&g->items)) != NULL) {
			if (stmt_of(it) == VPP__ST_MAINTAIN)
				vpp__store_maintenance_done(s, NULL);
			write_done(s, it, true);
		}
		free(g);
		return;
	}
	if (g->transient) {
		group_held(s, g);
		return;
	}
	/* Refused for its data: drop the culprit, resend the rest in order. */
	vpp_counter_inc(vpp__sm.db_errors);
	vpp__itemq redo = {0};
	int i = 0;
	while ((it = vpp__itemq_pop(&g->items)) != NULL) {
		if (i++ == g->failed) {
			if (is_read(it)) {
				read_fail(it, VPP_EDB);
				vpp__item_free(it);
			} else {
				write_done(s, it, false);
			}
		} else {
			vpp__itemq_push(&redo, it);
		}
	}
	free(g);
	while (redo.tail) {
		/* push_front in reverse keeps the original order */
		vpp__item *last = redo.head, *prev = NULL;
		while (last->next) {
			prev = last;
			last = last->next;
		}
		if (prev)
			prev->next = NULL;
		else
			redo.head = NULL;
		redo.tail = prev;
		vpp__itemq_push_front(&s->pending, last);
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
	while (c->conn && s->groups && !PQisBusy(c->conn)) {
		vpp__group *g = s->groups;
		PGresult *res = PQgetResult(c->conn);
		if (!res) {
			if (g->cur)
				g->cur = g->cur->next;
			continue;
		}
		ExecStatusType st = PQresultStatus(res);
		if (st == PGRES_PIPELINE_SYNC) {
			PQclear(res);
			finish_group(s, g);
			continue;
		}
		int idx = 0;
		for (vpp__item *it = g->items.head; it && it != g->cur; it = it->next)
			idx++;
		if (st == PGRES_FATAL_ERROR) {
			if (g->failed < 0) {
				g->failed = idx;
				g->transient = vpp__pg_transient(c->conn, res);
				g->broken = vpp__pg_conn_broken(c->conn, res);
				snprintf(g->err, sizeof(g->err), "%s", PQresultErrorMessage(res));
			}
		} else if (st == PGRES_TUPLES_OK && g->cur && is_read(g->cur) && g->failed < 0) {
			deliver(s, g->cur, res);
			g->cur->kind = VPP__IT_FIRE; /* delivered: nothing more to do */
		}
		PQclear(res);
	}
	if (c->conn && PQstatus(c->conn) == CONNECTION_BAD)
		vpp__pgc_fail(c, PQerrorMessage(c->conn));
}

static vpp__group *group_new(void)
{
	vpp__group *g = calloc(1, sizeof(*g));
	if (g)
		g->failed = -1;
	return g;
}

static void group_append(vpp_store *s, vpp__group *g)
{
	if (s->groups_tail)
		s->groups_tail->next = g;
	else
		s->groups = g;
	s->groups_tail = g;
	s->ngroups++;
}

static void on_connected(vpp__pgc *c)
{
	vpp_store *s = c->s;
	vpp__group *g = group_new();
	if (!g || !PQenterPipelineMode(c->conn)) {
		free(g);
		vpp__pgc_fail(c, "cannot enter pipeline mode");
		return;
	}
	for (int i = 0; i < VPP__ST__COUNT; i++) {
		if (!PQsendPrepare(c->conn, vpp__stmts[i].name, vpp__stmts[i].sql,
		                   vpp__stmts[i].nparams, NULL)) {
			free(g);
			vpp__pgc_fail(c, PQerrorMessage(c->conn));
			return;
		}
	}
	if (!PQpipelineSync(c->conn)) {
		free(g);
		vpp__pgc_fail(c, PQerrorMessage(c->conn));
		return;
	}
	group_append(s, g);
	vpp__pgc_flush(c);
}

static void on_lost(vpp__pgc *c)
{
	vpp_store *s = c->s;
	s->devices_loaded = s->devices_loaded && s->known.n > 0;
	vpp__pipe_abort_all(s, VPP_EDB);
}

static bool send_item(vpp_store *s, vpp__item *it)
{
	const char *params[32];
	vpp__stmt_id id;
	int n;
	if (vpp__stmt_parse(it->st.blob, it->st.len, &id, params, &n) != 0)
		return true; /* cannot happen: built by us or checksummed */
	return PQsendQueryPrepared(s->pipe.conn, vpp__stmts[id].name, n, params, NULL, NULL, 0) ==
	       1;
}

void vpp__pipe_kick(vpp_store *s)
{
	if (!vpp__pgc_usable(&s->pipe))
		return;
	/* Device states wait until the pipeline has room, and until the
	 * journal, which may hold their device's registration, is replayed:
	 * newer ones replace them meanwhile. */
	while (s->pending.n < GROUP_MAX && s->states.n && (!s->spilling || s->tail_replay))
		vpp__itemq_push(&s->pending, vpp__itemq_pop(&s->states));
	bool sent = false;
	while (s->pending.n && s->ngroups < GROUPS_IN_FLIGHT) {
		vpp__group *g = group_new();
		if (!g)
			break;
		bool single = alone(s->pending.head);
		do {
			vpp__item *it = vpp__itemq_pop(&s->pending);
			vpp__itemq_push(&g->items, it);
			if (!send_item(s, it)) {
				group_append(s, g);
				vpp__pgc_fail(&s->pipe, PQerrorMessage(s->pipe.conn));
				return;
			}
		} while (!single && s->pending.n && !alone(s->pending.head) &&
		         g->items.n < GROUP_MAX);
		g->cur = g->items.head;
		group_append(s, g);
		if (!PQpipelineSync(s->pipe.conn)) {
			vpp__pgc_fail(&s->pipe, PQerrorMessage(s->pipe.conn));
			return;
		}
		sent = true;
	}
	if (sent)
		vpp__pgc_flush(&s->pipe);
}

bool vpp__pipe_idle(const vpp_store *s)
{
	return s->ngroups == 0 && s->pending.n == 0 && s->states.n == 0;
}

void vpp__pipe_init(vpp_store *s)
{
	vpp__pgc_init(s, &s->pipe, "pipeline");
	s->pipe.on_io = on_io;
	s->pipe.on_connected = on_connected;
	s->pipe.on_lost = on_lost;
}
