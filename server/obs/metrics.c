#include "vpp/metrics.h"
#include "vpp/error.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BUCKETS 32
/* Counters and histograms are updated on every call by every I/O thread:
 * each has one cache line (or histogram shard) per CPU slot, so that
 * threads on different CPUs do not bounce a shared line. Reads add the
 * shards up. */
#define SHARDS 8
#define CACHE_LINE 64

enum kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };

typedef struct {
	_Alignas(CACHE_LINE) _Atomic uint64_t v;
} counter_shard;

struct vpp_counter {
	counter_shard s[SHARDS];
};
struct vpp_gauge {
	_Atomic double v;
};
typedef struct {
	_Alignas(CACHE_LINE) _Atomic uint64_t buckets[MAX_BUCKETS + 1];
	_Atomic double sum;
} histogram_shard;

struct vpp_histogram {
	size_t n;
	double bounds[MAX_BUCKETS];
	histogram_shard s[SHARDS];
};

typedef struct series {
	struct series *next;
	char *labels; /* may be "" */
	union {
		struct vpp_counter c;
		struct vpp_gauge g;
		struct vpp_histogram h;
	} u;
} series;

typedef struct family {
	struct family *next;
	char *name;
	char *help;
	enum kind kind;
	series *first, *last;
} family;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static family *families, *families_last;

static const double default_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001,
					0.0025,  0.005,  0.01,    0.025,  0.05,
					0.1,     0.25,   0.5,     1,      2.5,
					5,       10};

/* The shard of the calling thread: its CPU, which glibc reads from the
 * rseq area without a system call. Any shard is correct (updates are
 * atomic); the CPU's own is just the one no other running thread uses. */
static unsigned shard(void)
{
	int cpu = sched_getcpu();
	return cpu < 0 ? 0 : (unsigned)cpu % SHARDS;
}

static void add_double(_Atomic double *d, double delta)
{
	double cur = atomic_load_explicit(d, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(d, &cur, cur + delta, memory_order_relaxed,
						      memory_order_relaxed))
		;
}

/* Finds or creates the series |name|{|labels|}; NULL on OOM or when |name|
 * already exists with another kind (a programming error). */
static series *lookup(const char *name, const char *labels, const char *help, enum kind kind)
{
	if (!labels)
		labels = "";
	family *f;
	for (f = families; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			break;
	if (f && f->kind != kind)
		return NULL;
	if (!f) {
		f = calloc(1, sizeof(*f));
		if (!f)
			return NULL;
		f->name = strdup(name);
		f->help = strdup(help ? help : name);
		f->kind = kind;
		if (!f->name || !f->help) {
			free(f->name);
			free(f->help);
			free(f);
			return NULL;
		}
		if (families_last)
			families_last->next = f;
		else
			families = f;
		families_last = f;
	}
	for (series *s = f->first; s; s = s->next)
		if (strcmp(s->labels, labels) == 0)
			return s;
	/* Aligned for the shards' cache lines. */
	series *s = aligned_alloc(CACHE_LINE, sizeof(*s));
	if (!s)
		return NULL;
	memset(s, 0, sizeof(*s));
	s->labels = strdup(labels);
	if (!s->labels) {
		free(s);
		return NULL;
	}
	if (f->last)
		f->last->next = s;
	else
		f->first = s;
	f->last = s;
	return s;
}

/* A metric that cannot be registered (OOM) still needs somewhere to count,
 * so callers never have to check: these sinks absorb the updates. */
static struct vpp_counter sink_counter;
static struct vpp_gauge sink_gauge;
static struct vpp_histogram sink_histogram;

vpp_counter *vpp_counter_get(const char *name, const char *labels, const char *help)
{
	pthread_mutex_lock(&lock);
	series *s = lookup(name, labels, help, KIND_COUNTER);
	pthread_mutex_unlock(&lock);
	return s ? &s->u.c : &sink_counter;
}

void vpp_counter_add(vpp_counter *c, uint64_t n)
{
	atomic_fetch_add_explicit(&c->s[shard()].v, n, memory_order_relaxed);
}

uint64_t vpp_counter_value(const vpp_counter *c)
{
	uint64_t v = 0;
	for (int i = 0; i < SHARDS; i++)
		v += atomic_load_explicit(&((vpp_counter *)c)->s[i].v, memory_order_relaxed);
	return v;
}

vpp_gauge *vpp_gauge_get(const char *name, const char *labels, const char *help)
{
	pthread_mutex_lock(&lock);
	series *s = lookup(name, labels, help, KIND_GAUGE);
	pthread_mutex_unlock(&lock);
	return s ? &s->u.g : &sink_gauge;
}

void vpp_gauge_set(vpp_gauge *g, double v)
{
	atomic_store_explicit(&g->v, v, memory_order_relaxed);
}

void vpp_gauge_add(vpp_gauge *g, double delta)
{
	add_double(&g->v, delta);
}

double vpp_gauge_value(const vpp_gauge *g)
{
	return atomic_load_explicit(&((vpp_gauge *)g)->v, memory_order_relaxed);
}

vpp_histogram *vpp_histogram_get(const char *name, const char *labels, const char *help,
				 const double *bounds, size_t n)
{
	if (!bounds || n == 0) {
		bounds = default_bounds;
		n = sizeof(default_bounds) / sizeof(default_bounds[0]);
	}
	if (n > MAX_BUCKETS)
		n = MAX_BUCKETS;
	pthread_mutex_lock(&lock);
	series *s = lookup(name, labels, help, KIND_HISTOGRAM);
	if (s && s->u.h.n == 0) {
		s->u.h.n = n;
		memcpy(s->u.h.bounds, bounds, n * sizeof(double));
	}
	pthread_mutex_unlock(&lock);
	return s ? &s->u.h : &sink_histogram;
}

void vpp_histogram_observe(vpp_histogram *h, double v)
{
	size_t i = 0;
	while (i < h->n && v > h->bounds[i])
		i++;
	histogram_shard *sh = &h->s[shard()];
	atomic_fetch_add_explicit(&sh->buckets[i], 1, memory_order_relaxed);
	add_double(&sh->sum, v);
}

/* Observations in bucket |i| (|h->n|: +Inf) over all shards. */
static uint64_t bucket_count(const vpp_histogram *h, size_t i)
{
	uint64_t v = 0;
	for (int k = 0; k < SHARDS; k++)
		v += atomic_load_explicit(&((vpp_histogram *)h)->s[k].buckets[i],
					  memory_order_relaxed);
	return v;
}

static double histogram_sum(const vpp_histogram *h)
{
	double v = 0;
	for (int k = 0; k < SHARDS; k++)
		v += atomic_load_explicit(&((vpp_histogram *)h)->s[k].sum, memory_order_relaxed);
	return v;
}

uint64_t vpp_histogram_count(const vpp_histogram *h)
{
	uint64_t v = 0;
	for (size_t i = 0; i <= h->n; i++)
		v += bucket_count(h, i);
	return v;
}

typedef struct {
	char *buf;
	size_t len, cap;
	int oom;
} strbuf;

static void sb_printf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(strbuf *sb, const char *fmt, ...)
{
	if (sb->oom)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(sb->buf + sb->len, sb->cap - sb->len, fmt, ap);
		va_end(ap);
		if (n < 0) {
			sb->oom = 1;
			return;
		}
		if ((size_t)n < sb->cap - sb->len) {
			sb->len += (size_t)n;
			return;
		}
		size_t ncap = sb->cap * 2 + (size_t)n;
		char *nb = realloc(sb->buf, ncap);
		if (!nb) {
			sb->oom = 1;
			return;
		}
		sb->buf = nb;
		sb->cap = ncap;
	}
}

static void sb_value(strbuf *sb, double v)
{
	if (isnan(v))
		sb_printf(sb, "NaN");
	else if (isinf(v))
		sb_printf(sb, v > 0 ? "+Inf" : "-Inf");
	else
		sb_printf(sb, "%.17g", v);
}

static void render_histogram(strbuf *sb, const family *f, const series *s)
{
	const struct vpp_histogram *h = &s->u.h;
	const char *sep = s->labels[0] ? "," : "";
	uint64_t cum = 0;
	for (size_t i = 0; i <= h->n; i++) {
		cum += bucket_count(h, i);
		if (i < h->n) {
			sb_printf(sb, "%s_bucket{%s%sle=\"", f->name, s->labels, sep);
			sb_value(sb, h->bounds[i]);
			sb_printf(sb, "\"} %llu\n", (unsigned long long)cum);
		} else {
			sb_printf(sb, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", f->name, s->labels, sep,
				  (unsigned long long)cum);
		}
	}
	const char *lb = s->labels[0] ? "{" : "", *rb = s->labels[0] ? "}" : "";
	sb_printf(sb, "%s_sum%s%s%s ", f->name, lb, s->labels, rb);
	sb_value(sb, histogram_sum(h));
	sb_printf(sb, "\n%s_count%s%s%s %llu\n", f->name, lb, s->labels, rb, (unsigned long long)cum);
}

int vpp_metrics_render(char **out, size_t *len)
{
	static const char *type_names[] = {"counter", "gauge", "histogram"};
	strbuf sb = {.buf = malloc(4096), .cap = 4096};
	if (!sb.buf)
		return VPP_ENOMEM;
	sb.buf[0] = 0;
	pthread_mutex_lock(&lock);
	for (family *f = families; f; f = f->next) {
		sb_printf(&sb, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
			  type_names[f->kind]);
		for (series *s = f->first; s; s = s->next) {
			const char *lb = s->labels[0] ? "{" : "", *rb = s->labels[0] ? "}" : "";
			if (f->kind == KIND_COUNTER) {
				sb_printf(&sb, "%s%s%s%s %llu\n", f->name, lb, s->labels, rb,
					  (unsigned long long)vpp_counter_value(&s->u.c));
			} else if (f->kind == KIND_GAUGE) {
				sb_printf(&sb, "%s%s%s%s ", f->name, lb, s->labels, rb);
				sb_value(&sb, vpp_gauge_value(&s->u.g));
				sb_printf(&sb, "\n");
			} else {
				render_histogram(&sb, f, s);
			}
		}
	}
	pthread_mutex_unlock(&lock);
	if (sb.oom) {
		free(sb.buf);
		return VPP_ENOMEM;
	}
	*out = sb.buf;
	*len = sb.len;
	return 0;
}

void vpp_metrics_reset(void)
{
	pthread_mutex_lock(&lock);
	family *f = families;
	while (f) {
		family *fn = f->next;
		series *s = f->first;
		while (s) {
			series *sn = s->next;
			free(s->labels);
			free(s);
			s = sn;
		}
		free(f->name);
		free(f->help);
		free(f);
		f = fn;
	}
	families = families_last = NULL;
	pthread_mutex_unlock(&lock);
}
