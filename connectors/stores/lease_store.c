/* lease_store.c - helpers of the leasing checkpoint stores (lease_store.h). */
#include "lease_store.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>

const spate_conf_t *ls_conf_of(sp_store_t *s)
{
	return s->eng ? sp_engine_conf(s->eng) : s->conf;
}

void ls_new_epoch(char *buf, size_t size)
{
	uint64_t v[2] = {0, 0};
	if (getrandom(v, sizeof(v), 0) != sizeof(v))
		v[0] = (uint64_t)sp_wall_ms();
	snprintf(buf, size, "%016" PRIx64 "%016" PRIx64, v[0], v[1]);
}

void ls_ckpt_hex(const sp_ckpt_t *c, const char *beginning, char *buf, size_t size)
{
	snprintf(buf, size, "%s", beginning);
	if (c->beginning)
		return;
	size_t n = 0;
	for (int i = 0; i < 5 && n < size; i++)
		n += (size_t)snprintf(buf + n, size - n, "%016" PRIx64, c->after.x[i]);
	for (int i = 0; i < 3 && n < size; i++)
		n += (size_t)snprintf(buf + n, size - n, "%016" PRIx64, c->after.w[i]);
}

void ls_audit_open(sp_store_t *s, const char *name, const char *ns, const char *epoch)
{
	if (s->eng)
		sp_msg(s->eng, SP_MSG_DEBUG, "lease audit: store %s namespace %s epoch %s", name, ns, epoch);
}

void ls_deliver(void (*fn)(void *arg, const sp_store_entry_t *ent),
                void (*lfn)(void *arg, const sp_lease_t *l), void *arg, const sp_lease_t *l)
{
	if (lfn)
		lfn(arg, l);
	if (fn && l->has_ckpt) {
		sp_store_entry_t e = {.name = l->name, .ckpt = l->ckpt};
		fn(arg, &e);
	}
}
