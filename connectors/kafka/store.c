/* store.c - store=kafka: checkpoints are the consumer group's committed offsets,
 * committed through the Kafka source's own consumer (see source.c for the whole
 * picture).
 *
 * The engine asks the source for the store first (sp_source_ops_t.open_store): the
 * Kafka source fills the store instance with the ops below and its own consumer as ctx.
 * sp_store_kafka, listed in lib/registry.c, is only the name the `store` key is checked
 * against: opened on its own (another source, `spate checkpoint show kafka`) it fails,
 * naming source=kafka.
 *
 * save() commits offset = after + 1 (beginning: offset 0) synchronously
 * (SPATE_ERR_BUSY while the group rebalances, see group.c); load() reads the committed
 * offset (fetched once per assignment for all its partitions, group.c).
 * @locality the engine thread.
 */
#include "consumer.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int kstore_load(sp_store_t *s, const char *name, sp_ckpt_t *out, char *errstr, size_t size)
{
	ksrc_t *x = s->ctx;
	kpart_t *k = sp_kafka_kp_by_name(x, name, true);
	if (!k)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "store=kafka: \"%s\" is not a Kafka partition", name);
	int64_t off = -1;
	if (k->has_committed) {
		off = k->committed;
		k->has_committed = false;
	} else {
		rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
		rd_kafka_topic_partition_list_add(l, k->topic, k->partition);
		rd_kafka_resp_err_t e = rd_kafka_committed(x->rk, l, KSRC_REQUEST_MS);
		if (!e)
			e = l->elems[0].err;
		off = l->elems[0].offset;
		rd_kafka_topic_partition_list_destroy(l);
		if (e)
			return sp_err(errstr, size, SPATE_ERR_STORE, "store=kafka: %s: reading the committed offset: %s", name,
			              rd_kafka_err2str(e));
	}
	if (off < 0)
		return SPATE_ERR_NOT_FOUND;
	k->loaded = off;
	memset(out, 0, sizeof(*out));
	if (off == 0)
		out->beginning = true;
	else
		out->after = sp_pos((uint64_t)off - 1);
	return SPATE_OK;
}

static int kstore_save(sp_store_t *s, const sp_store_entry_t *ents, size_t n, char *errstr, size_t size)
{
	ksrc_t *x = s->ctx;
	if (!x->in_rebalance && atomic_load(&x->join_seen) && !atomic_load(&x->join_steady))
		return sp_err(errstr, size, SPATE_ERR_BUSY,
		              "store=kafka: the consumer group is rebalancing; %zu commits wait for it", n);
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)n);
	for (size_t i = 0; i < n; i++) {
		kpart_t *k = sp_kafka_kp_by_name(x, ents[i].name, false);
		if (!k) {
			rd_kafka_topic_partition_list_destroy(l);
			return sp_err(errstr, size, SPATE_ERR_STORE, "store=kafka: \"%s\" is not a partition of this consumer",
			              ents[i].name);
		}
		int64_t off = ents[i].ckpt.beginning ? 0 : (int64_t)ents[i].ckpt.after.w[2] + 1;
		rd_kafka_topic_partition_list_add(l, k->topic, k->partition)->offset = off;
	}
	rd_kafka_resp_err_t e = rd_kafka_commit(x->rk, l, 0);
	int rc = SPATE_OK;
	if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
		rc = sp_err(errstr, size, SPATE_ERR_STORE, "store=kafka: commit of %zu partitions: %s", n,
		            rd_kafka_err2str(e));
	for (int i = 0; !rc && i < l->cnt; i++)
		if (l->elems[i].err)
			rc = sp_err(errstr, size, SPATE_ERR_STORE, "store=kafka: commit of kafka/%s/%" PRId32 ": %s",
			            l->elems[i].topic, l->elems[i].partition, rd_kafka_err2str(l->elems[i].err));
	rd_kafka_topic_partition_list_destroy(l);
	return rc;
}

static void kstore_close(sp_store_t *s)
{
	s->ctx = NULL; /* the consumer belongs to the source */
}

/* The store the Kafka source hands the engine: ctx is its ksrc_t. */
static const sp_store_ops_t kstore_ops = {
    .version = SP_STORE_OPS_VERSION,
    .name = KSRC_NAME,
    .desc = "commit offsets to the Kafka source's consumer group",
    .open = NULL, /* opened by the source (open_store) */
    .load = kstore_load,
    .save = kstore_save,
    .list = NULL,
    .reset = NULL,
    .close = kstore_close,
};

int sp_kafka_open_store(sp_source_t *s, const char *kind, const char *arg, sp_store_t *out, char *errstr,
                        size_t size)
{
	if (strcmp(kind, KSRC_NAME))
		return SPATE_ERR_UNKNOWN; /* a store of the registry */
	if (arg && *arg)
		return sp_err(errstr, size, SPATE_ERR_INVALID, "store: kafka takes no argument (\"kafka:%s\")", arg);
	ksrc_t *x = s->ctx;
	x->store_on = true;
	out->ops = &kstore_ops;
	out->ctx = x;
	return SPATE_OK;
}

/* store=kafka outside a Kafka source: what the registry lists, so that the store key
 * knows the name; it never opens. */
static int kstore_refuse(sp_store_t *s, char *errstr, size_t size)
{
	if (!s->eng)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "store: kafka commits to the consumer group of a running source=kafka pipeline; "
		              "it cannot be opened on its own");
	return sp_err(errstr, size, SPATE_ERR_INVALID,
	              "store: kafka commits offsets to the Kafka source's consumer group and needs source=kafka "
	              "(source is \"%s\")",
	              sp_conf_str(sp_engine_conf(s->eng), "source"));
}

const sp_store_ops_t sp_store_kafka = {
    .version = SP_STORE_OPS_VERSION,
    .name = KSRC_NAME,
    .desc = "commit offsets to the Kafka source's consumer group (source=kafka only)",
    .open = kstore_refuse,
    .load = NULL,
    .save = NULL,
    .list = NULL,
    .reset = NULL,
    .close = NULL,
    .open_readonly = kstore_refuse,
};
