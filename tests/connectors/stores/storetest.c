/* storetest.c - the lease store tests' shared helpers and bodies (storetest.h). */
#include "tests/connectors/stores/storetest.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { STT_ERR = 1400, STT_MAX_RACERS = 64 };

const spate_conf_t *stt_conf;

void stt_open(sp_store_t *st, const sp_store_ops_t *ops, const char *arg, const char *ns)
{
	memset(st, 0, sizeof(*st));
	st->ops = ops;
	st->arg = arg;
	st->ns = ns;
	st->conf = stt_conf;
	char err[STT_ERR] = "";
	cr_assert_eq(st->ops->open(st, err, sizeof(err)), SPATE_OK, "open %s: %s", arg, err);
}

sp_ckpt_t stt_at(uint64_t off)
{
	sp_ckpt_t c = {.beginning = false, .after = sp_pos(off)};
	return c;
}

int stt_save1(sp_store_t *st, const char *name, sp_ckpt_t ck, const char *owner, uint64_t counter, char *err,
              size_t sz)
{
	int rc = -999;
	sp_store_entry_t e = {.name = name, .ckpt = ck, .owner = owner, .counter = counter, .rc = &rc};
	int r = st->ops->save(st, &e, 1, err, sz);
	cr_assert_eq(r, rc, "save's result %d and the entry's %d differ", r, rc);
	return r;
}

void stt_round_trip(sp_store_t *st, const sp_store_ops_t *ops, const char *arg, const char *ns,
                    void (*after_first)(sp_store_t *st, void *arg), void *hook_arg)
{
	stt_open(st, ops, arg, ns);
	char err[STT_ERR] = "";
	sp_ckpt_t ck;
	cr_assert_eq(st->ops->load(st, "log/t/0", &ck, err, sizeof(err)), SPATE_ERR_NOT_FOUND);
	sp_lease_t got;
	cr_assert_eq(st->ops->lease_acquire(st, "log/t/0", "a", NULL, false, 10000, &got, err, sizeof(err)),
	             SPATE_OK, "%s", err);
	cr_assert_eq(got.counter, 1);
	cr_assert(!got.has_ckpt);
	cr_assert_eq(stt_save1(st, "log/t/0", stt_at(41), "a", 1, err, sizeof(err)), SPATE_OK, "%s", err);
	if (after_first)
		after_first(st, hook_arg);
	sp_ckpt_t beg = {.beginning = true};
	cr_assert_eq(stt_save1(st, "log/t/0", beg, "a", 1, err, sizeof(err)), SPATE_ERR_INVALID,
	             "a checkpoint moved back to the beginning");
	/* wide positions compare as big numbers, not as text */
	sp_ckpt_t wide = {.after = {{1, 0, 5}}};
	cr_assert_eq(stt_save1(st, "log/t/0", wide, "a", 1, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(stt_save1(st, "log/t/0", stt_at(UINT64_MAX - 1), "a", 1, err, sizeof(err)),
	             SPATE_ERR_INVALID);
	cr_assert(strstr(err, "before the stored one"), "%s", err);
	/* the same position again is fine (a repeated write) */
	cr_assert_eq(stt_save1(st, "log/t/0", wide, "a", 1, err, sizeof(err)), SPATE_OK, "%s", err);
	st->ops->close(st);

	/* another store instance (a restarted process) reads what was saved */
	stt_open(st, ops, arg, ns);
	cr_assert_eq(st->ops->load(st, "log/t/0", &ck, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert(!ck.beginning);
	cr_assert_eq(spate_position_cmp(&ck.after, &wide.after), 0);
	/* another namespace (pipeline) does not see it */
	sp_store_t other;
	stt_open(&other, ops, arg, "other");
	cr_assert_eq(other.ops->load(&other, "log/t/0", &ck, err, sizeof(err)), SPATE_ERR_NOT_FOUND);
	other.ops->close(&other);
}

void stt_old_holder_refused(sp_store_t *a, sp_store_t *b, const char *name, uint64_t old, uint64_t cur)
{
	char err[STT_ERR] = "";
	cr_assert_eq(stt_save1(a, name, stt_at(20), "A", old, err, sizeof(err)), SPATE_ERR_LEASE);
	cr_assert(strstr(err, "no longer holds"), "%s", err);
	uint64_t c = old;
	cr_assert_eq(a->ops->lease_renew(a, name, "A", &c, 60000, err, sizeof(err)), SPATE_ERR_LEASE);
	cr_assert_eq(a->ops->lease_release(a, name, "A", old, err, sizeof(err)), SPATE_ERR_LEASE);
	/* a write naming B with A's counter is refused too: owner and counter both count */
	cr_assert_eq(stt_save1(a, name, stt_at(20), "B", old, err, sizeof(err)), SPATE_ERR_LEASE);
	cr_assert_eq(stt_save1(b, name, stt_at(20), "B", cur, err, sizeof(err)), SPATE_OK, "%s", err);
}

void stt_bare_save_refused(sp_store_t *st, const char *name)
{
	char err[STT_ERR] = "";
	sp_store_entry_t bare = {.name = name, .ckpt = stt_at(30)};
	cr_assert_eq(st->ops->save(st, &bare, 1, err, sizeof(err)), SPATE_ERR_INVALID);
}

void stt_wiped_is_store_lost(sp_store_t *st, void (*wipe)(void *arg), void *arg, const char *named)
{
	char err[STT_ERR] = "";
	sp_lease_t got;
	cr_assert_eq(st->ops->lease_acquire(st, "p", "A", NULL, false, 60000, &got, err, sizeof(err)),
	             SPATE_OK, "%s", err);
	cr_assert_eq(stt_save1(st, "p", stt_at(5), "A", got.counter, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(st->ops->epoch(st, err, sizeof(err)), SPATE_OK, "%s", err);
	wipe(arg);
	cr_assert_eq(st->ops->epoch(st, err, sizeof(err)), SPATE_ERR_STORE_LOST);
	cr_assert(strstr(err, named) && strstr(err, "lost its data"), "%s", err);
	cr_assert_eq(stt_save1(st, "p", stt_at(6), "A", got.counter, err, sizeof(err)), SPATE_ERR_STORE_LOST,
	             "%s", err);
	uint64_t c = got.counter;
	cr_assert_eq(st->ops->lease_renew(st, "p", "A", &c, 60000, err, sizeof(err)), SPATE_ERR_STORE_LOST);
}

void stt_reset_writes_new_epoch(const sp_store_ops_t *ops, const char *arg, const char *ns)
{
	sp_store_t a, b;
	stt_open(&a, ops, arg, ns);
	stt_open(&b, ops, arg, ns);
	char err[STT_ERR] = "";
	sp_lease_t got;
	cr_assert_eq(a.ops->lease_acquire(&a, "p", "A", NULL, false, 60000, &got, err, sizeof(err)), SPATE_OK,
	             "%s", err);
	cr_assert_eq(b.ops->reset(&b, "q", err, sizeof(err)), SPATE_ERR_NOT_FOUND);
	cr_assert_eq(b.ops->reset(&b, NULL, err, sizeof(err)), SPATE_OK, "%s", err);
	cr_assert_eq(a.ops->epoch(&a, err, sizeof(err)), SPATE_ERR_STORE_LOST,
	             "a reset under a running process");
	cr_assert_eq(b.ops->epoch(&b, err, sizeof(err)), SPATE_OK, "%s", err);
	a.ops->close(&a);
	b.ops->close(&b);
}

struct racer {
	const sp_store_ops_t *ops;
	const char *arg, *ns, *name;
	int id;
	int rc;
	pthread_barrier_t *bar;
};

static void *race(void *p)
{
	struct racer *r = p;
	sp_store_t st = {.ops = r->ops, .arg = r->arg, .ns = r->ns, .conf = stt_conf};
	char err[STT_ERR];
	if (st.ops->open(&st, err, sizeof(err))) {
		r->rc = -1000;
		pthread_barrier_wait(r->bar);
		return NULL;
	}
	char owner[32];
	snprintf(owner, sizeof(owner), "racer-%d", r->id);
	sp_lease_t got;
	pthread_barrier_wait(r->bar);
	r->rc = st.ops->lease_acquire(&st, r->name, owner, NULL, false, 60000, &got, err, sizeof(err));
	st.ops->close(&st);
	return NULL;
}

void stt_acquirers_one_wins(const sp_store_ops_t *ops, const char *arg, const char *ns, const char *name,
                            int n)
{
	cr_assert(n > 0 && n <= STT_MAX_RACERS);
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, (unsigned)n);
	pthread_t th[STT_MAX_RACERS];
	struct racer rs[STT_MAX_RACERS];
	for (int i = 0; i < n; i++) {
		rs[i] = (struct racer){
		    .ops = ops, .arg = arg, .ns = ns, .name = name, .id = i, .rc = -999, .bar = &bar};
		cr_assert_eq(pthread_create(&th[i], NULL, race, &rs[i]), 0);
	}
	int won = 0, lost = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		if (rs[i].rc == SPATE_OK)
			won++;
		else if (rs[i].rc == SPATE_ERR_LEASE)
			lost++;
	}
	pthread_barrier_destroy(&bar);
	cr_assert_eq(won, 1, "%d acquirers won", won);
	cr_assert_eq(lost, n - 1);
}
