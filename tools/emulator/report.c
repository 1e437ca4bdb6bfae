/* The ground truth: a JSON report of what the fleet really did (true
 * power per second, latencies, fan-out, connections, errors), and the
 * progress line. Called from the main thread, after the workers joined
 * (report) or while they run (progress: atomics and the sample lock). */
#include "emul_int.h"
#include "vpp/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const vpp__emul_counter_names[C__COUNT] = {
    [C_CONNECT_ATTEMPTS] = "connect_attempts",
    [C_SESSIONS] = "sessions",
    [C_RECONNECTS] = "reconnects",
    [C_DISCONNECTS] = "disconnects",
    [C_DROPS] = "flaky_drops",
    [C_MSGS_SENT] = "messages_sent",
    [C_MSGS_RECV] = "messages_received",
    [C_TELEMETRY_SENT] = "telemetry_sent",
    [C_SETPOINTS_RECV] = "setpoints_received",
    [C_ACKS_SENT] = "acks_sent",
    [C_SETPOINTS_REFUSED] = "setpoints_refused",
    [C_LATE_ACKS] = "late_acks_sent",
    [C_PINGS_RECV] = "pings_received",
    [C_BACKOFFS_RECV] = "backoffs_received",
    [C_MALFORMED_SENT] = "malformed_sent",
    [C_MALFORMED_REJECTED] = "malformed_rejected",
    [C_CONNECT_FAILED] = "connect_failed",
    [C_BAD_SERVER_MSG] = "bad_server_messages",
    [C_SEND_FAILED] = "send_failed",
    [C_SERVER_SILENT] = "server_silent",
};

static uint64_t counter(const vpp__emul_fleet *f, int c)
{
	uint64_t n = 0;
	for (int i = 0; i < f->nworkers; i++)
		n += atomic_load_explicit(&f->workers[i].c[c], memory_order_relaxed);
	return n;
}

static int64_t connected(const vpp__emul_fleet *f)
{
	int64_t n = 0;
	for (int i = 0; i < f->nworkers; i++)
		n += atomic_load_explicit(&f->workers[i].connected, memory_order_relaxed);
	return n;
}

/* JSON string of a value we produced (ids, paths, names): escapes what
 * JSON requires. */
static void jstr(FILE *o, const char *s)
{
	fputc('"', o);
	for (; s && *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(o, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(o, "\\u%04x", ch);
		else
			fputc(ch, o);
	}
	fputc('"', o);
}

static void jnum(FILE *o, double v)
{
	if (isfinite(v))
		fprintf(o, "%.6f", v);
	else
		fputs("null", o);
}

static void write_config(FILE *o, const vpp__emul_config *cfg)
{
	fputs("\"config\":{", o);
	for (size_t i = 0; i < vpp__emul_nopts; i++) {
		const vpp_config_opt *opt = &vpp__emul_opts[i];
		const char *field = (const char *)cfg + opt->offset;
		if (i)
			fputc(',', o);
		jstr(o, opt->name);
		fputc(':', o);
		switch (opt->type) {
		case VPP_CFG_INT:
			fprintf(o, "%lld", (long long)*(const int64_t *)field);
			break;
		case VPP_CFG_DOUBLE:
			jnum(o, *(const double *)field);
			break;
		case VPP_CFG_BOOL:
			fputs(*(const bool *)field ? "true" : "false", o);
			break;
		case VPP_CFG_STRING:
			if (*(char *const *)field)
				jstr(o, *(char *const *)field);
			else
				fputs("null", o);
			break;
		}
	}
	fputs("}", o);
}

/* Sums the workers' samples second by second (each worker has one per
 * second of the common time line, from second 1). */
static void write_seconds(FILE *o, const vpp__emul_fleet *f)
{
	size_t n = SIZE_MAX;
	for (int i = 0; i < f->nworkers; i++)
		if (f->workers[i].nsamples < n)
			n = f->workers[i].nsamples;
	if (f->nworkers == 0)
		n = 0;
	fputs("\"seconds\":[", o);
	for (size_t k = 0; k < n; k++) {
		double kw = 0, cmd = 0;
		uint64_t conn = 0;
		for (int i = 0; i < f->nworkers; i++) {
			kw += f->workers[i].samples[k].true_kw;
			cmd += f->workers[i].samples[k].commanded_kw;
			conn += f->workers[i].samples[k].connected;
		}
		fprintf(o, "%s\n{\"t_ms\":%lld,\"true_kw\":", k ? "," : "",
		        (long long)f->workers[0].samples[k].t_ms);
		jnum(o, kw);
		fputs(",\"commanded_kw\":", o);
		jnum(o, cmd);
		fprintf(o, ",\"connected\":%llu}", (unsigned long long)conn);
	}
	fputs("]", o);
}

static int cmp_group(const void *a, const void *b)
{
	const vpp__emul_group *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->issued < y->issued ? -1 : x->issued > y->issued;
}

static void write_fanout(FILE *o, const vpp__emul_fleet *f)
{
	vpp__emul_groups all = {0};
	for (int i = 0; i < f->nworkers; i++) {
		const vpp__emul_groups *g = &f->workers[i].groups;
		for (size_t j = 0; j < g->cap; j++)
			if (g->v[j].count)
				vpp__emul_groups_add(&all, g->v[j].key, g->v[j].issued,
				                     g->v[j].first_us, g->v[j].count, g->v[j].last_us);
	}
	vpp__emul_group *v = malloc((all.n ? all.n : 1) * sizeof(*v));
	size_t n = 0;
	for (size_t j = 0; v && j < all.cap; j++)
		if (all.v[j].count)
			v[n++] = all.v[j];
	qsort(v, n, sizeof(*v), cmp_group);
	/* The summary is over the ticks that commanded at least half as many
	 * devices as the largest one: a lease renewal of two devices has no
	 * fan-out to speak of and would pull the percentiles down. */
	uint64_t largest = 0, ticks = 0;
	for (size_t j = 0; j < n; j++)
		if (v[j].count > largest)
			largest = v[j].count;
	uint64_t min_count = (largest + 1) / 2;
	vpp__emul_hist h = {0};
	for (size_t j = 0; j < n; j++) {
		if (v[j].count < min_count)
			continue;
		vpp__emul_hist_add(&h, (uint64_t)(v[j].last_us - v[j].first_us));
		ticks++;
	}
	fprintf(o,
	        "\"fanout_summary\":{\"groups\":%zu,\"ticks\":%llu,\"min_count\":%llu,"
	        "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f}",
	        n, (unsigned long long)ticks, (unsigned long long)min_count,
	        vpp__emul_hist_quantile(&h, 0.5) / 1000.0,
	        vpp__emul_hist_quantile(&h, 0.99) / 1000.0, h.max_us / 1000.0);
	fputs(",\n\"fanout\":[", o);
	for (size_t j = 0; j < n; j++)
		fprintf(o,
		        "%s\n{\"valid_until_ms\":%lld,\"server_time_ms\":%lld,\"count\":%llu,"
		        "\"first_ms\":%.3f,\"last_ms\":%.3f,\"fanout_ms\":%.3f}",
		        j ? "," : "", (long long)v[j].key, (long long)v[j].issued,
		        (unsigned long long)v[j].count,
		        v[j].first_us / 1000.0, v[j].last_us / 1000.0,
		        (v[j].last_us - v[j].first_us) / 1000.0);
	fputs("]", o);
	free(v);
	vpp__emul_groups_free(&all);
}

static void write_devices(FILE *o, const vpp__emul_fleet *f)
{
	fputs("\"faults\":{", o);
	for (int k = 1; k < VPP__EMUL_F__COUNT; k++) {
		fprintf(o, "%s\"%s\":[", k > 1 ? "," : "", vpp__emul_fault_name(k));
		bool first = true;
		for (size_t i = 0; i < f->ndevs; i++) {
			if (f->devs[i].fault != k)
				continue;
			fputs(first ? "" : ",", o);
			jstr(o, f->devs[i].id);
			first = false;
		}
		fputs("]", o);
	}
	fputs("},\n\"devices\":[", o);
	for (size_t i = 0; i < f->ndevs; i++) {
		const vpp__emul_dev *d = &f->devs[i];
		const vpp__emul_params *p = &d->bat.p;
		fprintf(o, "%s\n{\"id\":", i ? "," : "");
		jstr(o, d->id);
		fprintf(
		    o,
		    ",\"fault\":\"%s\",\"soc\":%.6f,\"power_kw\":%.6f,\"delivered_kwh\":%.6f,"
		    "\"capacity_kwh\":%.4f,\"rated_charge_kw\":%.4f,\"rated_discharge_kw\":%.4f,"
		    "\"clock_offset_ms\":%lld,\"telemetry_seq\":%llu,\"sessions\":%u,"
		    "\"connect_attempts\":%u}",
		    vpp__emul_fault_name(d->fault), d->bat.soc, d->bat.power_kw,
		    d->bat.delivered_kwh, p->capacity_kwh, p->rated_charge_kw,
		    p->rated_discharge_kw, (long long)d->clock_offset_ms,
		    (unsigned long long)d->seq, d->welcomes, d->session_no);
	}
	fputs("]", o);
}

int vpp__emul_report_write(const vpp__emul_fleet *f, const char *path)
{
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *o = fopen(tmp, "w");
	if (!o)
		return VPP_EIO;
	fputs("{", o);
	write_config(o, f->cfg);
	fprintf(o, ",\n\"started_at_ms\":%lld,\"ended_at_ms\":%lld,\"stop_reason\":",
	        (long long)(f->start_us / 1000), (long long)(f->end_us / 1000));
	jstr(o, f->stop_reason);
	fprintf(o, ",\"devices_total\":%zu", f->ndevs);

	vpp__emul_hist h = {0};
	for (int i = 0; i < f->nworkers; i++)
		vpp__emul_hist_merge(&h, &f->workers[i].ack_hist);
	fprintf(o,
	        ",\n\"ack_latency_ms\":{\"count\":%llu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
	        "\"max\":%.3f}",
	        (unsigned long long)h.count, vpp__emul_hist_quantile(&h, 0.5) / 1000.0,
	        vpp__emul_hist_quantile(&h, 0.9) / 1000.0,
	        vpp__emul_hist_quantile(&h, 0.99) / 1000.0, h.max_us / 1000.0);

	fputs(",\n\"counters\":{", o);
	for (int c = 0; c < C__COUNT; c++)
		fprintf(o, "%s\"%s\":%llu", c ? "," : "", vpp__emul_counter_names[c],
		        (unsigned long long)counter(f, c));
	fprintf(o, ",\"connected_at_end\":%lld}", (long long)connected(f));

	/* Sessions ended, by the status the server (or transport) gave; ones
	 * we ended ourselves (flaky drops, shutdown) are not errors. */
	fputs(",\n\"errors\":{", o);
	bool first = true;
	for (int s = 1; s < 17; s++) {
		uint64_t n = 0;
		for (int i = 0; i < f->nworkers; i++)
			n += atomic_load_explicit(&f->workers[i].status[s], memory_order_relaxed);
		fprintf(o, "%s\"%s\":%llu", first ? "" : ",", vpp_grpc_status_name(s),
		        (unsigned long long)n);
		first = false;
	}
	uint64_t ok = 0;
	for (int i = 0; i < f->nworkers; i++)
		ok += atomic_load_explicit(&f->workers[i].status[0], memory_order_relaxed);
	fprintf(o, ",\"ended_ok\":%llu,\"connect_failed\":%llu,\"bad_server_messages\":%llu}",
	        (unsigned long long)ok, (unsigned long long)counter(f, C_CONNECT_FAILED),
	        (unsigned long long)counter(f, C_BAD_SERVER_MSG));

	fputs(",\n", o);
	write_fanout(o, f);
	fputs(",\n", o);
	write_seconds(o, f);
	fputs(",\n", o);
	write_devices(o, f);
	fputs("}\n", o);
	bool bad = ferror(o) != 0;
	if (fclose(o) != 0 || bad || rename(tmp, path) != 0) {
		remove(tmp);
		return VPP_EIO;
	}
	return 0;
}

void vpp__emul_progress(const vpp__emul_fleet *f, double dt_s, uint64_t *last_setpoints, FILE *out)
{
	double kw = 0;
	for (int i = 0; i < f->nworkers; i++) {
		vpp__emul_worker *w = &f->workers[i];
		pthread_mutex_lock(&w->mu);
		if (w->nsamples)
			kw += w->samples[w->nsamples - 1].true_kw;
		pthread_mutex_unlock(&w->mu);
	}
	uint64_t sp = counter(f, C_SETPOINTS_RECV);
	uint64_t errs = 0;
	for (int i = 0; i < f->nworkers; i++)
		for (int s = 1; s < 17; s++)
			errs +=
			    atomic_load_explicit(&f->workers[i].status[s], memory_order_relaxed);
	fprintf(out,
	        "vpp-emulator: connected %lld/%zu  true power %.1f kW  setpoints %.0f/s  "
	        "telemetry %llu  reconnects %llu  errors %llu\n",
	        (long long)connected(f), f->ndevs, kw,
	        dt_s > 0 ? (double)(sp - *last_setpoints) / dt_s : 0.0,
	        (unsigned long long)counter(f, C_TELEMETRY_SENT),
	        (unsigned long long)counter(f, C_RECONNECTS), (unsigned long long)errs);
	fflush(out);
	*last_setpoints = sp;
}
