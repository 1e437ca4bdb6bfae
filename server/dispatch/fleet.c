/* The fleet table: slots, the id hash, registration, connect/disconnect and
 * iteration. Everything per device lives in parallel arrays indexed by slot
 * so the per-tick passes stream through memory. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch_int.h"
#include "vpp/error.h"

#define TOMB UINT32_MAX

void vpp_dispatch_params_default(vpp_dispatch_params *p)
{
	memset(p, 0, sizeof(*p));
	p->tick_ms = 1000;
	p->stale_after_ms = 3000;
	p->stale_decay_ms = 5000;
	p->stale_limit_ms = 15000;
	p->deadband_kw = 0.05;
	p->deadband_frac = 0.01;
	p->lease_ms = 10000;
	p->renew_before_ms = 3000;
	p->ack_timeout_ms = 2000;
	p->kp = 0.3;
	p->ki_per_s = 0.4;
	p->max_correction_frac = 0.25;
	p->settle_ms = 2000;
	p->cusum_k = 0.5;
	p->cusum_h = 8;
	p->recover_samples = 10;
	p->track_tol_frac = 0.05;
	p->track_tol_kw = 0.05;
	p->response_tau_ms = 1000;
	p->track_min_frac = 0.05;
	p->track_alpha = 0.3;
	p->ack_alpha = 0.2;
	p->ack_miss_factor = 0.5;
	p->min_reliability = 0.02;
	p->default_power_sigma_kw = 0.1;
	p->default_soc_sigma = 0.02;
	p->power_sigma_growth = 0.02;
	p->soc_sigma_growth_per_h = 0.01;
	p->energy_eps_kwh = 0.001;
}

void vpp_dispatch_params_for_interval(vpp_dispatch_params *p, int64_t interval_ms)
{
	if (interval_ms <= 1000)
		return;
	p->stale_after_ms = 3 * interval_ms;
	p->stale_decay_ms = 5 * interval_ms;
	p->stale_limit_ms = 15 * interval_ms;
}

static int in01(double x)
{
	return isfinite(x) && x >= 0 && x <= 1;
}

static int nonneg(double x)
{
	return isfinite(x) && x >= 0;
}

int vpp_dispatch_params_check(const vpp_dispatch_params *p)
{
	if (p->tick_ms < 10 || p->stale_after_ms < 0 || p->stale_decay_ms <= 0 ||
	    p->stale_limit_ms < p->stale_after_ms || p->lease_ms <= 0 || p->renew_before_ms < 0 ||
	    p->renew_before_ms >= p->lease_ms || p->ack_timeout_ms <= 0 || p->settle_ms < 0 ||
	    !(p->settle_tol_frac >= 0 && p->settle_tol_frac < 1))
		return VPP_EINVAL;
	/* A lease is renewed on the first tick that finds less than
	 * renew_before left: with less than two ticks of it, the renewal could
	 * come after the lease has ended on the device. */
	if (p->renew_before_ms < 2 * p->tick_ms)
		return VPP_EINVAL;
	if (!nonneg(p->deadband_kw) || !in01(p->deadband_frac) || !nonneg(p->kp) ||
	    !nonneg(p->ki_per_s) || !nonneg(p->max_correction_frac) || !nonneg(p->cusum_k) ||
	    !(isfinite(p->cusum_h) && p->cusum_h > 0) || p->recover_samples < 1 ||
	    !nonneg(p->track_tol_frac) || !nonneg(p->track_tol_kw) ||
	    !(isfinite(p->response_tau_ms) && p->response_tau_ms > 0) ||
	    !in01(p->track_min_frac) || !(in01(p->track_alpha) && p->track_alpha > 0) ||
	    !in01(p->ack_alpha) || !in01(p->ack_miss_factor) ||
	    !(in01(p->min_reliability) && p->min_reliability > 0) ||
	    !(isfinite(p->default_power_sigma_kw) && p->default_power_sigma_kw > 0) ||
	    !(isfinite(p->default_soc_sigma) && p->default_soc_sigma > 0) ||
	    !nonneg(p->power_sigma_growth) || !nonneg(p->soc_sigma_growth_per_h) ||
	    !(isfinite(p->energy_eps_kwh) && p->energy_eps_kwh > 0) ||
	    p->seq_base > (uint64_t)INT64_MAX / 2)
		return VPP_EINVAL;
	return 0;
}

/* Every per-slot array with its element size, so growing is one loop. */
#define SLOT_ARRAYS(X)                                                                     \
	X(id) X(flags) X(free_slots) X(rt) X(t_seq) X(t_at) X(t_recv) X(t_precv) X(t_conn) \
	X(t_p) X(t_psig) X(t_soc) X(t_socsig) X(ack_score) X(accept_score) X(track_ratio)  \
	X(cs_pos)                                                                          \
	X(cs_neg) X(good_streak) X(c_seq) X(next_seq) X(c_p) X(c_prev) X(c_at) X(c_until)  \
	X(c_prev_at) X(gone_until) X(x_a) X(x_edis) X(x_echg) X(x_lo) X(x_hi) X(x_p) X(x_p2)

static int grow(vpp_fleet *f)
{
	uint32_t ncap = f->cap ? f->cap * 2 : 64;
	void *np;

	if (f->cap > UINT32_MAX / 4)
		return VPP_ENOMEM;
	/* Each array is reallocated in turn; on failure the ones already grown
	 * are merely larger than needed, so the table stays consistent. */
#define GROW(name)                                                                         \
	np = realloc(f->name, (size_t)ncap * sizeof(*f->name));                            \
	if (np == NULL)                                                                    \
		return VPP_ENOMEM;                                                         \
	f->name = np;                                                                      \
	memset(f->name + f->cap, 0, (size_t)(ncap - f->cap) * sizeof(*f->name));
	SLOT_ARRAYS(GROW)
#undef GROW
	f->cap = ncap;
	return 0;
}

int vpp_fleet_new(const vpp_dispatch_params *params, vpp_fleet **ret)
{
	vpp_fleet *f;
	int rv;

	f = calloc(1, sizeof(*f));
	if (f == NULL)
		return VPP_ENOMEM;
	if (params != NULL)
		f->prm = *params;
	else
		vpp_dispatch_params_default(&f->prm);
	if ((rv = vpp_dispatch_params_check(&f->prm)) != 0)
		goto fail;
	if ((rv = vpp_allocator_new(&f->al)) != 0)
		goto fail;
	*ret = f;
	return 0;

fail:
	free(f);
	return rv;
}

void vpp_fleet_free(vpp_fleet *f)
{
	uint32_t s;

	if (f == NULL)
		return;
	for (s = 0; s < f->hwm; s++)
		free(f->id[s]);
#define FREE(name) free(f->name);
	SLOT_ARRAYS(FREE)
#undef FREE
	free(f->hash);
	free(f->cmds);
	free(f->ev_pending);
	free(f->ev_out);
	vpp_allocator_free(f->al);
	free(f);
}

static uint64_t hash_id(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

/* Returns the hash position holding |id|, or UINT32_MAX. */
static uint32_t hash_find(const vpp_fleet *f, const char *id)
{
	uint32_t mask, i, e;

	if (f->hash_cap == 0)
		return UINT32_MAX;
	mask = f->hash_cap - 1;
	for (i = (uint32_t)hash_id(id) & mask;; i = (i + 1) & mask) {
		e = f->hash[i];
		if (e == 0)
			return UINT32_MAX;
		if (e != TOMB && strcmp(f->id[e - 1], id) == 0)
			return i;
	}
}

static void hash_put(uint32_t *tab, uint32_t cap, const char *id, uint32_t slot)
{
	uint32_t mask = cap - 1, i;

	for (i = (uint32_t)hash_id(id) & mask; tab[i] != 0 && tab[i] != TOMB; i = (i + 1) & mask)
		;
	tab[i] = slot + 1;
}

/* Keeps the load (live + tombstones) under 3/4 so probes stay short. */
static int hash_reserve(vpp_fleet *f)
{
	uint32_t ncap, s;
	uint32_t *tab;

	if (f->hash_cap != 0 && (uint64_t)(f->hash_used + 1) * 4 <= (uint64_t)f->hash_cap * 3)
		return 0;
	ncap = f->hash_cap ? f->hash_cap : 64;
	while ((uint64_t)(f->count + 1) * 2 > ncap)
		ncap *= 2;
	tab = calloc(ncap, sizeof(*tab));
	if (tab == NULL)
		return VPP_ENOMEM;
	for (s = 0; s < f->hwm; s++)
		if (f->flags[s] & F_USED)
			hash_put(tab, ncap, f->id[s], s);
	free(f->hash);
	f->hash = tab;
	f->hash_cap = ncap;
	f->hash_used = f->count;
	return 0;
}

static void reset_slot(vpp_fleet *f, uint32_t s)
{
	f->flags[s] = F_USED;
	f->t_seq[s] = 0;
	f->t_at[s] = f->t_recv[s] = f->t_precv[s] = f->t_conn[s] = 0;
	f->t_p[s] = f->t_psig[s] = f->t_soc[s] = f->t_socsig[s] = 0;
	f->ack_score[s] = 1;
	f->accept_score[s] = 1;
	f->track_ratio[s] = 1;
	f->cs_pos[s] = f->cs_neg[s] = 0;
	f->good_streak[s] = 0;
	f->c_seq[s] = 0;
	f->next_seq[s] = f->prm.seq_base + 1;
	f->c_p[s] = f->c_prev[s] = 0;
	f->c_at[s] = f->c_until[s] = f->c_prev_at[s] = 0;
	f->gone_until[s] = 0;
}

int vpp_fleet_add(vpp_fleet *f, const char *id, const vpp_device_ratings *ratings,
		  uint32_t *slot)
{
	size_t len;
	uint32_t s;
	char *copy;
	int rv;

	if (id == NULL || (len = strlen(id)) == 0 || len > VPP_DEVICE_ID_MAX ||
	    vpp_device_ratings_check(ratings) != 0)
		return VPP_EINVAL;
	if (hash_find(f, id) != UINT32_MAX)
		return VPP_EEXIST;
	if (f->n_free == 0 && f->hwm == f->cap && (rv = grow(f)) != 0)
		return rv;
	if ((rv = hash_reserve(f)) != 0)
		return rv;
	copy = malloc(len + 1);
	if (copy == NULL)
		return VPP_ENOMEM;
	memcpy(copy, id, len + 1);
	s = f->n_free > 0 ? f->free_slots[--f->n_free] : f->hwm++;
	f->id[s] = copy;
	f->rt[s] = *ratings;
	reset_slot(f, s);
	hash_put(f->hash, f->hash_cap, copy, s);
	f->hash_used++;
	f->count++;
	*slot = s;
	return 0;
}

int vpp_fleet_lookup(const vpp_fleet *f, const char *id, uint32_t *slot)
{
	uint32_t i;

	if (id == NULL || (i = hash_find(f, id)) == UINT32_MAX)
		return VPP_ENOENT;
	*slot = f->hash[i] - 1;
	return 0;
}

int vpp_fleet_remove(vpp_fleet *f, uint32_t slot)
{
	uint32_t i;

	if (!vpp__slot_ok(f, slot))
		return VPP_ENOENT;
	i = hash_find(f, f->id[slot]);
	if (i != UINT32_MAX)
		f->hash[i] = TOMB; /* hash_used keeps counting it until rehash */
	free(f->id[slot]);
	f->id[slot] = NULL;
	f->flags[slot] = 0;
	f->free_slots[f->n_free++] = slot;
	f->count--;
	return 0;
}

int vpp_fleet_set_ratings(vpp_fleet *f, uint32_t slot, const vpp_device_ratings *ratings)
{
	if (!vpp__slot_ok(f, slot))
		return VPP_ENOENT;
	if (vpp_device_ratings_check(ratings) != 0)
		return VPP_EINVAL;
	f->rt[slot] = *ratings;
	return 0;
}

int vpp_fleet_connect(vpp_fleet *f, uint32_t slot, int64_t now_ms)
{
	if (!vpp__slot_ok(f, slot))
		return VPP_ENOENT;
	f->flags[slot] |= F_CONNECTED;
	f->flags[slot] &= ~(uint32_t)(F_HAS_CMD | F_PENDING | F_ACKED | F_LEAVING);
	f->t_conn[slot] = now_ms;
	f->t_seq[slot] = 0; /* a new session numbers its telemetry afresh */
	f->c_p[slot] = f->c_prev[slot] = 0;
	f->c_until[slot] = 0;
	f->gone_until[slot] = 0;
	return 0;
}

int vpp_fleet_set_leaving(vpp_fleet *f, uint32_t slot, int leaving)
{
	if (!vpp__slot_ok(f, slot))
		return VPP_ENOENT;
	if (leaving)
		f->flags[slot] |= F_LEAVING;
	else
		f->flags[slot] &= ~(uint32_t)F_LEAVING;
	return 0;
}

int vpp_fleet_disconnect(vpp_fleet *f, uint32_t slot, int64_t now_ms)
{
	if (!vpp__slot_ok(f, slot))
		return VPP_ENOENT;
	/* The device goes on at its lease after losing its session: its power
	 * still counts until the lease ends (see prepare() in control.c). */
	f->gone_until[slot] = (f->flags[slot] & F_HAS_CMD) && f->c_until[slot] > now_ms
				      ? f->c_until[slot]
				      : 0;
	f->flags[slot] &= ~(uint32_t)(F_CONNECTED | F_HAS_CMD | F_PENDING | F_ACKED);
	f->c_p[slot] = f->c_prev[slot] = 0;
	f->c_until[slot] = 0;
	return 0;
}

size_t vpp_fleet_size(const vpp_fleet *f)
{
	return f->count;
}

const char *vpp_fleet_id(const vpp_fleet *f, uint32_t slot)
{
	return vpp__slot_ok(f, slot) ? f->id[slot] : NULL;
}

int vpp_fleet_next(const vpp_fleet *f, uint32_t from, uint32_t *slot)
{
	uint32_t s;

	for (s = from; s < f->hwm; s++) {
		if (f->flags[s] & F_USED) {
			*slot = s;
			return 0;
		}
	}
	return VPP_ENOENT;
}

/* A max-heap on id keeps the |max| smallest ids seen after |after_id|. */
static void heap_sift_down(const vpp_fleet *f, uint32_t *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		uint32_t t;

		if (l < n && strcmp(f->id[h[l]], f->id[h[m]]) > 0)
			m = l;
		if (r < n && strcmp(f->id[h[r]], f->id[h[m]]) > 0)
			m = r;
		if (m == i)
			return;
		t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static void heap_sift_up(const vpp_fleet *f, uint32_t *h, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		uint32_t t;

		if (strcmp(f->id[h[p]], f->id[h[i]]) >= 0)
			return;
		t = h[i];
		h[i] = h[p];
		h[p] = t;
		i = p;
	}
}

int vpp_fleet_page(const vpp_fleet *f, const char *after_id, uint32_t *slots, size_t max,
		   size_t *n)
{
	size_t k = 0, i;
	uint32_t s;

	if (max == 0) {
		*n = 0;
		return 0;
	}
	for (s = 0; s < f->hwm; s++) {
		if (!(f->flags[s] & F_USED))
			continue;
		if (after_id != NULL && after_id[0] != '\0' && strcmp(f->id[s], after_id) <= 0)
			continue;
		if (k < max) {
			slots[k] = s;
			heap_sift_up(f, slots, k);
			k++;
		} else if (strcmp(f->id[s], f->id[slots[0]]) < 0) {
			slots[0] = s;
			heap_sift_down(f, slots, k, 0);
		}
	}
	/* Heap-sort in place: repeatedly move the largest to the end. */
	for (i = k; i > 1; i--) {
		uint32_t t = slots[0];

		slots[0] = slots[i - 1];
		slots[i - 1] = t;
		heap_sift_down(f, slots, i - 1, 0);
	}
	*n = k;
	return 0;
}

int vpp_fleet_aggregate(const vpp_fleet *f, double *a, double *e_dis_kwh, double *e_chg_kwh,
			double *lo_kw, double *hi_kw)
{
	*a = f->agg_a;
	*e_dis_kwh = f->agg_edis;
	*e_chg_kwh = f->agg_echg;
	*lo_kw = f->agg_lo;
	*hi_kw = f->agg_hi;
	return 0;
}
