/* Shared by vppctl's commands (cmd_*.c): calls with protobuf-c messages and
 * the output of the API's common types. */
#ifndef VPP_CTL_CMD_INT_H
#define VPP_CTL_CMD_INT_H

#include "ctl_int.h"
#include "vpp/v1/common.pb-c.h"
#include "vpp/v1/grid.pb-c.h"

#include <protobuf-c/protobuf-c.h>

#define VPP__CTL_SERVICE "/vpp.v1.GridOperator/"

/* Packs |req|, calls |path| and unpacks the answer as |desc| into |*resp|
 * (free it with protobuf_c_message_free_unpacked). On failure prints what
 * went wrong (see vpp__ctl_report_failure) and returns the exit code;
 * returns 0 on success. */
int vpp__ctl_call(vpp__ctl_client *c, const vpp__ctl_opts *o, const char *path,
                  const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                  ProtobufCMessage **resp);
/* The same, and the call's outcome into |oc| (its status on failure). */
int vpp__ctl_call_outcome(vpp__ctl_client *c, const vpp__ctl_opts *o, const char *path,
                          const ProtobufCMessage *req, const ProtobufCMessageDescriptor *desc,
                          ProtobufCMessage **resp, vpp__ctl_outcome *oc);

/* Packs |req| into a malloc'd buffer. Returns 0 or VPP_ENOMEM. */
int vpp__ctl_pack(const ProtobufCMessage *req, uint8_t **buf, size_t *len);

/* An Estimate (NULL when the server left it out: printed as n/a / null). */
char *vpp__ctl_fmt_pb_estimate(char *buf, size_t len, const Vpp__V1__Estimate *e, const char *unit);
void vpp__ctl_json_pb_estimate(vpp__ctl_json *j, const char *key, const Vpp__V1__Estimate *e);

/* Prints how long the fleet's energy sustains |kw| ("lasts" row; nothing
 * for 0 kW), and a WARNING when that is less than |valid_for_s| (> 0). */
void vpp__ctl_print_sustain(double sustain_s, double kw, double valid_for_s);

/* cmd_nodes.c: the table of |n| |nodes| on stdout, each line after
 * |indent|. Returns the exit code (VPP__CTL_EXIT_ERROR when out of memory). */
int vpp__ctl_print_nodes(Vpp__V1__NodeStatus *const *nodes, size_t n, const char *indent);
/* "nodes": [...], "leader_node_id" (null when empty) and "leader_epoch"
 * into the open object |j|. */
void vpp__ctl_json_nodes(vpp__ctl_json *j, Vpp__V1__NodeStatus *const *nodes, size_t n,
                         const char *leader_id, uint64_t leader_epoch);

/* Prints |j| as one line on stdout and frees it. Returns the exit code
 * (VPP__CTL_EXIT_ERROR when out of memory). */
int vpp__ctl_json_emit(vpp__ctl_json *j);

#endif
