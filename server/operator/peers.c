/* Device queries for the whole cluster. A node holds the devices connected
 * to it (and those that were, as offline); ListDevices and GetDevice
 * merge this node's answer with every other live node's, asked over the
 * operator API with the caller's own credentials and "vpp-scope: node"
 * (so the peer answers for itself alone). A device known to several nodes
 * (it moved) is shown as the node it is connected to sees it, else as the
 * node that saw it last. A live node that does not answer is named in the
 * answer, never left out silently. */
#include "operator_int.h"

#include "vpp/clock.h"
#include "vpp/error.h"
#include "vpp/log.h"

#include <stdlib.h>
#include <string.h>

#define PEER_TIMEOUT_MS 2000

/* One connection per peer and loop, made on first use and kept. */
typedef struct peer_conn {
	char node_id[VPP_CLUSTER_ID_MAX + 1];
	char addr[64];
	vpp_grpc_conn *conn; /* NULL: none (closed, or never made) */
	struct op_peers *owner;
} peer_conn;

struct op_peers {
	peer_conn c[VPP_CLUSTER_NODES_MAX];
	bool stopping;
};

typedef struct fan_part {
	struct op_fan *fan;
	char node_id[VPP_CLUSTER_ID_MAX + 1];
	bool failed;
	char why[160];
	Vpp__V1__ListDevicesResponse *list;
	Vpp__V1__DeviceInfo *one;
} fan_part;

struct op_fan {
	op_call *c;
	bool local_done;
	int pending;
	int post_filter; /* a DeviceState kept after the merge (offline) */
	char auth[1100];
	size_t nparts;
	fan_part parts[VPP_CLUSTER_NODES_MAX];
};

bool vpp__op_scope_node(vpp_grpc_call *call)
{
	const char *s = vpp_grpc_call_metadata(call, "vpp-scope");
	return s && strcmp(s, "node") == 0;
}

/* "host:port" or "[v6]:port" into |host| and |port|; false if neither. */
static bool split_addr(const char *addr, char *host, size_t hostlen, int *port)
{
	const char *colon = strrchr(addr, ':');
	if (!colon || colon == addr)
		return false;
	const char *h = addr;
	size_t n = (size_t)(colon - addr);
	if (h[0] == '[' && n >= 2 && h[n - 1] == ']') {
		h++;
		n -= 2;
	}
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (n == 0 || n >= hostlen || *end || p <= 0 || p > 65535)
		return false;
	memcpy(host, h, n);
	host[n] = '\0';
	*port = (int)p;
	return true;
}

static void on_peer_closed(vpp_grpc_conn *conn, int err, void *ud)
{
	(void)err;
	peer_conn *pc = ud;
	if (pc->conn == conn)
		pc->conn = NULL;
}

/* The connection to |n| on |ol|'s loop: NULL with |why| set if none. */
static vpp_grpc_conn *peer(op_loop *ol, const vpp_cluster_node *n, char *why, size_t whylen)
{
	struct op_peers *ps = ol->peers;
	peer_conn *free_pc = NULL;
	if (!ps && !(ps = ol->peers = calloc(1, sizeof(*ps)))) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < VPP_CLUSTER_NODES_MAX; i++) {
		peer_conn *pc = &ps->c[i];
		if (pc->conn && strcmp(pc->node_id, n->node_id) == 0) {
			if (strcmp(pc->addr, n->api_addr) == 0)
				return pc->conn;
			vpp_grpc_conn_close(pc->conn, true); /* it moved */
			pc->conn = NULL;
		}
		if (!pc->conn && !free_pc)
			free_pc = pc;
	}
	char host[64];
	int port;
	if (!split_addr(n->api_addr, host, sizeof(host), &port)) {
		snprintf(why, whylen, "advertises no usable API address (\"%s\")", n->api_addr);
		return NULL;
	}
	if (!free_pc) {
		snprintf(why, whylen, "too many peer connections");
		return NULL;
	}
	vpp_grpc_client_opts co = {.host = host,
				   .port = port,
				   .tls = ol->op->o.peer_tls,
				   .connect_timeout_ms = PEER_TIMEOUT_MS,
				   .max_message_bytes = 16 * 1024 * 1024,
				   .on_closed = on_peer_closed,
				   .ud = free_pc};
	snprintf(free_pc->node_id, sizeof(free_pc->node_id), "%s", n->node_id);
	snprintf(free_pc->addr, sizeof(free_pc->addr), "%s", n->api_addr);
	free_pc->owner = ps;
	int rv = vpp_grpc_conn_new(ol->loop, &co, &free_pc->conn);
	if (rv != 0) {
		free_pc->conn = NULL;
		snprintf(why, whylen, "cannot connect to %s: %s", n->api_addr, vpp_strerror(rv));
		return NULL;
	}
	return free_pc->conn;
}

void vpp__op_peers_close(op_loop *ol)
{
	struct op_peers *ps = ol->peers;
	if (!ps)
		return;
	ps->stopping = true;
	for (size_t i = 0; i < VPP_CLUSTER_NODES_MAX; i++)
		if (ps->c[i].conn)
			vpp_grpc_conn_close(ps->c[i].conn, false);
}

void vpp__op_peers_free(op_loop *ol)
{
	free(ol->peers);
	ol->peers = NULL;
}

bool vpp__op_fan_prepare(op_call *c, vpp_grpc_call *call)
{
	op_loop *ol = c->ol;
	if (!ol->scratch || vpp__op_scope_node(call))
		return false;
	vpp_cluster_view_get(ol->op->o.cluster, &ol->scratch->view);
	const vpp_cluster_view *v = &ol->scratch->view;
	if (v->as_of_ms <= 0 || (ol->peers && ol->peers->stopping))
		return false;
	struct op_fan *f = calloc(1, sizeof(*f));
	if (!f)
		return false;
	for (size_t i = 0; i < v->n; i++) {
		const vpp_cluster_node *n = &v->nodes[i];
		if (!n->alive || strcmp(n->node_id, ol->op->o.node_id) == 0)
			continue;
		fan_part *pt = &f->parts[f->nparts++];
		pt->fan = f;
		snprintf(pt->node_id, sizeof(pt->node_id), "%s", n->node_id);
	}
	if (f->nparts == 0) {
		free(f);
		return false;
	}
	const char *auth = vpp_grpc_call_metadata(call, "authorization");
	snprintf(f->auth, sizeof(f->auth), "%s", auth ? auth : "");
	if (c->kind == OP_LIST && c->state_filter == VPP__V1__DEVICE_STATE__DEVICE_STATE_OFFLINE) {
		/* Offline here may be online elsewhere: filtered after the
		 * merge. The other states are only a connected node's. */
		f->post_filter = c->state_filter;
		c->state_filter = 0;
	}
	f->c = c;
	c->refs++;
	c->fan = f;
	return true;
}

static void fan_free(struct op_fan *f)
{
	for (size_t i = 0; i < f->nparts; i++) {
		if (f->parts[i].list)
			vpp__v1__list_devices_response__free_unpacked(f->parts[i].list, NULL);
		if (f->parts[i].one)
			vpp__v1__device_info__free_unpacked(f->parts[i].one, NULL);
	}
	free(f);
}

void vpp__op_fan_abort(op_call *c)
{
	struct op_fan *f = c->fan;
	c->fan = NULL;
	fan_free(f);
	vpp__op_unref(c);
}

static int state_of(const Vpp__V1__DeviceInfo *d)
{
	return (int)d->state;
}

/* Whether |a| tells more of the device now than |b| does. */
static bool better(const Vpp__V1__DeviceInfo *a, const Vpp__V1__DeviceInfo *b)
{
	bool ca = state_of(a) != VPP__V1__DEVICE_STATE__DEVICE_STATE_OFFLINE;
	bool cb = state_of(b) != VPP__V1__DEVICE_STATE__DEVICE_STATE_OFFLINE;
	if (ca != cb)
		return ca;
	return a->last_seen_ms > b->last_seen_ms;
}

static int by_id(const void *x, const void *y)
{
	const Vpp__V1__DeviceInfo *a = *(Vpp__V1__DeviceInfo *const *)x;
	const Vpp__V1__DeviceInfo *b = *(Vpp__V1__DeviceInfo *const *)y;
	int r = strcmp(a->device_id, b->device_id);
	/* Equal ids: the better one first, so the merge keeps it. */
	return r ? r : (better(a, b) ? -1 : better(b, a) ? 1 : 0);
}

/* "node-2 (deadline exceeded), node-3 (...)" of the parts that failed. */
static size_t missing(const struct op_fan *f, const char **ids, char *text, size_t textlen)
{
	size_t n = 0, off = 0;
	text[0] = '\0';
	for (size_t i = 0; i < f->nparts; i++) {
		const fan_part *pt = &f->parts[i];
		if (!pt->failed)
			continue;
		ids[n++] = pt->node_id;
		int w = snprintf(text + off, textlen - off, "%s%s (%s)", off ? ", " : "",
				 pt->node_id, pt->why);
		if (w > 0 && (size_t)w < textlen - off)
			off += (size_t)w;
	}
	return n;
}

static void answer_get(struct op_fan *f, Vpp__V1__DeviceInfo *local)
{
	op_call *c = f->c;
	Vpp__V1__DeviceInfo *best = local;
	for (size_t i = 0; i < f->nparts; i++)
		if (f->parts[i].one && (!best || better(f->parts[i].one, best)))
			best = f->parts[i].one;
	const char *ids[VPP_CLUSTER_NODES_MAX];
	char text[1024];
	size_t nmiss = missing(f, ids, text, sizeof(text));
	if (best) {
		vpp__op_send_msg(c->call, &best->base);
		vpp_grpc_call_finish(c->call, VPP_GRPC_OK, NULL);
	} else if (nmiss) {
		char msg[1200];
		snprintf(msg, sizeof(msg),
			 "device not found on the nodes that answered; not asked: %s: retry", text);
		vpp_grpc_call_finish(c->call, VPP_GRPC_UNAVAILABLE, msg);
	} else {
		vpp_grpc_call_finish(c->call, VPP_GRPC_NOT_FOUND, "no such device");
	}
}

static void answer_list(struct op_fan *f, Vpp__V1__DeviceInfo *local, size_t nlocal)
{
	op_call *c = f->c;
	size_t total = nlocal;
	/* Every source is complete up to its token when it has more: the
	 * merged page is complete up to the smallest such token. */
	const char *bound = c->more ? c->next_token : NULL;
	for (size_t i = 0; i < f->nparts; i++) {
		const Vpp__V1__ListDevicesResponse *l = f->parts[i].list;
		if (!l)
			continue;
		total += l->n_devices;
		if (l->next_page_token[0] && (!bound || strcmp(l->next_page_token, bound) < 0))
			bound = l->next_page_token;
	}
	Vpp__V1__DeviceInfo **all = calloc(total ? total : 1, sizeof(*all));
	if (!all) {
		vpp_grpc_call_finish(c->call, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	size_t n = 0;
	for (size_t i = 0; i < nlocal; i++)
		all[n++] = &local[i];
	for (size_t i = 0; i < f->nparts; i++) {
		const Vpp__V1__ListDevicesResponse *l = f->parts[i].list;
		for (size_t k = 0; l && k < l->n_devices; k++)
			all[n++] = l->devices[k];
	}
	qsort(all, n, sizeof(*all), by_id);
	size_t out = 0;
	bool more = false;
	for (size_t i = 0; i < n; i++) {
		if (out && strcmp(all[i]->device_id, all[out - 1]->device_id) == 0)
			continue; /* the same device as seen by another node */
		if (bound && strcmp(all[i]->device_id, bound) > 0)
			break; /* the next page's: some source has not got there */
		all[out++] = all[i];
	}
	/* Filtered after the duplicates went (an offline copy of a device
	 * online elsewhere is not offline); at most page_size of them. */
	Vpp__V1__DeviceInfo **page = calloc(out ? out : 1, sizeof(*page));
	if (!page) {
		free(all);
		vpp_grpc_call_finish(c->call, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	size_t np = 0;
	for (size_t i = 0; i < out; i++) {
		if (f->post_filter && state_of(all[i]) != f->post_filter)
			continue;
		if (np == c->page_size) {
			more = true;
			break;
		}
		page[np++] = all[i];
	}
	/* Next: after the page's last, or after what every source covered. */
	char token[VPP_ID_CAP * 2] = "";
	if (more)
		snprintf(token, sizeof(token), "%s", page[np - 1]->device_id);
	else if (bound)
		snprintf(token, sizeof(token), "%s", bound);
	const char *ids[VPP_CLUSTER_NODES_MAX];
	char text[1024];
	size_t nmiss = missing(f, ids, text, sizeof(text));
	static vpp_log_limit lines;
	uint32_t skipped;
	if (nmiss && vpp_log_limit_take(&lines, vpp_wall_ms(), 5, 10000, &skipped))
		vpp_log(VPP_LOG_WARN, "operator",
			"ListDevices: devices of %s missing from the answer (%u more not logged before it)",
			text, skipped);
	Vpp__V1__ListDevicesResponse resp = VPP__V1__LIST_DEVICES_RESPONSE__INIT;
	resp.devices = page;
	resp.n_devices = np;
	resp.next_page_token = token;
	resp.missing_nodes = (char **)ids;
	resp.n_missing_nodes = nmiss;
	vpp__op_send_msg(c->call, &resp.base);
	vpp_grpc_call_finish(c->call, VPP_GRPC_OK, NULL);
	free(page);
	free(all);
}

/* All parts are in: answers the caller (if still there) and lets go. */
static void maybe_answer(struct op_fan *f)
{
	if (!f->local_done || f->pending > 0)
		return;
	op_call *c = f->c;
	if (c->call && c->rv != 0) {
		vpp_grpc_call_finish(c->call, VPP_GRPC_INTERNAL, "listing failed");
	} else if (c->call) {
		size_t nl = c->ndevs;
		Vpp__V1__DeviceInfo *local = calloc(nl ? nl : 1, sizeof(*local));
		Vpp__V1__Estimate *est = calloc(nl ? 2 * nl : 1, sizeof(*est));
		if (!local || !est) {
			vpp_grpc_call_finish(c->call, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		} else {
			for (size_t i = 0; i < nl; i++)
				vpp__op_device_info(&local[i], &est[2 * i], &c->devs[i],
						    c->ol->op->o.node_id);
			if (c->kind == OP_GET)
				answer_get(f, nl ? &local[0] : NULL);
			else
				answer_list(f, local, nl);
		}
		free(local);
		free(est);
	}
	c->fan = NULL;
	fan_free(f);
	vpp__op_unref(c);
}

bool vpp__op_fan_local_done(op_call *c)
{
	struct op_fan *f = c->fan;
	if (!f)
		return false;
	f->local_done = true;
	maybe_answer(f);
	return true;
}

static void part_failed(fan_part *pt, const char *why)
{
	if (pt->failed)
		return;
	pt->failed = true;
	snprintf(pt->why, sizeof(pt->why), "%s", why);
}

static void on_part_message(vpp_grpc_call *call, const uint8_t *data, size_t len)
{
	fan_part *pt = vpp_grpc_call_data(call);
	if (pt->list || pt->one) {
		part_failed(pt, "answered with two messages");
		return;
	}
	if (pt->fan->c->kind == OP_GET)
		pt->one = vpp__v1__device_info__unpack(NULL, len, data);
	else
		pt->list = vpp__v1__list_devices_response__unpack(NULL, len, data);
	if (!pt->one && !pt->list)
		part_failed(pt, "its answer does not parse");
}

static void on_part_status(vpp_grpc_call *call, vpp_grpc_status st, const char *message)
{
	fan_part *pt = vpp_grpc_call_data(call);
	struct op_fan *f = pt->fan;
	if (st == VPP_GRPC_NOT_FOUND && f->c->kind == OP_GET) {
		/* not there: an answer */
	} else if (st != VPP_GRPC_OK) {
		char why[160];
		snprintf(why, sizeof(why), "%s: %.100s", vpp_grpc_status_name(st),
			 message ? message : "");
		part_failed(pt, why);
	} else if (!pt->one && !pt->list) {
		part_failed(pt, "answered OK without a message");
	}
	if (pt->failed) {
		if (pt->list)
			vpp__v1__list_devices_response__free_unpacked(pt->list, NULL);
		if (pt->one)
			vpp__v1__device_info__free_unpacked(pt->one, NULL);
		pt->list = NULL;
		pt->one = NULL;
	}
	f->pending--;
	maybe_answer(f);
}

static const vpp_grpc_client_cbs part_cbs = {.on_message = on_part_message,
					     .on_status = on_part_status};

void vpp__op_fan_send(op_call *c)
{
	struct op_fan *f = c->fan;
	op_loop *ol = c->ol;
	const vpp_cluster_view *v = &ol->scratch->view;
	uint8_t buf[256];
	size_t len;
	const char *path;
	if (c->kind == OP_GET) {
		Vpp__V1__GetDeviceRequest r = VPP__V1__GET_DEVICE_REQUEST__INIT;
		r.device_id = c->after;
		len = vpp__v1__get_device_request__pack(&r, buf);
		path = "/vpp.v1.GridOperator/GetDevice";
	} else {
		Vpp__V1__ListDevicesRequest r = VPP__V1__LIST_DEVICES_REQUEST__INIT;
		r.page_size = c->page_size;
		r.page_token = c->after;
		r.state = (Vpp__V1__DeviceState)c->state_filter;
		len = vpp__v1__list_devices_request__pack(&r, buf);
		path = "/vpp.v1.GridOperator/ListDevices";
	}
	vpp_grpc_md md[2] = {{"vpp-scope", "node"}, {"authorization", f->auth}};
	size_t nmd = f->auth[0] ? 2 : 1;
	for (size_t i = 0; i < f->nparts; i++) {
		fan_part *pt = &f->parts[i];
		const vpp_cluster_node *n = NULL;
		for (size_t k = 0; k < v->n && !n; k++)
			if (strcmp(v->nodes[k].node_id, pt->node_id) == 0)
				n = &v->nodes[k];
		char why[160] = "not in the cluster view";
		vpp_grpc_conn *conn = n ? peer(ol, n, why, sizeof(why)) : NULL;
		vpp_grpc_call *call = NULL;
		if (conn && vpp_grpc_conn_call(conn, path, md, nmd, PEER_TIMEOUT_MS, &part_cbs, pt,
					       &call) != 0) {
			snprintf(why, sizeof(why), "its connection is closing");
			conn = NULL;
		}
		if (!conn) {
			part_failed(pt, why);
			continue;
		}
		f->pending++;
		if (vpp_grpc_call_send(call, buf, len) != 0 || vpp_grpc_call_close_send(call) != 0)
			vpp_grpc_call_cancel(call);
	}
}
