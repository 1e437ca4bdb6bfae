/* Process-wide metrics registry: counters, gauges and histograms, rendered in
 * the Prometheus text format by the admin HTTP endpoint.
 *
 * Lookup (vpp_counter_get and friends) takes a lock and is meant for start-up
 * or first use: keep the returned pointer. Updating a metric is lock-free
 * (relaxed atomics) and safe from any thread. Metrics are never freed before
 * vpp_metrics_reset() (tests only).
 *
 * |name| is a Prometheus metric name ("vpp_grpc_calls_total"); |labels| is
 * NULL or the inside of a label set ("method=\"/a.B/C\",code=\"0\""); |help|
 * is used the first time a family is seen. */
#ifndef VPP_METRICS_H
#define VPP_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct vpp_counter vpp_counter;
typedef struct vpp_gauge vpp_gauge;
typedef struct vpp_histogram vpp_histogram;

vpp_counter *vpp_counter_get(const char *name, const char *labels, const char *help);
void vpp_counter_add(vpp_counter *c, uint64_t n);
#define vpp_counter_inc(c) vpp_counter_add((c), 1)
uint64_t vpp_counter_value(const vpp_counter *c);

vpp_gauge *vpp_gauge_get(const char *name, const char *labels, const char *help);
void vpp_gauge_set(vpp_gauge *g, double v);
void vpp_gauge_add(vpp_gauge *g, double delta);
double vpp_gauge_value(const vpp_gauge *g);

/* |bounds| are the upper bounds of the buckets, ascending, |n| of them (at
 * most 32); +Inf is implicit. NULL/0 picks latency buckets in seconds from
 * 50 us to 10 s. */
vpp_histogram *vpp_histogram_get(const char *name, const char *labels, const char *help,
				 const double *bounds, size_t n);
void vpp_histogram_observe(vpp_histogram *h, double v);
uint64_t vpp_histogram_count(const vpp_histogram *h);

/* Renders every metric in the Prometheus text format (version 0.0.4) into a
 * malloc'd buffer. Sets |*out| (caller frees) and |*len| on success; returns
 * VPP_ENOMEM. */
int vpp_metrics_render(char **out, size_t *len);

/* Forgets every metric. Tests only: pointers handed out before are invalid. */
void vpp_metrics_reset(void);

#endif
