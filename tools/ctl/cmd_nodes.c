/* vppctl nodes: the vppd nodes of a cluster (ListNodes), and the per-node
 * table and JSON that status shows too. */
#include "cmd_int.h"

#include <stdlib.h>
#include <string.h>

enum { C_NODE, C_ROLE, C_ONLINE, C_SHARE, C_MEASURED, C_HEARTBEAT, C_VERSION, C_DRAINING, NCOLS };

static const char *const headers[NCOLS] = {
    "NODE",      "ROLE",    "ONLINE",  "SHARE kW", "MEASURED kW \u00b1 sigma",
    "HEARTBEAT", "VERSION", "DRAINING"};
static const bool right[NCOLS] = {false, false, true, true, true, true, false, false};

#define CELL 96

/* The cells of one node's row. The heartbeat's age is the server's (by the
 * database's clock): this machine's clock may be off the nodes'. */
static void cells(const Vpp__V1__NodeStatus *n, char out[NCOLS][CELL])
{
	char a[48], b[48];
	snprintf(out[C_NODE], CELL, "%s", n->node_id[0] ? n->node_id : "-");
	snprintf(out[C_ROLE], CELL, "%s", n->role[0] ? n->role : "-");
	snprintf(out[C_ONLINE], CELL, "%u", n->devices_online);
	vpp__ctl_fmt_num(out[C_SHARE], CELL, n->share_kw, 1);
	if (n->measured_kw)
		snprintf(out[C_MEASURED], CELL, "%s \u00b1%s",
		         vpp__ctl_fmt_num(a, sizeof(a), n->measured_kw->value, 1),
		         vpp__ctl_fmt_num(b, sizeof(b), n->measured_kw->sigma, 1));
	else
		snprintf(out[C_MEASURED], CELL, "n/a");
	if (n->heartbeat_at_ms > 0)
		snprintf(out[C_HEARTBEAT], CELL, "%s ago%s",
		         vpp__ctl_fmt_age(a, sizeof(a), n->heartbeat_age_ms),
		         n->alive ? "" : ", dead");
	else
		snprintf(out[C_HEARTBEAT], CELL, "never%s", n->alive ? "" : ", dead");
	snprintf(out[C_VERSION], CELL, "%s", n->version[0] ? n->version : "-");
	snprintf(out[C_DRAINING], CELL, "%s", n->draining ? "yes" : "no");
}

int vpp__ctl_print_nodes(Vpp__V1__NodeStatus *const *nodes, size_t n, const char *indent)
{
	char(*c)[NCOLS][CELL] = calloc(n ? n : 1, sizeof(*c));
	const char **ptrs = calloc(n ? n * NCOLS : 1, sizeof(*ptrs));
	if (!c || !ptrs) {
		free(c);
		free(ptrs);
		fprintf(stderr, "vppctl: out of memory\n");
		return VPP__CTL_EXIT_ERROR;
	}
	for (size_t i = 0; i < n; i++) {
		cells(nodes[i], c[i]);
		for (int k = 0; k < NCOLS; k++)
			ptrs[i * NCOLS + (size_t)k] = c[i][k];
	}
	vpp__ctl_table(stdout, indent, NCOLS, headers, right, ptrs, n);
	free(c);
	free(ptrs);
	return VPP__CTL_EXIT_OK;
}

static void node_json(vpp__ctl_json *j, const Vpp__V1__NodeStatus *n)
{
	vpp__ctl_json_begin(j, NULL);
	vpp__ctl_json_str(j, "node_id", n->node_id);
	vpp__ctl_json_str(j, "role", n->role);
	vpp__ctl_json_bool(j, "alive", n->alive);
	vpp__ctl_json_bool(j, "draining", n->draining);
	vpp__ctl_json_str(j, "version", n->version[0] ? n->version : NULL);
	vpp__ctl_json_str(j, "api_addr", n->api_addr[0] ? n->api_addr : NULL);
	vpp__ctl_json_str(j, "device_addr", n->device_addr[0] ? n->device_addr : NULL);
	vpp__ctl_json_int(j, "started_at_ms", n->started_at_ms);
	vpp__ctl_json_int(j, "heartbeat_at_ms", n->heartbeat_at_ms);
	vpp__ctl_json_int(j, "heartbeat_age_ms", n->heartbeat_age_ms);
	vpp__ctl_json_int(j, "epoch", (int64_t)n->epoch);
	vpp__ctl_json_num(j, "share_kw", n->share_kw);
	vpp__ctl_json_pb_estimate(j, "measured_kw", n->measured_kw);
	vpp__ctl_json_int(j, "devices_online", n->devices_online);
	vpp__ctl_json_int(j, "devices_stale", n->devices_stale);
	vpp__ctl_json_int(j, "devices_degraded", n->devices_degraded);
	vpp__ctl_json_int(j, "devices_offline", n->devices_offline);
	vpp__ctl_json_num(j, "shortfall_kw", n->shortfall_kw);
	vpp__ctl_json_end(j);
}

void vpp__ctl_json_nodes(vpp__ctl_json *j, Vpp__V1__NodeStatus *const *nodes, size_t n,
                         const char *leader_id, uint64_t leader_epoch)
{
	vpp__ctl_json_begin_array(j, "nodes");
	for (size_t i = 0; i < n; i++)
		node_json(j, nodes[i]);
	vpp__ctl_json_end_array(j);
	vpp__ctl_json_str(j, "leader_node_id", leader_id[0] ? leader_id : NULL);
	vpp__ctl_json_int(j, "leader_epoch", (int64_t)leader_epoch);
}

int vpp__ctl_cmd_nodes(vpp__ctl_client *c, vpp__ctl_opts *o)
{
	Vpp__V1__ListNodesRequest req = VPP__V1__LIST_NODES_REQUEST__INIT;
	ProtobufCMessage *m;
	int rc = vpp__ctl_call(c, o, VPP__CTL_SERVICE "ListNodes", &req.base,
	                       &vpp__v1__list_nodes_response__descriptor, &m);
	if (rc)
		return rc;
	const Vpp__V1__ListNodesResponse *r = (const Vpp__V1__ListNodesResponse *)m;
	size_t alive = 0;
	for (size_t i = 0; i < r->n_nodes; i++)
		alive += r->nodes[i]->alive;
	if (o->json) {
		vpp__ctl_json j;
		vpp__ctl_json_init(&j);
		vpp__ctl_json_begin(&j, NULL);
		vpp__ctl_json_nodes(&j, r->nodes, r->n_nodes, r->leader_node_id, r->leader_epoch);
		vpp__ctl_json_int(&j, "count", (int64_t)r->n_nodes);
		vpp__ctl_json_int(&j, "alive", (int64_t)alive);
		vpp__ctl_json_end(&j);
		rc = vpp__ctl_json_emit(&j);
	} else if ((rc = vpp__ctl_print_nodes(r->nodes, r->n_nodes, "")) == 0) {
		printf("%zu node%s, %zu alive; ", r->n_nodes, r->n_nodes == 1 ? "" : "s", alive);
		if (r->leader_node_id[0])
			printf("leader %s (epoch %llu)\n", r->leader_node_id,
			       (unsigned long long)r->leader_epoch);
		else
			printf("no leader\n");
	}
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}
