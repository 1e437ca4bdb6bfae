/* The standard gRPC health service. Statuses live behind a mutex (they
 * change rarely); Watch streams poll a version counter with a timer, which
 * keeps every stream on its own loop without cross-thread wake-ups. */
#include "vpp/health.h"
#include "vpp/error.h"
#include "grpc/health/v1/health.pb-c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERVICES 16
#define WATCH_POLL_MS 250

struct vpp_health {
	pthread_mutex_t lock;
	char *names[MAX_SERVICES];
	int status[MAX_SERVICES];
	int n;
	_Atomic uint64_t version;
};

typedef struct {
	uv_timer_t timer;
	vpp_grpc_call *call;
	vpp_health *h;
	char *service;
	int last_sent;
	uint64_t seen_version;
	bool pending; /* a status waits for room in the outbound queue */
} watcher;

int vpp_health_new(vpp_health **ret)
{
	vpp_health *h = calloc(1, sizeof(*h));
	if (!h)
		return VPP_ENOMEM;
	pthread_mutex_init(&h->lock, NULL);
	*ret = h;
	return 0;
}

void vpp_health_free(vpp_health *h)
{
	if (!h)
		return;
	for (int i = 0; i < h->n; i++)
		free(h->names[i]);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

int vpp_health_set(vpp_health *h, const char *service, vpp_health_status st)
{
	int rv = 0;
	pthread_mutex_lock(&h->lock);
	int i;
	for (i = 0; i < h->n; i++)
		if (strcmp(h->names[i], service) == 0)
			break;
	if (i == h->n) {
		if (h->n == MAX_SERVICES || !(h->names[i] = strdup(service))) {
			rv = VPP_EFULL;
			goto out;
		}
		h->n++;
	}
	h->status[i] = (int)st;
	atomic_fetch_add(&h->version, 1);
out:
	pthread_mutex_unlock(&h->lock);
	return rv;
}

/* Returns the status of |service| or -1 when it is unknown. */
static int lookup(vpp_health *h, const char *service)
{
	int st = -1;
	pthread_mutex_lock(&h->lock);
	for (int i = 0; i < h->n; i++)
		if (strcmp(h->names[i], service) == 0)
			st = h->status[i];
	pthread_mutex_unlock(&h->lock);
	return st;
}

/* Unpacking a HealthCheckRequest on the stack: Check is the probe every
 * load balancer sends, and the message is one short string. Larger
 * requests fall back to malloc. */
typedef struct {
	_Alignas(16) uint8_t buf[256];
	size_t used;
} unpack_arena;

static void *arena_alloc(void *ud, size_t n)
{
	unpack_arena *a = ud;
	n = (n + 15) & ~(size_t)15;
	if (n <= sizeof(a->buf) - a->used) {
		void *p = a->buf + a->used;
		a->used += n;
		return p;
	}
	return malloc(n);
}

static void arena_free(void *ud, void *p)
{
	unpack_arena *a = ud;
	uintptr_t u = (uintptr_t)p, lo = (uintptr_t)a->buf;
	if (u < lo || u >= lo + sizeof(a->buf))
		free(p);
}

static int send_status(vpp_grpc_call *call, int st)
{
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)st;
	uint8_t buf[16];
	size_t len = grpc__health__v1__health_check_response__pack(&resp, buf);
	return vpp_grpc_call_send(call, buf, len);
}

static void on_check(vpp_grpc_call *call, const uint8_t *req, size_t len)
{
	vpp_health *h = vpp_grpc_call_method_data(call);
	unpack_arena arena;
	arena.used = 0;
	ProtobufCAllocator alloc = {arena_alloc, arena_free, &arena};
	Grpc__Health__V1__HealthCheckRequest *r =
		grpc__health__v1__health_check_request__unpack(&alloc, len, req);
	if (!r) {
		vpp_grpc_call_reject(call, VPP_GRPC_INVALID_ARGUMENT, "bad_message",
				     "HealthCheckRequest does not parse");
		return;
	}
	int st = lookup(h, r->service);
	grpc__health__v1__health_check_request__free_unpacked(r, &alloc);
	if (st < 0) {
		vpp_grpc_call_finish(call, VPP_GRPC_NOT_FOUND, "unknown service");
		return;
	}
	send_status(call, st);
	vpp_grpc_call_finish(call, VPP_GRPC_OK, NULL);
}

static void watch_poll(uv_timer_t *t)
{
	watcher *w = t->data;
	uint64_t v = atomic_load(&w->h->version);
	if (v == w->seen_version && !w->pending)
		return;
	w->seen_version = v;
	int st = lookup(w->h, w->service);
	if (st < 0)
		st = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
	if (st == w->last_sent && !w->pending)
		return;
	/* A watcher that does not read keeps only the newest status. */
	w->pending = send_status(w->call, st) == VPP_EFULL;
	if (!w->pending)
		w->last_sent = st;
}

static void on_watch(vpp_grpc_call *call, const uint8_t *req, size_t len)
{
	vpp_health *h = vpp_grpc_call_method_data(call);
	Grpc__Health__V1__HealthCheckRequest *r =
		grpc__health__v1__health_check_request__unpack(NULL, len, req);
	if (!r) {
		vpp_grpc_call_reject(call, VPP_GRPC_INVALID_ARGUMENT, "bad_message",
				     "HealthCheckRequest does not parse");
		return;
	}
	watcher *w = calloc(1, sizeof(*w));
	if (!w || !(w->service = strdup(r->service))) {
		free(w);
		grpc__health__v1__health_check_request__free_unpacked(r, NULL);
		vpp_grpc_call_finish(call, VPP_GRPC_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	grpc__health__v1__health_check_request__free_unpacked(r, NULL);
	w->call = call;
	w->h = h;
	w->last_sent = -1;
	w->seen_version = atomic_load(&h->version) - 1; /* send the first status now */
	vpp_grpc_call_set_data(call, w);
	uv_timer_init(vpp_grpc_call_loop(call), &w->timer);
	w->timer.data = w;
	watch_poll(&w->timer);
	uv_timer_start(&w->timer, watch_poll, WATCH_POLL_MS, WATCH_POLL_MS);
}

static void on_watcher_closed(uv_handle_t *hd)
{
	watcher *w = hd->data;
	free(w->service);
	free(w);
}

static void on_watch_done(vpp_grpc_call *call, vpp_grpc_status st)
{
	watcher *w = vpp_grpc_call_data(call);
	if (w)
		uv_close((uv_handle_t *)&w->timer, on_watcher_closed);
}

int vpp_health_register(vpp_health *h, vpp_grpc_listener *l)
{
	int rv;
	vpp_grpc_method check = {.path = "/grpc.health.v1.Health/Check",
				 .on_request = on_check,
				 .method_ud = h,
				 .request = &grpc__health__v1__health_check_request__descriptor};
	vpp_grpc_method watch = {.path = "/grpc.health.v1.Health/Watch",
				 .on_request = on_watch,
				 .on_done = on_watch_done,
				 .method_ud = h,
				 .request = &grpc__health__v1__health_check_request__descriptor};
	if ((rv = vpp_grpc_listener_add_method(l, &check)) != 0)
		return rv;
	return vpp_grpc_listener_add_method(l, &watch);
}
