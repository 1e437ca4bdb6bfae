/* Per-loop session table: a slab indexed by handle, with a generation so
 * that a message for a session that ended never reaches its successor. */
#include "device_int.h"
#include "vpp/error.h"

#include <stdlib.h>

int vpp__dev_table_add(dev_loop *dl, session *s)
{
	uint32_t idx;
	if (dl->nfree) {
		idx = dl->free_idx[--dl->nfree];
	} else {
		if (dl->used == dl->cap) {
			uint32_t ncap = dl->cap ? dl->cap * 2 : 1024;
			session **nt = realloc(dl->table, ncap * sizeof(*nt));
			if (!nt)
				return VPP_ENOMEM;
			dl->table = nt;
			uint32_t *ng = realloc(dl->gens, ncap * sizeof(*ng));
			if (!ng)
				return VPP_ENOMEM;
			dl->gens = ng;
			uint32_t *nf = realloc(dl->free_idx, ncap * sizeof(*nf));
			if (!nf)
				return VPP_ENOMEM;
			dl->free_idx = nf;
			for (uint32_t i = dl->cap; i < ncap; i++)
				dl->gens[i] = 0;
			dl->cap = ncap;
		}
		idx = dl->used++;
	}
	dl->gens[idx]++;
	dl->table[idx] = s;
	s->index = idx;
	s->handle = (uint64_t)dl->gens[idx] << 32 | idx;
	return 0;
}

void vpp__dev_table_remove(dev_loop *dl, session *s)
{
	if (s->index >= dl->used || dl->table[s->index] != s)
		return;
	dl->table[s->index] = NULL;
	dl->free_idx[dl->nfree++] = s->index;
}

session *vpp__dev_table_get(dev_loop *dl, uint64_t handle)
{
	uint32_t idx = (uint32_t)handle, gen = (uint32_t)(handle >> 32);
	if (idx >= dl->used || dl->gens[idx] != gen)
		return NULL;
	return dl->table[idx];
}
