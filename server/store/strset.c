/* A set of strings (open addressing, linear probing) with an optional
 * integer per key: the device ids the store thread knows, and the newest
 * as_of of device states when coalescing. */
#include "store_int.h"
#include "vpp/error.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int grow(vpp__strset *s)
{
	size_t cap = s->cap ? s->cap * 2 : 1024;
	char **keys = calloc(cap, sizeof(*keys));
	int64_t *vals = calloc(cap, sizeof(*vals));
	if (!keys || !vals) {
		free(keys);
		free(vals);
		return VPP_ENOMEM;
	}
	for (size_t i = 0; i < s->cap; i++) {
		if (!s->keys[i])
			continue;
		size_t j = hash(s->keys[i]) & (cap - 1);
		while (keys[j])
			j = (j + 1) & (cap - 1);
		keys[j] = s->keys[i];
		vals[j] = s->vals[i];
	}
	free(s->keys);
	free(s->vals);
	s->keys = keys;
	s->vals = vals;
	s->cap = cap;
	return 0;
}

/* Index of |key|, or of the empty slot where it would go; s->cap > 0. */
static size_t slot(const vpp__strset *s, const char *key)
{
	size_t j = hash(key) & (s->cap - 1);
	while (s->keys[j] && strcmp(s->keys[j], key) != 0)
		j = (j + 1) & (s->cap - 1);
	return j;
}

bool vpp__strset_has(const vpp__strset *s, const char *key)
{
	return s->cap && s->keys[slot(s, key)];
}

bool vpp__strset_get(const vpp__strset *s, const char *key, int64_t *val)
{
	if (!s->cap)
		return false;
	size_t j = slot(s, key);
	if (!s->keys[j])
		return false;
	*val = s->vals[j];
	return true;
}

int vpp__strset_put_max(vpp__strset *s, const char *key, int64_t val)
{
	if (s->cap) {
		size_t j = slot(s, key);
		if (s->keys[j]) {
			if (val > s->vals[j])
				s->vals[j] = val;
			return 0;
		}
	}
	if ((s->n + 1) * 2 > s->cap && grow(s) != 0)
		return VPP_ENOMEM;
	char *k = strdup(key);
	if (!k)
		return VPP_ENOMEM;
	size_t j = slot(s, key);
	s->keys[j] = k;
	s->vals[j] = val;
	s->n++;
	return 0;
}

int vpp__strset_add(vpp__strset *s, const char *key)
{
	if (vpp__strset_has(s, key))
		return 0;
	return vpp__strset_put_max(s, key, 0);
}

void vpp__strset_free(vpp__strset *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->keys[i]);
	free(s->keys);
	free(s->vals);
	memset(s, 0, sizeof(*s));
}
