/* The split of the fleet target across nodes: each node is one aggregate
 * device, and the same exact allocator that splits a node's share across
 * its batteries splits the fleet's target across the nodes. Pure. */
#include "vpp/cluster.h"
#include "vpp/error.h"

#include <math.h>
#include <stdlib.h>

int vpp_cluster_split(const vpp_cluster_agg *nodes, size_t n, double target_kw, double *shares,
                      vpp_alloc_result *res)
{
	if (!isfinite(target_kw))
		return VPP_EINVAL;
	double *buf = n ? malloc(5 * n * sizeof(double)) : NULL;
	if (n && !buf)
		return VPP_ENOMEM;
	double *a = buf, *edis = buf + n, *echg = buf + 2 * n, *lo = buf + 3 * n, *hi = buf + 4 * n;
	int rv = 0;
	for (size_t i = 0; i < n; i++) {
		const vpp_cluster_agg *g = &nodes[i];
		if (!isfinite(g->a) || !isfinite(g->e_dis_kwh) || !isfinite(g->e_chg_kwh) ||
		    !isfinite(g->lo_kw) || !isfinite(g->hi_kw) ||
		    (g->a > 0 && (g->lo_kw > g->hi_kw || g->e_dis_kwh <= 0 || g->e_chg_kwh <= 0))) {
			rv = VPP_EINVAL;
			goto out;
		}
		a[i] = g->a;
		edis[i] = g->e_dis_kwh;
		echg[i] = g->e_chg_kwh;
		lo[i] = g->lo_kw;
		hi[i] = g->hi_kw;
	}
	vpp_allocator *al;
	if ((rv = vpp_allocator_new(&al)) != 0)
		goto out;
	vpp_alloc_input in = {.n = n, .a = a, .e_dis = edis, .e_chg = echg, .lo = lo, .hi = hi};
	vpp_alloc_result r;
	rv = vpp_allocate(al, &in, target_kw, shares, &r);
	vpp_allocator_free(al);
	if (rv != 0)
		goto out;
	/* A node's share is what it is expected to deliver: a x p. */
	for (size_t i = 0; i < n; i++)
		shares[i] = a[i] > 0 ? a[i] * shares[i] : 0;
	if (res)
		*res = r;
out:
	free(buf);
	return rv;
}
