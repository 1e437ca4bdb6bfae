/* Admin HTTP endpoint: a small HTTP/1.1 server for operators and Prometheus,
 * on a thread and libuv loop of its own so that a busy or stuck I/O loop
 * never hides the process's metrics.
 *
 *   GET /metrics  200, Prometheus text format (vpp_metrics_render())
 *   GET /healthz  200 "ok\n": the process and its admin loop are alive
 *   GET /readyz   200 "ready\n", or 503 with the reason from the callback,
 *                 or 404 "draining: ..." (HAProxy's `http-check
 *                 disable-on-404` then sends the node no new sessions but
 *                 keeps those it has, so they can leave a few at a time)
 *   other paths   404;  other methods 405;  malformed or oversized 400
 *
 * Keep-alive is supported. Each connection handles one request at a time, a
 * request is at most VPP_ADMIN_MAX_REQUEST bytes, and a connection must send
 * a complete request within VPP_ADMIN_TIMEOUT_MS of its previous response (or
 * of being accepted), so a slow or hostile client holds a bounded amount of
 * memory for a bounded time. At most VPP_ADMIN_MAX_CONNS connections are
 * served at once; more are closed on accept. */
#ifndef VPP_ADMIN_H
#define VPP_ADMIN_H

#include <stddef.h>

#define VPP_ADMIN_MAX_REQUEST 8192
#define VPP_ADMIN_TIMEOUT_MS 10000
#define VPP_ADMIN_MAX_CONNS 256

typedef struct vpp_admin vpp_admin;

/* Returns 1 when the process is ready to serve; else 0 and a short reason in
 * |why| (|whylen| bytes, NUL-terminated), or VPP_ADMIN_DRAINING with one. Called on the admin thread, so it
 * must be thread-safe. */
#define VPP_ADMIN_DRAINING 2
typedef int (*vpp_admin_ready_fn)(void *ud, char *why, size_t whylen);

/* Binds |addr| (IPv4 or IPv6 literal, or "localhost") port |port| (0 picks a
 * free port) and starts the admin thread. |ready| may be NULL (always ready);
 * |ud| is passed to it. Sets |*ret| on success. Returns VPP_EINVAL (bad
 * address or port), VPP_EIO (cannot bind or listen, e.g. port in use, or
 * cannot start the thread) or VPP_ENOMEM. */
int vpp_admin_start(const char *addr, int port, vpp_admin_ready_fn ready, void *ud,
		    vpp_admin **ret);

/* The bound port: the one picked by the system when started with port 0. */
int vpp_admin_port(const vpp_admin *a);

/* Closes every connection, stops and joins the admin thread, frees |a|.
 * Accepts NULL. Must not be called from the ready callback. */
void vpp_admin_stop(vpp_admin *a);

#endif
