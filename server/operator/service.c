/* GridOperator handlers: authentication, validation, the plant queries that
 * answer them, idempotent setpoints, drain requests to the cluster and the
 * audit log. */
#include "operator_int.h"
#include "vpp/clock.h"
#include "vpp/error.h"
#include "vpp/log.h"
#include "vpp/store.h"
#include "vpp/text.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static vpp_operator *svc(vpp_grpc_call *call)
{
	return vpp_grpc_call_method_data(call);
}

static op_loop *loop_of(vpp_grpc_call *call)
{
	return &svc(call)->loops[vpp_grpc_call_loop_index(call)];
}

/* In a cluster, the newest view copied into |ol|'s scratch; NULL on a
 * single node or before this node has read the cluster once. */
static vpp_cluster_view *cluster_view(op_loop *ol)
{
	if (!ol->scratch)
		return NULL;
	vpp_cluster_view_get(ol->op->o.cluster, &ol->scratch->view);
	return ol->scratch->view.as_of_ms > 0 ? &ol->scratch->view : NULL;
}

/* ---- auth ------------------------------------------------------------- */

/* Returns true when the caller has |need|; else ends the call with
 * UNAUTHENTICATED or PERMISSION_DENIED. Sets |principal|. */
static bool authorize(vpp_grpc_call *call, vpp_role need, char *principal, size_t plen)
{
	vpp_operator *op = svc(call);
	const char *name = NULL;
	vpp_role role = vpp_tokens_check(atomic_load(&op->tokens),
					 vpp_grpc_call_metadata(call, "authorization"),
					 &name);
	if (role != VPP_ROLE_NONE) {
		snprintf(principal, plen, "token:%s", name);
	} else {
		const char *cn = vpp_grpc_call_peer_identity(call);
		if (cn && op->o.cert_is_operator) {
			role = VPP_ROLE_OPERATOR;
			snprintf(principal, plen, "cert:%s", cn);
		}
	}
	/* Anyone who reaches the port can cause these: a few lines per 10 s,
	 * the rest counted (vpp_operator_auth_failures_total, and in the next line). */
	static vpp_log_limit unauth_lines, denied_lines;
	uint32_t more;
	if (role == VPP_ROLE_NONE) {
		vpp_counter_inc(op->auth_failed);
		if (vpp_log_limit_take(&unauth_lines, vpp_wall_ms(), 5, 10000, &more))
			vpp_log(VPP_LOG_WARN, "operator",
				"peer=%s path=%s unauthenticated (%u more not logged before it)",
				vpp_grpc_call_peer_addr(call), vpp_grpc_call_path(call), more);
		vpp_grpc_call_finish(call, VPP_GRPC_UNAUTHENTICATED,
				     vpp_grpc_call_metadata(call, "authorization")
					     ? "invalid token"
					     : "missing credentials: send 'authorization: Bearer "
					       "<token>' or an operator client certificate");
		return false;
	}
	if (role < need) {
		vpp_counter_inc(op->denied);
		if (vpp_log_limit_take(&denied_lines, vpp_wall_ms(), 5, 10000, &more))
			vpp_log(VPP_LOG_WARN, "operator",
				"principal=%s path=%s denied: needs the operator role (%u more not "
				"logged before it)",
				principal, vpp_grpc_call_path(call), more);
		vpp_grpc_call_finish(call, VPP_GRPC_PERMISSION_DENIED,
				     "this needs the operator role; your token is a viewer's");
		return false;
	}
	return true;
}

/* ---- op_call lifetime ---------------------------------------------------- */

static op_call *op_new(vpp_grpc_call *call, int kind)
{
	vpp_operator *op = svc(call);
	op_call *c = calloc(1, sizeof(*c));
	if (!c) {
		vpp_grpc_call_finish(call, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	c->call = call;
	c->refs = 1;
	c->kind = kind;
	c->ol = &op->loops[vpp_grpc_call_loop_index(call)];
	c->q.loop = c->ol->index;
	vpp_grpc_call_set_data(call, c);
	return c;
}

static void on_timer_closed(uv_handle_t *h)
{
	free(h);
}

void vpp__op_unref(op_call *c)
{
	if (--c->refs > 0)
		return;
	if (c->set)
		vpp__v1__set_fleet_setpoint_request__free_unpacked(c->set, NULL);
	free(c->devs);
	free(c);
}

static void on_done(vpp_grpc_call *call, vpp_grpc_status st)
{
	op_call *c = vpp_grpc_call_data(call);
	if (!c)
		return;
	c->call = NULL;
	if (c->timer) {
		uv_close((uv_handle_t *)c->timer, on_timer_closed);
		c->timer = NULL;
	}
	vpp__op_unref(c);
}

/* Ends |c|'s call, if its caller is still there. */
static void finish(op_call *c, vpp_grpc_status status, const char *message)
{
	if (c->call)
		vpp_grpc_call_finish(c->call, status, message);
}

/* Posts |c|'s query to the plant; the call keeps a reference until done. */
/* False when the dispatch loop did not take it (the call is finished). */
static bool ask_plant(op_call *c)
{
	vpp_operator *op = c->ol->op;
	vpp_plant_msg m = {.type = VPP_PM_QUERY, .u.q = &c->q};
	c->refs++;
	if (vpp_plant_post(op->o.plant, c->ol->index, &m) != 0) {
		c->refs--;
		finish(c, VPP_GRPC_UNAVAILABLE, "the dispatch loop is busy or stopping: retry");
		return false;
	}
	return true;
}

void vpp__op_send_msg(vpp_grpc_call *call, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t stackbuf[1024], *buf = len <= sizeof(stackbuf) ? stackbuf : malloc(len);
	if (!buf) {
		vpp_grpc_call_finish(call, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	protobuf_c_message_pack(m, buf);
	vpp_grpc_call_send(call, buf, len);
	if (buf != stackbuf)
		free(buf);
}

static void audit(vpp_operator *op, const char *principal, const char *action,
		  const char *request_id, const char *detail, const char *result)
{
	/* A refused request's id is as the client sent it: made printable
	 * (and the principal, a certificate's CN, to be safe). */
	char rid[VPP_ID_CAP * 2], who[128];
	vpp_text_sanitize(rid, sizeof(rid), request_id ? request_id : "");
	vpp_text_sanitize(who, sizeof(who), principal);
	principal = who;
	vpp_log(VPP_LOG_INFO, "audit", "principal=%s action=%s request_id=%s result=%s %s",
		principal, action, rid[0] ? rid : "-", result, detail);
	if (!op->o.store)
		return;
	vpp_audit_entry a;
	memset(&a, 0, sizeof(a));
	a.at_ms = vpp_wall_ms();
	snprintf(a.principal, sizeof(a.principal), "%s", principal);
	snprintf(a.action, sizeof(a.action), "%s", action);
	snprintf(a.request_id, sizeof(a.request_id), "%s", rid);
	snprintf(a.detail, sizeof(a.detail), "%s", detail);
	snprintf(a.result, sizeof(a.result), "%s", result);
	vpp_store_put_audit(op->o.store, &a);
}

/* ---- SetFleetSetpoint -------------------------------------------------- */

enum {
	SET_APPLIED,	/* new, or a retry that is still the newest: in force */
	SET_CURRENT,	/* a retry of the setpoint in force: nothing to change */
	SET_SUPERSEDED, /* a retry of one a later setpoint replaced */
	SET_EXPIRED,	/* its validity ended before it could apply */
	SET_REFUSED,	/* the dispatcher refused the target */
};

/* Dispatch thread. A setpoint applies only when it is newer than the one
 * in force: a late retry of an old request_id (a lost response, a client
 * that hedges) must not bring back a target the operator has replaced. */
static void set_run(vpp_plant_query *q, vpp_fleet *f, int64_t now, vpp_plant *p)
{
	op_call *c = (op_call *)q;
	vpp_operator *op = c->ol->op;
	const Vpp__V1__SetFleetSetpointRequest *r = c->set;
	if (c->valid_until_ms <= now) {
		c->outcome = SET_EXPIRED;
		return;
	}
	if (!c->cluster_preview)
		c->ramp_from = vpp_fleet_target_eff(f); /* where a ramp to it starts */
	if (c->order == op->applied_order) {
		c->outcome = SET_CURRENT;
	} else if (!c->newest || c->order < op->applied_order) {
		c->outcome = SET_SUPERSEDED;
		return;
	} else if (vpp_plant_clustered(p)) {
		/* Recorded only: the leader reads the newest setpoint from the
		 * database (its insert notifies) and splits it; this node's
		 * fleet follows the share it is given. */
		c->outcome = SET_APPLIED;
		op->applied_order = c->order;
		vpp_plant_set_active_setpoint(p, c->setpoint_id, r->target_kw, c->valid_until_ms,
					      r->ramp_kw_per_s);
	} else if (vpp_fleet_set_target(f, r->target_kw, c->valid_until_ms, r->ramp_kw_per_s, now) !=
		   0) {
		c->outcome = SET_REFUSED;
		return;
	} else {
		c->outcome = SET_APPLIED;
		op->applied_order = c->order;
		vpp_plant_set_active_setpoint(p, c->setpoint_id, r->target_kw, c->valid_until_ms,
					      r->ramp_kw_per_s);
		vpp_plant_tick_soon(p); /* the first commands leave now, not next tick */
	}
	if (!c->cluster_preview && vpp_fleet_preview(f, r->target_kw, now, &c->preview) != 0)
		c->outcome = SET_REFUSED;
}

static void set_done(vpp_plant_query *q)
{
	op_call *c = (op_call *)q;
	vpp_grpc_call *call = c->call;
	const Vpp__V1__SetFleetSetpointRequest *r = c->set;
	static const char *const results[] = {
		[SET_APPLIED] = "accepted", [SET_CURRENT] = "retry", [SET_SUPERSEDED] = "superseded",
		[SET_EXPIRED] = "expired",  [SET_REFUSED] = "refused",
	};
	const char *result = c->outcome == SET_APPLIED && !c->created ? "retry" : results[c->outcome];
	audit(c->ol->op, c->principal, "SetFleetSetpoint", r->request_id, c->detail, result);
	if (!call)
		goto out;
	char why[200];
	switch (c->outcome) {
	case SET_APPLIED:
	case SET_CURRENT: {
		Vpp__V1__SetFleetSetpointResponse resp = VPP__V1__SET_FLEET_SETPOINT_RESPONSE__INIT;
		Vpp__V1__Estimate e;
		vpp__op_estimate(&e, &c->preview.expected_kw);
		resp.setpoint_id = c->setpoint_id;
		resp.expected_delivery_kw = &e;
		resp.shortfall_kw = c->preview.shortfall_kw;
		resp.valid_until_ms = c->valid_until_ms;
		resp.sustainable_for_s = isfinite(c->preview.sustain_s) ? c->preview.sustain_s : 0;
		if (r->ramp_kw_per_s > 0 && c->outcome == SET_APPLIED) {
			/* Where the ramp gets to before the setpoint ends. */
			double gap = r->target_kw - c->ramp_from;
			double left_s = (double)(c->valid_until_ms - vpp_wall_ms()) / 1000.0;
			resp.ramp_duration_s = fabs(gap) / r->ramp_kw_per_s;
			resp.ramp_end_kw = resp.ramp_duration_s <= left_s
						   ? r->target_kw
						   : c->ramp_from + copysign(r->ramp_kw_per_s * left_s, gap);
		}
		vpp__op_send_msg(call, &resp.base);
		vpp_grpc_call_finish(call, VPP_GRPC_OK, NULL);
		break;
	}
	case SET_SUPERSEDED:
		snprintf(why, sizeof(why),
			 "setpoint %s (this request_id) was replaced by a later setpoint; not "
			 "applied again",
			 c->setpoint_id);
		vpp_grpc_call_finish(call, VPP_GRPC_FAILED_PRECONDITION, why);
		break;
	case SET_EXPIRED:
		snprintf(why, sizeof(why),
			 "setpoint %s (this request_id) was valid until %lld ms (Unix time); not "
			 "applied",
			 c->setpoint_id, (long long)c->valid_until_ms);
		vpp_grpc_call_finish(call, VPP_GRPC_FAILED_PRECONDITION, why);
		break;
	default:
		vpp_grpc_call_finish(call, VPP_GRPC_INTERNAL, "the dispatcher refused the target");
		break;
	}
out:
	vpp__op_unref(c);
}

static bool same_request(const Vpp__V1__SetFleetSetpointRequest *r, double target, double valid_for,
			 double ramp)
{
	return r->target_kw == target && (double)r->valid_for_s == valid_for &&
	       r->ramp_kw_per_s == ramp;
}

/* Continues a SetFleetSetpoint once its request_id is settled. */
static void set_apply(op_call *c)
{
	vpp_operator *op = c->ol->op;
	const Vpp__V1__SetFleetSetpointRequest *r = c->set;
	char reason[101];
	vpp_utf8_copy(reason, sizeof(reason), r->reason); /* whole characters only */
	snprintf(c->detail, sizeof(c->detail),
		 "target_kw=%.3f valid_for_s=%u ramp_kw_per_s=%.3f reason=%s", r->target_kw,
		 r->valid_for_s, r->ramp_kw_per_s, reason);
	if (c->store_status != 0) {
		audit(op, c->principal, "SetFleetSetpoint", r->request_id, c->detail,
		      "db_unavailable");
		finish(c, VPP_GRPC_UNAVAILABLE,
		       "the setpoint could not be recorded (database unavailable); "
		       "nothing was applied: retry with the same request_id");
		return;
	}
	if (c->conflict) {
		audit(op, c->principal, "SetFleetSetpoint", r->request_id, c->detail, "conflict");
		finish(c, VPP_GRPC_ALREADY_EXISTS, "request_id already used for a different setpoint");
		return;
	}
	if (c->created)
		vpp_counter_inc(op->setpoints);
	c->valid_until_ms = c->created_at_ms + (int64_t)r->valid_for_s * 1000;
	/* In a cluster the expected delivery is the whole fleet's, as the
	 * leader will split it; until this node has read the cluster once,
	 * its own (set_run). */
	vpp_cluster_view *v = cluster_view(c->ol);
	if (v && vpp__op_cluster_preview(v, r->target_kw, &c->preview) == 0) {
		c->cluster_preview = true;
		c->ramp_from = vpp__op_cluster_target_eff(v);
	}
	c->q.run = set_run;
	c->q.done = set_done;
	c->outcome = SET_REFUSED; /* until set_run says otherwise */
	c->refs++; /* finishing the call may drop the last other reference */
	if (!ask_plant(c))
		audit(op, c->principal, "SetFleetSetpoint", r->request_id, c->detail,
		      "dispatch_busy");
	vpp__op_unref(c);
}

static void drain_done(op_call *c);

/* The I/O loop: what the store and cluster threads finished (ol->done). */
static void on_loop_async(uv_async_t *a)
{
	op_loop *ol = a->data;
	pthread_mutex_lock(&ol->lock);
	op_call *list = ol->done;
	ol->done = NULL;
	pthread_mutex_unlock(&ol->lock);
	while (list) {
		op_call *c = list;
		list = c->next;
		/* Recorded is accepted: applied and audited even when its
		 * caller has gone (a timeout), so that the database and the
		 * fleet agree (a restart carries on with the newest row). A
		 * drain request is audited the same way. */
		if (c->kind == OP_DRAIN)
			drain_done(c);
		else
			set_apply(c);
		vpp__op_unref(c);
	}
}

/* Store or cluster thread: hands |c| to its I/O loop (on_loop_async). */
static void post_done(op_call *c)
{
	op_loop *ol = c->ol;
	pthread_mutex_lock(&ol->lock);
	if (ol->closed) {
		pthread_mutex_unlock(&ol->lock);
		return; /* the loop is gone; so is the call: the reference leaks at exit */
	}
	c->next = ol->done;
	ol->done = c;
	uv_async_send(&ol->async);
	pthread_mutex_unlock(&ol->lock);
}

/* Store thread: the setpoint row is in (or was already). */
static void on_stored(int status, const vpp_setpoint *row, bool created, void *ud)
{
	op_call *c = ud;
	c->store_status = status;
	if (status == 0) {
		c->created = created;
		c->created_at_ms = row->created_at_ms;
		snprintf(c->setpoint_id, sizeof(c->setpoint_id), "%lld",
			 (long long)row->setpoint_id);
		c->order = (uint64_t)row->setpoint_id;
		c->newest = row->setpoint_id >= row->newest_setpoint_id;
		c->conflict = !created && !same_request(c->set, row->target_kw, row->valid_for_s,
						       row->ramp_kw_per_s);
	}
	post_done(c);
}

/* Without a database: request_ids are remembered in memory (this node,
 * this run), the newest RECENT_MAX of them. */
#define RECENT_MAX 65536

static void settle_in_memory(op_call *c)
{
	vpp_operator *op = c->ol->op;
	const Vpp__V1__SetFleetSetpointRequest *r = c->set;
	pthread_mutex_lock(&op->recent_lock);
	for (size_t i = 0; i < op->nrecent; i++) {
		recent_setpoint *s = &op->recent[i];
		if (strcmp(s->request_id, r->request_id) != 0)
			continue;
		c->created = false;
		c->conflict = !same_request(r, s->target_kw, s->valid_for_s, s->ramp);
		c->created_at_ms = s->valid_until_ms - (int64_t)s->valid_for_s * 1000;
		snprintf(c->setpoint_id, sizeof(c->setpoint_id), "%s", s->setpoint_id);
		c->order = s->order;
		c->newest = s->order == op->next_local_id;
		pthread_mutex_unlock(&op->recent_lock);
		return;
	}
	if (op->nrecent == RECENT_MAX) {
		/* Bounded: the oldest half goes (a retry comes within minutes,
		 * not after 65,536 newer setpoints). */
		memmove(op->recent, op->recent + RECENT_MAX / 2,
			(RECENT_MAX - RECENT_MAX / 2) * sizeof(*op->recent));
		op->nrecent = RECENT_MAX - RECENT_MAX / 2;
	}
	if (op->nrecent == op->caprecent) {
		size_t ncap = op->caprecent ? op->caprecent * 2 : 64;
		recent_setpoint *nr = realloc(op->recent, ncap * sizeof(*nr));
		if (nr) {
			op->recent = nr;
			op->caprecent = ncap;
		}
	}
	c->created = true;
	c->created_at_ms = vpp_wall_ms();
	c->order = ++op->next_local_id;
	c->newest = true;
	snprintf(c->setpoint_id, sizeof(c->setpoint_id), "%s-%llu", op->o.node_id,
		 (unsigned long long)c->order);
	if (op->nrecent < op->caprecent) {
		recent_setpoint *s = &op->recent[op->nrecent++];
		snprintf(s->request_id, sizeof(s->request_id), "%s", r->request_id);
		s->target_kw = r->target_kw;
		s->valid_for_s = r->valid_for_s;
		s->ramp = r->ramp_kw_per_s;
		snprintf(s->setpoint_id, sizeof(s->setpoint_id), "%s", c->setpoint_id);
		s->valid_until_ms = c->created_at_ms + (int64_t)r->valid_for_s * 1000;
		s->order = c->order;
	}
	pthread_mutex_unlock(&op->recent_lock);
}

static void on_set(vpp_grpc_call *call, const uint8_t *req, size_t len)
{
	vpp_operator *op = svc(call);
	char principal[128];
	if (!authorize(call, VPP_ROLE_OPERATOR, principal, sizeof(principal)))
		return;
	Vpp__V1__SetFleetSetpointRequest *r =
		vpp__v1__set_fleet_setpoint_request__unpack(NULL, len, req);
	if (!r) {
		vpp_grpc_call_reject(call, VPP_GRPC_INVALID_ARGUMENT, "bad_message",
				     "SetFleetSetpointRequest does not parse");
		return;
	}
	char why[200] = "";
	if (!vpp__op_set_check(r, op->o.max_target_kw, op->o.max_valid_for_s, why, sizeof(why))) {
		audit(op, principal, "SetFleetSetpoint", r->request_id, why, "invalid");
		vpp__v1__set_fleet_setpoint_request__free_unpacked(r, NULL);
		vpp_grpc_call_finish(call, VPP_GRPC_INVALID_ARGUMENT, why);
		return;
	}
	op_call *c = op_new(call, OP_SET);
	if (!c) {
		vpp__v1__set_fleet_setpoint_request__free_unpacked(r, NULL);
		return;
	}
	c->set = r;
	snprintf(c->principal, sizeof(c->principal), "%s", principal);
	if (!op->o.store) {
		settle_in_memory(c);
		set_apply(c);
		return;
	}
	vpp_setpoint sp;
	memset(&sp, 0, sizeof(sp));
	snprintf(sp.request_id, sizeof(sp.request_id), "%s", r->request_id);
	sp.target_kw = r->target_kw;
	sp.valid_for_s = r->valid_for_s;
	sp.ramp_kw_per_s = r->ramp_kw_per_s;
	snprintf(sp.reason, sizeof(sp.reason), "%s", r->reason);
	snprintf(sp.principal, sizeof(sp.principal), "%s", principal);
	snprintf(sp.node_id, sizeof(sp.node_id), "%s", op->o.node_id);
	/* Its validity runs on this node's clock (the one leases use), not the
	 * database's. */
	sp.created_at_ms = vpp_wall_ms();
	c->refs++;
	if (vpp_store_insert_setpoint(op->o.store, &sp, on_stored, c) != 0) {
		c->refs--;
		c->store_status = VPP_EDB;
		set_apply(c);
	}
}

/* ---- DrainNode ----------------------------------------------------------- */

/* The I/O loop: the cluster's answer in c->drain_status (or the refusal of
 * the request itself). Audited whether or not the caller is still there,
 * since the request may have reached the database. Does not drop the
 * caller's reference to |c|. */
static void drain_done(op_call *c)
{
	vpp_grpc_status code;
	char msg[200];
	const char *result =
		vpp__op_drain_outcome(c->drain_status, c->node_id, &code, msg, sizeof(msg));
	audit(c->ol->op, c->principal, "DrainNode", NULL, c->detail, result);
	if (!c->call)
		return;
	if (code != VPP_GRPC_OK) {
		vpp_grpc_call_finish(c->call, code, msg);
		return;
	}
	Vpp__V1__DrainNodeResponse resp = VPP__V1__DRAIN_NODE_RESPONSE__INIT;
	resp.node_id = c->node_id;
	resp.draining = c->drain;
	vpp__op_send_msg(c->call, &resp.base);
	vpp_grpc_call_finish(c->call, VPP_GRPC_OK, NULL);
}

/* Cluster thread: the request is in the database (0), or why not. */
static void on_drained(int status, void *ud)
{
	op_call *c = ud;
	c->drain_status = status;
	post_done(c);
}

static void on_drain(vpp_grpc_call *call, const uint8_t *req, size_t len)
{
	vpp_operator *op = svc(call);
	char principal[128];
	if (!authorize(call, VPP_ROLE_OPERATOR, principal, sizeof(principal)))
		return;
	Vpp__V1__DrainNodeRequest *r = vpp__v1__drain_node_request__unpack(NULL, len, req);
	if (!r) {
		vpp_grpc_call_reject(call, VPP_GRPC_INVALID_ARGUMENT, "bad_message",
				     "DrainNodeRequest does not parse");
		return;
	}
	/* The detail is logged and stored: the id made printable (a refused
	 * one is as sent), the reason cut at a whole character. */
	char id[2 * VPP_CLUSTER_ID_MAX + 1], reason[101] = "-", detail[256], why[200] = "";
	vpp_text_sanitize(id, sizeof(id), r->node_id);
	bool drain = r->drain;
	vpp__op_drain_check(r, why, sizeof(why), reason, sizeof(reason));
	vpp__v1__drain_node_request__free_unpacked(r, NULL);
	snprintf(detail, sizeof(detail), "node_id=%s drain=%s reason=%s", id,
		 drain ? "true" : "false", reason);
	if (why[0]) {
		audit(op, principal, "DrainNode", NULL, detail, "invalid");
		vpp_grpc_call_finish(call, VPP_GRPC_INVALID_ARGUMENT, why);
		return;
	}
	if (!op->o.cluster) {
		audit(op, principal, "DrainNode", NULL, detail, "not_clustered");
		vpp_grpc_call_finish(call, VPP_GRPC_FAILED_PRECONDITION,
				     "this vppd is not in a cluster (--cluster): nothing to drain to");
		return;
	}
	op_call *c = op_new(call, OP_DRAIN);
	if (!c)
		return;
	snprintf(c->principal, sizeof(c->principal), "%s", principal);
	memcpy(c->node_id, id, strlen(id) + 1); /* checked: at most VPP_CLUSTER_ID_MAX */
	snprintf(c->detail, sizeof(c->detail), "%s", detail);
	c->drain = drain;
	/* A reference for the cluster thread's answer, dropped on this loop. */
	c->refs++;
	int rv = vpp_cluster_request_drain(op->o.cluster, c->node_id, drain, on_drained, c);
	if (rv != 0) {
		c->drain_status = rv;
		drain_done(c);
		vpp__op_unref(c);
	}
}

/* ---- reads ---------------------------------------------------------------- */

/* Sends the fleet's status: this node's snapshot, or in a cluster the
 * whole fleet from the view with each node's part (this node's own until
 * it has read the cluster once). */
static void send_status(vpp_grpc_call *call, op_loop *ol, const vpp_plant_snapshot *snap)
{
	Vpp__V1__FleetStatus st;
	Vpp__V1__Estimate est[5];
	if (cluster_view(ol))
		vpp__op_cluster_fleet_status(&st, est, ol->scratch, snap, vpp_wall_ms());
	else
		vpp__op_fleet_status(&st, est, snap);
	vpp__op_send_msg(call, &st.base);
}

static void on_status(vpp_grpc_call *call, const uint8_t *req, size_t len)
{
	vpp_operator *op = svc(call);
	char principal[128];
	if (!authorize(call, VPP_ROLE_VIEWER, principal, sizeof(principal)))
		return;
	vpp_plant_snapshot snap;
	vpp_plant_snapshot_get(op->o.plant, &snap);
	send_status(call, loop_of(call), &snap);
	vpp_grpc_call_finish(call, VPP_GRPC_OK, NULL);
}

static void on_nodes(vpp_grpc_call *call, const uint8_t *req, size_t len)
{
	vpp_operator *op = svc(call);
	char principal[128];
	if (!authorize(call, VPP_ROLE_VIEWER, principal, sizeof(principal)))
		return;
	Vpp__V1__ListNodesResponse resp = VPP__V1__LIST_NODES_RESPONSE__INIT;
	int64_t now = vpp_wall_ms();
	op_loop *ol = loop_of(call);
	vpp_cluster_node self;
	Vpp__V1__NodeStatus ns, *nsp = &ns;
	Vpp__V1__Estimate est;
	if (op->o.cluster) {
		if (!cluster_view(ol)) {
			vpp_grpc_call_finish(call, VPP_GRPC_UNAVAILABLE,
					     "this node has not read the cluster from the database "
					     "yet: retry, or ask another node");
			return;
		}
		resp.n_nodes = vpp__op_nodes(ol->scratch, now);
		resp.nodes = ol->scratch->ptrs;
		resp.leader_node_id = ol->scratch->view.leader_id;
		resp.leader_epoch = ol->scratch->view.leader_epoch;
	} else {
		vpp_plant_snapshot snap;
		vpp_plant_snapshot_get(op->o.plant, &snap);
		vpp__op_local_node(&self, &snap, op->o.node_id, VPP_VERSION, op->started_at_ms, now);
		vpp__op_node_status(&ns, &est, &self, 0);
		resp.n_nodes = 1;
		resp.nodes = &nsp;
		resp.leader_node_id = (char *)op->o.node_id;
	}
	vpp__op_send_msg(call, &resp.base);
	vpp_grpc_call_finish(call, VPP_GRPC_OK, NULL);
}

static void on_watch_timer(uv_timer_t *t)
{
	op_call *c = t->data;
	vpp_operator *op = c->ol->op;
	if (!c->call)
		return;
	vpp_plant_snapshot snap;
	vpp_plant_snapshot_get(op->o.plant, &snap);
	/* In a cluster the status is the view's: new when the view was read
	 * again (once a tick, after this node's tick), not at each local tick. */
	uint64_t tick = op->o.cluster && vpp_cluster_view_as_of(op->o.cluster)
				? (uint64_t)vpp_cluster_view_as_of(op->o.cluster)
				: snap.tick;
	if (tick == c->last_tick)
		return;
	/* A watcher that does not keep up skips ticks: nothing is queued
	 * beyond what its stream already holds. */
	if (vpp_grpc_call_outbound_bytes(c->call) > 16 * 1024)
		return;
	c->last_tick = tick;
	send_status(c->call, c->ol, &snap);
}

static void on_watch(vpp_grpc_call *call, const uint8_t *req, size_t len)
{
	vpp_operator *op = svc(call);
	char principal[128];
	if (!authorize(call, VPP_ROLE_VIEWER, principal, sizeof(principal)))
		return;
	op_call *c = op_new(call, OP_GET);
	if (!c)
		return;
	c->timer = malloc(sizeof(uv_timer_t));
	if (!c->timer) {
		vpp_grpc_call_finish(call, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	uv_timer_init(vpp_grpc_call_loop(call), c->timer);
	c->timer->data = c;
	on_watch_timer(c->timer);
	uv_timer_start(c->timer, on_watch_timer, op->o.watch_poll_ms, op->o.watch_poll_ms);
}

static void preview_run(vpp_plant_query *q, vpp_fleet *f, int64_t now, vpp_plant *p)
{
	op_call *c = (op_call *)q;
	c->rv = vpp_fleet_preview(f, c->preview_kw, now, &c->preview);
}

static void send_preview(vpp_grpc_call *call, const vpp_preview *pv)
{
	Vpp__V1__PreviewDispatchResponse resp = VPP__V1__PREVIEW_DISPATCH_RESPONSE__INIT;
	Vpp__V1__Estimate e;
	vpp__op_estimate(&e, &pv->expected_kw);
	resp.expected_delivery_kw = &e;
	resp.shortfall_kw = pv->shortfall_kw;
	resp.devices_saturated = pv->n_saturated;
	resp.devices_dispatched = pv->n_dispatched;
	resp.sustainable_for_s = isfinite(pv->sustain_s) ? pv->sustain_s : 0;
	vpp__op_send_msg(call, &resp.base);
	vpp_grpc_call_finish(call, VPP_GRPC_OK, NULL);
}

static void preview_done(vpp_plant_query *q)
{
	op_call *c = (op_call *)q;
	if (c->call) {
		if (c->rv != 0)
			vpp_grpc_call_finish(c->call, VPP_GRPC_INTERNAL, "preview failed");
		else
			send_preview(c->call, &c->preview);
	}
	vpp__op_unref(c);
}

static void on_preview(vpp_grpc_call *call, const uint8_t *req, size_t len)
{
	vpp_operator *op = svc(call);
	char principal[128];
	if (!authorize(call, VPP_ROLE_VIEWER, principal, sizeof(principal)))
		return;
	Vpp__V1__PreviewDispatchRequest *r = vpp__v1__preview_dispatch_request__unpack(NULL, len, req);
	if (!r) {
		vpp_grpc_call_reject(call, VPP_GRPC_INVALID_ARGUMENT, "bad_message",
				     "PreviewDispatchRequest does not parse");
		return;
	}
	double target = r->target_kw;
	vpp__v1__preview_dispatch_request__free_unpacked(r, NULL);
	if (!vpp__op_preview_ok(target, op->o.max_target_kw)) {
		vpp_grpc_call_finish(call, VPP_GRPC_INVALID_ARGUMENT,
				     "target_kw must be a finite number within the configured bound");
		return;
	}
	/* In a cluster: the leader's split over the nodes, from the view;
	 * this node's fleet only until it has read the cluster once. */
	vpp_cluster_view *v = cluster_view(loop_of(call));
	vpp_preview pv;
	if (v && vpp__op_cluster_preview(v, target, &pv) == 0) {
		send_preview(call, &pv);
		return;
	}
	op_call *c = op_new(call, OP_PREVIEW);
	if (!c)
		return;
	c->preview_kw = target;
	c->q.run = preview_run;
	c->q.done = preview_done;
	ask_plant(c);
}

/* Dispatch thread, so bounded: one pass over the fleet table examines at
 * most EXAMINE devices in id order. A filter that matches few of them
 * returns a short (even empty) page with a next_page_token to go on from;
 * it used to rescan the whole fleet for every 256 devices until the page
 * was full, stalling the control loop on a large fleet. */
static void list_run(vpp_plant_query *q, vpp_fleet *f, int64_t now, vpp_plant *p)
{
	op_call *c = (op_call *)q;
	enum { EXAMINE = 1024 }; /* > the largest page_size */
	uint32_t slots[EXAMINE];
	size_t n;
	c->devs = calloc(c->page_size, sizeof(op_device));
	if (!c->devs) {
		c->rv = VPP_ENOMEM;
		return;
	}
	if ((c->rv = vpp_fleet_page(f, c->after, slots, EXAMINE, &n)) != 0)
		return;
	for (size_t i = 0; i < n; i++) {
		vpp_device_info di;
		if (vpp_fleet_device_info(f, slots[i], now, &di) != 0)
			continue;
		if (c->state_filter && vpp__op_device_state(&di) != c->state_filter) {
			snprintf(c->next_token, sizeof(c->next_token), "%s", di.id);
			continue;
		}
		if (c->ndevs == c->page_size) {
			c->more = true; /* from the last one on the page */
			snprintf(c->next_token, sizeof(c->next_token), "%s", c->devs[c->ndevs - 1].id);
			return;
		}
		op_device *d = &c->devs[c->ndevs++];
		snprintf(d->id, sizeof(d->id), "%s", di.id);
		snprintf(d->firmware, sizeof(d->firmware), "%s",
			 vpp_plant_device_firmware(p, slots[i]));
		d->di = di;
		d->di.id = NULL;
		snprintf(c->next_token, sizeof(c->next_token), "%s", di.id);
	}
	/* A full window may have more behind it: go on after its last. */
	c->more = n == EXAMINE;
}

static void list_done(vpp_plant_query *q)
{
	op_call *c = (op_call *)q;
	vpp_operator *op = c->ol->op;
	if (vpp__op_fan_local_done(c) || !c->call)
		goto out;
	if (c->rv != 0) {
		vpp_grpc_call_finish(c->call, VPP_GRPC_INTERNAL, "listing failed");
		goto out;
	}
	if (c->kind == OP_GET) {
		if (c->ndevs == 0) {
			vpp_grpc_call_finish(c->call, VPP_GRPC_NOT_FOUND, "no such device");
			goto out;
		}
		Vpp__V1__DeviceInfo d;
		Vpp__V1__Estimate est[2];
		vpp__op_device_info(&d, est, &c->devs[0], op->o.node_id);
		vpp__op_send_msg(c->call, &d.base);
		vpp_grpc_call_finish(c->call, VPP_GRPC_OK, NULL);
		goto out;
	}
	Vpp__V1__ListDevicesResponse resp = VPP__V1__LIST_DEVICES_RESPONSE__INIT;
	Vpp__V1__DeviceInfo *infos = calloc(c->ndevs ? c->ndevs : 1, sizeof(*infos));
	Vpp__V1__DeviceInfo **ptrs = calloc(c->ndevs ? c->ndevs : 1, sizeof(*ptrs));
	Vpp__V1__Estimate *est = calloc(c->ndevs ? 2 * c->ndevs : 1, sizeof(*est));
	if (!infos || !ptrs || !est) {
		vpp_grpc_call_finish(c->call, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
	} else {
		for (size_t i = 0; i < c->ndevs; i++) {
			vpp__op_device_info(&infos[i], &est[2 * i], &c->devs[i], op->o.node_id);
			ptrs[i] = &infos[i];
		}
		resp.n_devices = c->ndevs;
		resp.devices = ptrs;
		resp.next_page_token = c->more ? c->next_token : "";
		vpp__op_send_msg(c->call, &resp.base);
		vpp_grpc_call_finish(c->call, VPP_GRPC_OK, NULL);
	}
	free(infos);
	free(ptrs);
	free(est);
out:
	vpp__op_unref(c);
}

static void get_run(vpp_plant_query *q, vpp_fleet *f, int64_t now, vpp_plant *p)
{
	op_call *c = (op_call *)q;
	uint32_t slot;
	c->rv = 0;
	if (vpp_fleet_lookup(f, c->after, &slot) != 0)
		return;
	c->devs = calloc(1, sizeof(op_device));
	if (!c->devs) {
		c->rv = VPP_ENOMEM;
		return;
	}
	if (vpp_fleet_device_info(f, slot, now, &c->devs[0].di) == 0) {
		snprintf(c->devs[0].id, sizeof(c->devs[0].id), "%s", c->after);
		snprintf(c->devs[0].firmware, sizeof(c->devs[0].firmware), "%s",
			 vpp_plant_device_firmware(p, slot));
		c->devs[0].di.id = NULL;
		c->ndevs = 1;
	}
}

/* The plant, and in a cluster the other live nodes too. */
static void ask_everyone(op_call *c, vpp_grpc_call *call)
{
	bool fan = vpp__op_fan_prepare(c, call);
	if (ask_plant(c)) {
		if (fan)
			vpp__op_fan_send(c);
	} else if (fan) {
		vpp__op_fan_abort(c);
	}
}

static void on_list(vpp_grpc_call *call, const uint8_t *req, size_t len)
{
	char principal[128];
	if (!authorize(call, VPP_ROLE_VIEWER, principal, sizeof(principal)))
		return;
	Vpp__V1__ListDevicesRequest *r = vpp__v1__list_devices_request__unpack(NULL, len, req);
	if (!r) {
		vpp_grpc_call_reject(call, VPP_GRPC_INVALID_ARGUMENT, "bad_message",
				     "ListDevicesRequest does not parse");
		return;
	}
	uint32_t page = 0;
	int state = 0;
	bool bad = !vpp__op_list_check(r, &page, &state);
	op_call *c = bad ? NULL : op_new(call, OP_LIST);
	if (c) {
		c->page_size = page;
		c->state_filter = state;
		snprintf(c->after, sizeof(c->after), "%s", r->page_token);
		c->q.run = list_run;
		c->q.done = list_done;
	}
	vpp__v1__list_devices_request__free_unpacked(r, NULL);
	if (bad) {
		vpp_grpc_call_finish(call, VPP_GRPC_INVALID_ARGUMENT,
				     "page_size must be at most 1000, state a DeviceState, "
				     "page_token one returned by a previous page");
		return;
	}
	if (c)
		ask_everyone(c, call);
}

static void on_get(vpp_grpc_call *call, const uint8_t *req, size_t len)
{
	char principal[128];
	if (!authorize(call, VPP_ROLE_VIEWER, principal, sizeof(principal)))
		return;
	Vpp__V1__GetDeviceRequest *r = vpp__v1__get_device_request__unpack(NULL, len, req);
	if (!r) {
		vpp_grpc_call_reject(call, VPP_GRPC_INVALID_ARGUMENT, "bad_message",
				     "GetDeviceRequest does not parse");
		return;
	}
	bool bad = !vpp__op_get_check(r);
	op_call *c = bad ? NULL : op_new(call, OP_GET);
	if (c) {
		snprintf(c->after, sizeof(c->after), "%s", r->device_id);
		c->q.run = get_run;
		c->q.done = list_done;
	}
	vpp__v1__get_device_request__free_unpacked(r, NULL);
	if (bad) {
		vpp_grpc_call_finish(call, VPP_GRPC_INVALID_ARGUMENT,
				     "device_id is required (1..63 characters)");
		return;
	}
	if (c)
		ask_everyone(c, call);
}

/* ---- service ----------------------------------------------------------- */

static void on_stop(void *ud, int loop_index)
{
	vpp_operator *op = ud;
	op_loop *ol = &op->loops[loop_index];
	pthread_mutex_lock(&ol->lock);
	ol->closed = true;
	pthread_mutex_unlock(&ol->lock);
	uv_close((uv_handle_t *)&ol->async, NULL);
	vpp__op_peers_close(ol);
}

int vpp_operator_new(const vpp_operator_opts *o, vpp_grpc_server *srv, vpp_grpc_listener *l,
		     vpp_operator **ret)
{
	int rv;
	vpp_operator *op = calloc(1, sizeof(*op));
	if (!op)
		return VPP_ENOMEM;
	op->o = *o;
	atomic_init(&op->tokens, o->tokens);
	if (op->o.max_target_kw <= 0)
		op->o.max_target_kw = 1e6;
	if (!op->o.max_valid_for_s)
		op->o.max_valid_for_s = 86400;
	if (!op->o.watch_poll_ms)
		op->o.watch_poll_ms = 100;
	if (!op->o.node_id)
		op->o.node_id = "node";
	op->started_at_ms = vpp_wall_ms();
	pthread_mutex_init(&op->recent_lock, NULL);
	op->auth_failed = vpp_counter_get("vpp_operator_auth_failures_total", NULL,
					  "Operator calls without valid credentials");
	op->denied = vpp_counter_get("vpp_operator_denied_total", NULL,
				     "Operator calls refused for the caller's role");
	op->setpoints = vpp_counter_get("vpp_operator_setpoints_total", NULL,
					"Fleet setpoints accepted (retries not counted)");
	op->nloops = vpp_grpc_server_loop_count(srv);
	op->loops = calloc((size_t)op->nloops, sizeof(op_loop));
	if (!op->loops)
		goto fail_alloc;
	for (int i = 0; o->cluster && i < op->nloops; i++)
		if (!(op->loops[i].scratch = malloc(sizeof(op_nodes))))
			goto fail_scratch;
	for (int i = 0; i < op->nloops; i++) {
		op_loop *ol = &op->loops[i];
		ol->op = op;
		ol->index = i;
		ol->loop = vpp_grpc_server_loop(srv, i);
		pthread_mutex_init(&ol->lock, NULL);
		uv_async_init(ol->loop, &ol->async, on_loop_async);
		ol->async.data = ol;
	}
	if ((rv = vpp_grpc_server_on_stop(srv, on_stop, op)) != 0)
		goto fail;
	const vpp_grpc_method methods[] = {
		{.path = "/vpp.v1.GridOperator/SetFleetSetpoint",
		 .on_request = on_set,
		 .request = &vpp__v1__set_fleet_setpoint_request__descriptor},
		{.path = "/vpp.v1.GridOperator/GetFleetStatus",
		 .on_request = on_status,
		 .request = &vpp__v1__get_fleet_status_request__descriptor},
		{.path = "/vpp.v1.GridOperator/WatchFleet",
		 .on_request = on_watch,
		 .request = &vpp__v1__watch_fleet_request__descriptor},
		{.path = "/vpp.v1.GridOperator/PreviewDispatch",
		 .on_request = on_preview,
		 .request = &vpp__v1__preview_dispatch_request__descriptor},
		{.path = "/vpp.v1.GridOperator/ListDevices",
		 .on_request = on_list,
		 .request = &vpp__v1__list_devices_request__descriptor},
		{.path = "/vpp.v1.GridOperator/GetDevice",
		 .on_request = on_get,
		 .request = &vpp__v1__get_device_request__descriptor},
		{.path = "/vpp.v1.GridOperator/ListNodes",
		 .on_request = on_nodes,
		 .request = &vpp__v1__list_nodes_request__descriptor},
		{.path = "/vpp.v1.GridOperator/DrainNode",
		 .on_request = on_drain,
		 .request = &vpp__v1__drain_node_request__descriptor},
	};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		vpp_grpc_method m = methods[i];
		m.on_done = on_done;
		m.method_ud = op;
		if ((rv = vpp_grpc_listener_add_method(l, &m)) != 0)
			goto fail;
	}
	*ret = op;
	return 0;
fail:
	vpp_operator_free(op);
	return rv;
fail_scratch:
	for (int i = 0; i < op->nloops; i++)
		free(op->loops[i].scratch);
	free(op->loops);
fail_alloc:
	pthread_mutex_destroy(&op->recent_lock);
	free(op);
	return VPP_ENOMEM;
}

const vpp_tokens *vpp_operator_swap_tokens(vpp_operator *op, const vpp_tokens *t)
{
	return atomic_exchange(&op->tokens, t);
}

void vpp_operator_restored(vpp_operator *op, int64_t setpoint_id)
{
	if (op && setpoint_id > 0)
		op->applied_order = (uint64_t)setpoint_id;
}

void vpp_operator_free(vpp_operator *op)
{
	if (!op)
		return;
	for (int i = 0; i < op->nloops; i++) {
		pthread_mutex_destroy(&op->loops[i].lock);
		free(op->loops[i].scratch);
		vpp__op_peers_free(&op->loops[i]);
	}
	pthread_mutex_destroy(&op->recent_lock);
	free(op->recent);
	free(op->loops);
	free(op);
}
