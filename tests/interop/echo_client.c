/* Drives the project's C gRPC client against any vpp.v1.Echo server
 * (tests/interop/echo_server.py, Google's gRPC for Python): each call kind,
 * metadata, status codes, deadlines, cancellation, a 4 MiB message, 100
 * concurrent streams and many connections. Prints one line per case and
 * ends with "N passed, N failed". */
#include "vpp/error.h"
#include "vpp/grpc.h"
#include "vpp/v1/echo.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

static uv_loop_t *loop;
static vpp_grpc_tls *tls;
static const char *host = "127.0.0.1", *authority;
static int port;
static const char *expect_identity;
static int passed, failed;

/* ---- a call that collects everything ---- */

typedef struct {
	bool done;
	int status;
	char message[512];
	int nmsgs;
	Vpp__V1__EchoResponse *last;
	uint32_t index_errors;
	char initial[64];
	char trailer[64];
	int cancel_after; /* cancel after this many messages (0: never) */
	vpp_grpc_call *call;
} result;

static void on_headers(vpp_grpc_call *call)
{
	result *r = vpp_grpc_call_data(call);
	const char *v = vpp_grpc_call_metadata(call, "x-echo-initial");
	if (v)
		snprintf(r->initial, sizeof(r->initial), "%s", v);
}

static void on_message(vpp_grpc_call *call, const uint8_t *data, size_t len)
{
	result *r = vpp_grpc_call_data(call);
	Vpp__V1__EchoResponse *m = vpp__v1__echo_response__unpack(NULL, len, data);
	if (!m) {
		r->index_errors++;
		return;
	}
	if (m->index != (uint32_t)r->nmsgs)
		r->index_errors++;
	r->nmsgs++;
	if (r->last)
		vpp__v1__echo_response__free_unpacked(r->last, NULL);
	r->last = m;
	if (r->cancel_after && r->nmsgs == r->cancel_after)
		vpp_grpc_call_cancel(call);
}

static void on_status(vpp_grpc_call *call, vpp_grpc_status st, const char *msg)
{
	result *r = vpp_grpc_call_data(call);
	const char *t = vpp_grpc_call_metadata(call, "x-echo-trailer");
	if (t)
		snprintf(r->trailer, sizeof(r->trailer), "%s", t);
	r->status = st;
	snprintf(r->message, sizeof(r->message), "%s", msg ? msg : "");
	r->done = true;
	r->call = NULL;
}

static const vpp_grpc_client_cbs cbs = {on_headers, on_message, NULL, on_status};

static void result_free(result *r)
{
	if (r->last)
		vpp__v1__echo_response__free_unpacked(r->last, NULL);
	r->last = NULL;
}

static void on_tick(uv_timer_t *t)
{
}

/* Runs the loop until |*flag| or |ms| pass. Returns *flag. */
static bool run_until(bool *flag, int ms)
{
	uv_timer_t t;
	uv_timer_init(loop, &t);
	uv_timer_start(&t, on_tick, 10, 10);
	uint64_t end = uv_now(loop) + (uint64_t)ms;
	while (!*flag && uv_now(loop) < end)
		uv_run(loop, UV_RUN_ONCE);
	uv_close((uv_handle_t *)&t, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
	return *flag;
}

static bool conn_closed_flag;

static void on_conn_closed(vpp_grpc_conn *c, int err, void *ud)
{
	bool *f = ud;
	if (f)
		*f = true;
}

static vpp_grpc_conn *connect_one(const char *bind_addr, bool *closed)
{
	vpp_grpc_client_opts o = {.host = host,
				  .port = port,
				  .authority = authority,
				  .tls = tls,
				  .bind_addr = bind_addr,
				  .max_message_bytes = 8 * 1024 * 1024,
				  .call_outbound_limit = 8 * 1024 * 1024,
				  .on_closed = on_conn_closed,
				  .ud = closed};
	vpp_grpc_conn *c;
	if (vpp_grpc_conn_new(loop, &o, &c) != 0)
		return NULL;
	return c;
}

static void check(bool ok, const char *name, const char *detail)
{
	if (ok)
		passed++;
	else
		failed++;
	printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name, ok ? "" : ": ", ok ? "" : detail);
	fflush(stdout);
}

static uint8_t *pack_req(const Vpp__V1__EchoRequest *req, size_t *len)
{
	*len = vpp__v1__echo_request__get_packed_size(req);
	uint8_t *buf = malloc(*len ? *len : 1);
	vpp__v1__echo_request__pack(req, buf);
	return buf;
}

/* Starts |path| with |reqs| (n of them), half-closes, waits for the end. */
static void call_sync(vpp_grpc_conn *c, const char *path, Vpp__V1__EchoRequest **reqs, size_t n,
		      const vpp_grpc_md *md, size_t nmd, uint32_t timeout_ms, result *r)
{
	memset(r, 0, sizeof(*r));
	vpp_grpc_call *call;
	if (vpp_grpc_conn_call(c, path, md, nmd, timeout_ms, &cbs, r, &call) != 0) {
		r->done = true;
		r->status = -1;
		return;
	}
	r->call = call;
	for (size_t i = 0; i < n; i++) {
		size_t len;
		uint8_t *buf = pack_req(reqs[i], &len);
		vpp_grpc_call_send(call, buf, len);
		free(buf);
	}
	vpp_grpc_call_close_send(call);
	run_until(&r->done, 15000);
}

static void case_unary(vpp_grpc_conn *c)
{
	Vpp__V1__EchoRequest req = VPP__V1__ECHO_REQUEST__INIT, *reqs[] = {&req};
	req.message = "hello";
	vpp_grpc_md md[] = {{"x-echo-initial", "first"}, {"x-echo-trailer", "last"},
			    {"x-custom", "value 1"}};
	result r;
	call_sync(c, "/vpp.v1.Echo/Unary", reqs, 1, md, 3, 5000, &r);
	char d[600];
	snprintf(d, sizeof(d), "status=%d msg=%s n=%d", r.status, r.message, r.nmsgs);
	check(r.status == 0 && r.nmsgs == 1 && r.last && strcmp(r.last->message, "hello") == 0,
	      "unary", d);
	bool md_ok = r.last && r.last->n_metadata == 3 &&
		     strcmp(r.last->metadata[0], "x-custom=value 1") == 0;
	check(md_ok && strcmp(r.initial, "first") == 0 && strcmp(r.trailer, "last") == 0,
	      "metadata both ways", d);
	if (expect_identity)
		check(r.last && strcmp(r.last->peer_identity, expect_identity) == 0,
		      "client certificate identity", r.last ? r.last->peer_identity : "none");
	result_free(&r);
}

static void case_status(vpp_grpc_conn *c)
{
	const char *msg = "bad thing: 100% \xc3\xbc\n\"quoted\"";
	int ok = 0;
	for (int code = 1; code <= 16; code++) {
		Vpp__V1__EchoRequest req = VPP__V1__ECHO_REQUEST__INIT, *reqs[] = {&req};
		req.fail_with_code = code;
		req.fail_with_message = (char *)msg;
		result r;
		call_sync(c, "/vpp.v1.Echo/Unary", reqs, 1, NULL, 0, 5000, &r);
		if (r.status == code && strcmp(r.message, msg) == 0)
			ok++;
		result_free(&r);
	}
	char d[64];
	snprintf(d, sizeof(d), "%d of 16 codes round-tripped", ok);
	check(ok == 16, "status codes and percent-encoded messages", d);
}

static void case_deadline(vpp_grpc_conn *c)
{
	Vpp__V1__EchoRequest req = VPP__V1__ECHO_REQUEST__INIT, *reqs[] = {&req};
	req.delay_ms = 2000;
	result r;
	uint64_t t0 = uv_now(loop);
	call_sync(c, "/vpp.v1.Echo/Unary", reqs, 1, NULL, 0, 200, &r);
	uint64_t took = uv_now(loop) - t0;
	char d[128];
	snprintf(d, sizeof(d), "status=%d after %llu ms", r.status, (unsigned long long)took);
	check(r.status == VPP_GRPC_DEADLINE_EXCEEDED && took < 1500, "deadline", d);
	result_free(&r);
}

static void case_server_stream(vpp_grpc_conn *c)
{
	Vpp__V1__EchoRequest req = VPP__V1__ECHO_REQUEST__INIT, *reqs[] = {&req};
	req.count = 50;
	req.response_size = 1000;
	result r;
	call_sync(c, "/vpp.v1.Echo/ServerStream", reqs, 1, NULL, 0, 10000, &r);
	char d[128];
	snprintf(d, sizeof(d), "status=%d n=%d index_errors=%u", r.status, r.nmsgs, r.index_errors);
	check(r.status == 0 && r.nmsgs == 50 && r.index_errors == 0 && r.last &&
		      r.last->payload.len == 1000,
	      "server streaming", d);
	result_free(&r);
}

static void case_client_stream(vpp_grpc_conn *c)
{
	Vpp__V1__EchoRequest reqs_v[20], *reqs[20];
	uint8_t payload[100] = {0};
	char names[20][8];
	for (int i = 0; i < 20; i++) {
		vpp__v1__echo_request__init(&reqs_v[i]);
		snprintf(names[i], sizeof(names[i]), "m%d", i);
		reqs_v[i].message = names[i];
		reqs_v[i].payload.data = payload;
		reqs_v[i].payload.len = 100;
		reqs[i] = &reqs_v[i];
	}
	result r;
	call_sync(c, "/vpp.v1.Echo/ClientStream", reqs, 20, NULL, 0, 10000, &r);
	char d[128];
	snprintf(d, sizeof(d), "status=%d count=%u bytes=%llu", r.status,
		 r.last ? r.last->received_count : 0,
		 (unsigned long long)(r.last ? r.last->received_bytes : 0));
	check(r.status == 0 && r.last && r.last->received_count == 20 &&
		      r.last->received_bytes == 2000 && strcmp(r.last->message, "m19") == 0,
	      "client streaming", d);
	result_free(&r);
}

static void case_bidi(vpp_grpc_conn *c)
{
	Vpp__V1__EchoRequest reqs_v[10], *reqs[10];
	for (int i = 0; i < 10; i++) {
		vpp__v1__echo_request__init(&reqs_v[i]);
		reqs_v[i].message = "ping";
		reqs[i] = &reqs_v[i];
	}
	result r;
	call_sync(c, "/vpp.v1.Echo/Bidi", reqs, 10, NULL, 0, 10000, &r);
	char d[128];
	snprintf(d, sizeof(d), "status=%d n=%d index_errors=%u", r.status, r.nmsgs, r.index_errors);
	check(r.status == 0 && r.nmsgs == 10 && r.index_errors == 0, "bidirectional streaming", d);
	result_free(&r);
}

static void case_big(vpp_grpc_conn *c)
{
	size_t n = 4 * 1024 * 1024;
	uint8_t *payload = malloc(n);
	for (size_t i = 0; i < n; i++)
		payload[i] = (uint8_t)(i * 7);
	Vpp__V1__EchoRequest req = VPP__V1__ECHO_REQUEST__INIT, *reqs[] = {&req};
	req.payload.data = payload;
	req.payload.len = n;
	result r;
	call_sync(c, "/vpp.v1.Echo/Unary", reqs, 1, NULL, 0, 30000, &r);
	bool same = r.last && r.last->payload.len == n && memcmp(r.last->payload.data, payload, n) == 0;
	char d[128];
	snprintf(d, sizeof(d), "status=%d len=%zu", r.status, r.last ? r.last->payload.len : 0);
	check(r.status == 0 && same, "4 MiB message both ways", d);
	result_free(&r);
	free(payload);
}

static void case_concurrent(vpp_grpc_conn *c)
{
	enum { N = 100 };
	result *rs = calloc(N, sizeof(result));
	Vpp__V1__EchoRequest req = VPP__V1__ECHO_REQUEST__INIT;
	req.message = "concurrent";
	req.delay_ms = 200;
	size_t len;
	uint8_t *buf = pack_req(&req, &len);
	for (int i = 0; i < N; i++) {
		vpp_grpc_call *call;
		if (vpp_grpc_conn_call(c, "/vpp.v1.Echo/Unary", NULL, 0, 10000, &cbs, &rs[i],
				       &call) != 0) {
			rs[i].done = true;
			rs[i].status = -1;
			continue;
		}
		vpp_grpc_call_send(call, buf, len);
		vpp_grpc_call_close_send(call);
	}
	free(buf);
	uint64_t t0 = uv_now(loop);
	int ok = 0;
	for (int i = 0; i < N; i++) {
		run_until(&rs[i].done, 15000);
		if (rs[i].status == 0 && rs[i].nmsgs == 1)
			ok++;
		result_free(&rs[i]);
	}
	uint64_t took = uv_now(loop) - t0;
	char d[128];
	snprintf(d, sizeof(d), "%d of %d ok in %llu ms", ok, N, (unsigned long long)took);
	/* 100 calls of 200 ms each in parallel, not one after the other. */
	check(ok == N && took < 5000, "100 concurrent streams", d);
	free(rs);
}

static void case_cancel(vpp_grpc_conn *c)
{
	Vpp__V1__EchoRequest req = VPP__V1__ECHO_REQUEST__INIT, *reqs[] = {&req};
	req.count = 1000;
	req.delay_ms = 10;
	result r;
	memset(&r, 0, sizeof(r));
	r.cancel_after = 3;
	vpp_grpc_call *call;
	if (vpp_grpc_conn_call(c, "/vpp.v1.Echo/ServerStream", NULL, 0, 10000, &cbs, &r, &call) ==
	    0) {
		size_t len;
		uint8_t *buf = pack_req(reqs[0], &len);
		vpp_grpc_call_send(call, buf, len);
		vpp_grpc_call_close_send(call);
		free(buf);
		run_until(&r.done, 10000);
	}
	char d[128];
	snprintf(d, sizeof(d), "status=%d n=%d", r.status, r.nmsgs);
	check(r.done && r.status == VPP_GRPC_CANCELLED && r.nmsgs == 3, "cancellation", d);
	result_free(&r);
	/* The connection still works after a cancelled stream. */
	Vpp__V1__EchoRequest ok = VPP__V1__ECHO_REQUEST__INIT, *oks[] = {&ok};
	ok.message = "after";
	call_sync(c, "/vpp.v1.Echo/Unary", oks, 1, NULL, 0, 5000, &r);
	check(r.status == 0, "connection usable after a cancel", r.message);
	result_free(&r);
}

typedef struct {
	bool done;
	int status;
	int serving;
} health_result;

static void on_health_msg(vpp_grpc_call *call, const uint8_t *data, size_t len)
{
	health_result *h = vpp_grpc_call_data(call);
	Grpc__Health__V1__HealthCheckResponse *m =
		grpc__health__v1__health_check_response__unpack(NULL, len, data);
	if (m) {
		h->serving = m->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
		grpc__health__v1__health_check_response__free_unpacked(m, NULL);
	}
}

static void on_health_status(vpp_grpc_call *call, vpp_grpc_status st, const char *msg)
{
	health_result *h = vpp_grpc_call_data(call);
	h->status = st;
	h->done = true;
}

static const vpp_grpc_client_cbs health_cbs = {NULL, on_health_msg, NULL, on_health_status};

static void case_many_connections(int nconns)
{
	vpp_grpc_conn **cs = calloc((size_t)nconns, sizeof(*cs));
	health_result *hs = calloc((size_t)nconns, sizeof(*hs));
	uint8_t empty[1];
	uint64_t t0 = uv_now(loop);
	for (int i = 0; i < nconns; i++) {
		char bind[32];
		/* Spread source addresses as the emulator does. */
		snprintf(bind, sizeof(bind), "127.0.%d.%d", 1 + i / 250, 1 + i % 250);
		cs[i] = connect_one(strcmp(host, "127.0.0.1") == 0 ? bind : NULL, NULL);
		vpp_grpc_call *call;
		if (!cs[i] || vpp_grpc_conn_call(cs[i], "/grpc.health.v1.Health/Check", NULL, 0,
						 30000, &health_cbs, &hs[i], &call) != 0) {
			hs[i].done = true;
			hs[i].status = -1;
			continue;
		}
		vpp_grpc_call_send(call, empty, 0);
		vpp_grpc_call_close_send(call);
	}
	int ok = 0;
	for (int i = 0; i < nconns; i++) {
		run_until(&hs[i].done, 30000);
		if (hs[i].status == 0 && hs[i].serving)
			ok++;
	}
	uint64_t took = uv_now(loop) - t0;
	for (int i = 0; i < nconns; i++)
		if (cs[i])
			vpp_grpc_conn_close(cs[i], false);
	uv_run(loop, UV_RUN_NOWAIT);
	char d[128], name[64];
	snprintf(d, sizeof(d), "%d of %d in %llu ms", ok, nconns, (unsigned long long)took);
	snprintf(name, sizeof(name), "%d connections from one loop", nconns);
	check(ok == nconns, name, d);
	free(cs);
	free(hs);
}

static void usage(void)
{
	printf("usage: echo_client --target HOST:PORT [--h2c] [--ca CA] [--cert CERT --key KEY]\n"
	       "                   [--server-name NAME] [--expect-identity CN] [--connections N]\n"
	       "Runs the C gRPC client against a vpp.v1.Echo server and reports each case.\n");
}

int main(int argc, char **argv)
{
	const char *target = NULL, *ca = NULL, *cert = NULL, *key = NULL;
	bool h2c = false;
	int nconns = 200;
	static struct option opts[] = {{"target", required_argument, 0, 't'},
				       {"h2c", no_argument, 0, 'p'},
				       {"ca", required_argument, 0, 'a'},
				       {"cert", required_argument, 0, 'c'},
				       {"key", required_argument, 0, 'k'},
				       {"server-name", required_argument, 0, 's'},
				       {"expect-identity", required_argument, 0, 'i'},
				       {"connections", required_argument, 0, 'n'},
				       {"help", no_argument, 0, 'h'},
				       {0, 0, 0, 0}};
	int ch;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 't': target = optarg; break;
		case 'p': h2c = true; break;
		case 'a': ca = optarg; break;
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 's': authority = optarg; break;
		case 'i': expect_identity = optarg; break;
		case 'n': nconns = atoi(optarg); break;
		case 'h': usage(); return 0;
		default: usage(); return 2;
		}
	}
	if (!target || !strchr(target, ':')) {
		usage();
		return 2;
	}
	static char hostbuf[256];
	snprintf(hostbuf, sizeof(hostbuf), "%.*s", (int)(strrchr(target, ':') - target), target);
	host = hostbuf;
	port = atoi(strrchr(target, ':') + 1);
	if (!h2c) {
		int rv = vpp_grpc_tls_client_new(ca, cert, key, &tls);
		if (rv != 0) {
			fprintf(stderr, "echo_client: cannot load TLS files: %s\n", vpp_strerror(rv));
			return 2;
		}
	}
	loop = uv_default_loop();
	vpp_grpc_conn *c = connect_one(NULL, &conn_closed_flag);
	if (!c) {
		fprintf(stderr, "echo_client: cannot connect to %s\n", target);
		return 2;
	}
	void (*cases[])(vpp_grpc_conn *) = {case_unary,	   case_status, case_deadline,
					    case_server_stream, case_client_stream, case_bidi,
					    case_big,	   case_concurrent, case_cancel};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (conn_closed_flag) {
			check(false, "connection", "closed unexpectedly: remaining cases skipped");
			break;
		}
		cases[i](c);
	}
	if (!conn_closed_flag) {
		vpp_grpc_conn_close(c, true);
		check(run_until(&conn_closed_flag, 5000), "graceful close",
		      "connection did not close");
	}
	case_many_connections(nconns);
	vpp_grpc_tls_unref(tls);
	uv_run(loop, UV_RUN_NOWAIT);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
