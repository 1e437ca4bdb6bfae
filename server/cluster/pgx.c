/* Blocking libpq with deadlines, for the cluster thread: every connect and
 * every statement waits at most a given time, so a database that hangs (a
 * cut link, a stalled server) costs the thread one deadline, never a
 * tick's worth of leadership it cannot confirm. */
#include "cluster_int.h"
#include "vpp/clock.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_err(char *err, size_t errlen, const char *what, const char *detail)
{
	snprintf(err, errlen, "%s%s%s", what, detail && *detail ? ": " : "", detail ? detail : "");
	err[strcspn(err, "\n")] = 0;
}

/* Waits for |events| on |fd| until |deadline| (monotonic ms): 1 ready, 0
 * timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - mono_ms();
		if (left <= 0)
			return 0;
		struct pollfd p = {.fd = fd, .events = events};
		int n = poll(&p, 1, (int)left);
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

static void quiet(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

PGconn *vpp__cl_connect(const char *conninfo, int timeout_ms, char *err, size_t errlen)
{
	int64_t deadline = mono_ms() + timeout_ms;
	PGconn *c = PQconnectStart(conninfo);
	if (!c) {
		set_err(err, errlen, "out of memory", NULL);
		return NULL;
	}
	if (PQstatus(c) == CONNECTION_BAD) {
		set_err(err, errlen, "cannot connect", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	while (st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED) {
			set_err(err, errlen, "cannot connect", PQerrorMessage(c));
			PQfinish(c);
			return NULL;
		}
		int w =
		    wait_fd(PQsocket(c), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
		if (w <= 0) {
			set_err(err, errlen,
			        w == 0 ? "cannot connect: timed out" : "cannot connect",
			        w == 0 ? NULL : strerror(errno));
			PQfinish(c);
			return NULL;
		}
		st = PQconnectPoll(c);
	}
	PQsetNoticeProcessor(c, quiet, NULL);
	if (PQsetnonblocking(c, 1) != 0) {
		set_err(err, errlen, "cannot connect", PQerrorMessage(c));
		PQfinish(c);
		return NULL;
	}
	return c;
}

int vpp__cl_pump(PGconn *c)
{
	return PQconsumeInput(c) ? 0 : VPP_EDB;
}

PGresult *vpp__cl_exec(PGconn *c, const char *sql, int n, const char *const *params, int timeout_ms,
                       char *err, size_t errlen)
{
	int64_t deadline = mono_ms() + timeout_ms;
	if (!PQsendQueryParams(c, sql, n, NULL, params, NULL, NULL, 0)) {
		set_err(err, errlen, "cannot send", PQerrorMessage(c));
		return NULL;
	}
	int f;
	while ((f = PQflush(c)) == 1) {
		if (wait_fd(PQsocket(c), POLLOUT | POLLIN, deadline) <= 0) {
			set_err(err, errlen, "timed out sending", NULL);
			return NULL;
		}
		if (!PQconsumeInput(c)) {
			set_err(err, errlen, "connection lost", PQerrorMessage(c));
			return NULL;
		}
	}
	if (f < 0) {
		set_err(err, errlen, "cannot send", PQerrorMessage(c));
		return NULL;
	}
	PGresult *first = NULL, *r;
	for (;;) {
		while (PQisBusy(c)) {
			int w = wait_fd(PQsocket(c), POLLIN, deadline);
			if (w <= 0) {
				set_err(err, errlen, w == 0 ? "timed out" : "poll failed", NULL);
				PQclear(first);
				return NULL;
			}
			if (!PQconsumeInput(c)) {
				set_err(err, errlen, "connection lost", PQerrorMessage(c));
				PQclear(first);
				return NULL;
			}
		}
		if (!(r = PQgetResult(c)))
			break;
		if (!first)
			first = r;
		else
			PQclear(r);
	}
	if (!first) {
		set_err(err, errlen, "no result", PQerrorMessage(c));
		return NULL;
	}
	ExecStatusType st = PQresultStatus(first);
	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		set_err(err, errlen, "statement failed", PQresultErrorMessage(first));
		PQclear(first);
		return NULL;
	}
	return first;
}
