/* dynamodb.c - the DynamoDB checkpoint store with leases: store=dynamodb:TABLE.
 *
 * Several spate processes share one table in KCL's lease shape. Each partition's lease
 * and checkpoint is one item, keyed by leaseKey = "PIPELINE/PARTITION" (PIPELINE: the
 * pipeline's name, so pipelines can share a table), with KCL's attributes
 *
 *   leaseKey                      the key (S)
 *   leaseOwner                    the process holding the lease (absent when nobody does)
 *   leaseCounter                  the fencing token (N): raised by every acquire, renewal
 *                                 and release, as KCL raises it
 *   checkpoint                    the position, as KCL writes it: a sequence number or
 *                                 offset, TRIM_HORIZON for "beginning", SHARD_END
 *   checkpointSubSequenceNumber   the KPL sub-sequence number (N), else 0
 *   ownerSwitchesSinceCheckpoint  (N) raised when another owner takes it, 0 at a checkpoint
 *   parentShardId                 (SS) Kinesis parents, written by the acquire that names them
 *
 * and spate's own: spatePipeline and spatePartition (what the key is made of, so a Scan
 * filters exactly), spateCheckpoint (the checkpoint as sp_ckpt_fmt() writes it: what is
 * loaded), spateCmp (the position as 128 hex digits, its eight words, "-" for
 * "beginning": strings that compare as the positions do, so a condition refuses a
 * checkpoint that moves backwards) and spateEpoch (the epoch marker the item was written
 * under).
 *
 * No expiry is stored: as in KCL, expiry is judged by the process that wants a lease: a
 * lease whose leaseCounter did not change for lease.timeout.ms of its own monotonic clock
 * is expired (engine/lease.c; the store reports expired = -1). Every write is one
 * conditional UpdateItem, its ConditionExpression on the leaseCounter and leaseOwner the
 * caller last saw and on the epoch (attribute names go through ExpressionAttributeNames:
 * DynamoDB reserves many words). A ConditionalCheckFailedException is then read back
 * (GetItem, strongly consistent) to tell the cases apart: the lease is gone (another
 * process took it: SPATE_ERR_LEASE, the same answer the redis store's scripts give with
 * 0), the item vanished or holds another epoch (the table lost its data:
 * SPATE_ERR_STORE_LOST), the checkpoint would move backwards, or the write was ours
 * already (a retried request whose first reply was lost).
 *
 * The epoch marker is the item "PIPELINE#epoch" (spateEpochOf, spateEpoch): a random value
 * written when the pipeline first uses the table (a conditional PutItem) and again by a
 * reset of every checkpoint. A marker that vanished or changed under a running process,
 * a leased item that vanished, or a table that is gone means the table lost its data:
 * SPATE_ERR_STORE_LOST naming the store, never a silent start from scratch.
 *
 * Throttling, 5xx and transport errors are transient: retried within dynamodb.timeout.ms,
 * then reported as SPATE_ERR_STORE, which the engine retries until the lease deadline.
 * Requests go over ../aws (libcurl, SigV4 service "dynamodb", application/x-amz-json-1.0,
 * X-Amz-Target: DynamoDB_20120810.Op); the AWS keys are never in a message.
 * @locality one thread at a time (the engine thread, or the CLI)
 */
#include "../aws/aws.h"
#include "sp_spi.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define DS_KEY_MAX 1024
/* CreateTable: how long to wait for the table to become ACTIVE */
#define DS_ACTIVE_MS 60000
/* a ConditionalCheckFailedException (internal to this file) */
#define DS_COND 1

typedef struct dstore {
	kin_aws_t aws;
	kin_http_t *http;
	char table[256];
	char name[1024]; /* dynamodb:TABLE (region R, endpoint E): what errors say */
	char ns[160];
	int64_t timeout_ms;
	char epoch[40]; /* the marker seen at open */
	bool missing;   /* a read-only open of a table that does not exist: empty */
} dstore_t;

/* ---- requests ------------------------------------------------------------------------ */

static void ds_sleep_ms(int64_t ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* Run op with req (a JSON object, taken over). SPATE_OK with *out (the reply, to
 * json_decref), DS_COND, SPATE_ERR_NOT_FOUND (ResourceNotFoundException: no such table),
 * or SPATE_ERR_STORE with errstr (transient errors retried within timeout_ms first). */
static int ds_call(dstore_t *d, const char *op, json_t *req, json_t **out, char *errstr, size_t size)
{
	if (out)
		*out = NULL;
	json_object_set_new(req, "TableName", json_string(d->table));
	char *body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!body)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "dynamodb store %s: out of memory", d->name);
	size_t blen = strlen(body);
	int64_t t0 = sp_now_ms(), backoff = 25;
	for (;;) {
		int64_t left = t0 + d->timeout_ms - sp_now_ms();
		char *copy = malloc(blen + 1);
		kin_req_t *r = copy ? kin_req_new(op, copy, blen) : NULL;
		if (!r) {
			free(body);
			return sp_err(errstr, size, SPATE_ERR_NOMEM, "dynamodb store %s: out of memory",
			              d->name);
		}
		memcpy(copy, body, blen + 1);
		r->timeout_ms = left > 100 ? left : 100;
		kin_http_call(d->http, r);
		kin_error_t e = {"", ""};
		bool retry;
		int rc;
		if (r->curl_rc) {
			retry = true;
			rc = sp_err(errstr, size, SPATE_ERR_STORE, "dynamodb store %s: %s: %s", d->name, op,
			            r->curl_err[0] ? r->curl_err : "transport error");
		} else if (r->status == 200) {
			json_t *j = json_loadb(r->resp, r->resp_len, 0, NULL);
			kin_req_free(r);
			if (!j || !json_is_object(j)) {
				json_decref(j);
				free(body);
				return sp_err(errstr, size, SPATE_ERR_STORE,
				              "dynamodb store %s: %s: the reply is not a JSON object",
				              d->name, op);
			}
			free(body);
			if (out)
				*out = j;
			else
				json_decref(j);
			return SPATE_OK;
		} else {
			kin_parse_error(r->resp, r->resp_len, &e);
			if (!strcmp(e.type, "ConditionalCheckFailedException")) {
				kin_req_free(r);
				free(body);
				return DS_COND;
			}
			if (!strcmp(e.type, "ResourceNotFoundException")) {
				kin_req_free(r);
				free(body);
				return sp_err(errstr, size, SPATE_ERR_NOT_FOUND, "dynamodb store %s: %s: %s",
				              d->name, op, e.message);
			}
			retry = kin_error_retryable(r->status, e.type) ||
			        !strcmp(e.type, "RequestLimitExceeded") ||
			        !strcmp(e.type, "InternalServerError") ||
			        !strcmp(e.type, "TransactionConflictException");
			rc = sp_err(errstr, size, SPATE_ERR_STORE, "dynamodb store %s: %s: HTTP %ld %s%s%s",
			            d->name, op, r->status, e.type[0] ? e.type : "error",
			            e.message[0] ? ": " : "", e.message);
		}
		kin_req_free(r);
		if (!retry || sp_now_ms() + backoff >= t0 + d->timeout_ms) {
			free(body);
			return rc;
		}
		ds_sleep_ms(backoff);
		backoff = backoff * 2 > 400 ? 400 : backoff * 2;
	}
}

static void ds_key(const dstore_t *d, const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s", d->ns, name);
}

static void ds_epoch_key(const dstore_t *d, char *buf, size_t size)
{
	snprintf(buf, size, "%s#epoch", d->ns);
}

static json_t *key_of(const char *key)
{
	return json_pack("{s:{s:s}}", "leaseKey", "S", key);
}

/* The names every expression uses (DynamoDB reserves many words). */
static json_t *names(void)
{
	return json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "#k", "leaseKey", "#o",
	                 "leaseOwner", "#c", "leaseCounter", "#ck", "checkpoint", "#sub",
	                 "checkpointSubSequenceNumber", "#sw", "ownerSwitchesSinceCheckpoint", "#pl",
	                 "spatePipeline", "#pt", "spatePartition", "#x", "spateCheckpoint", "#cmp",
	                 "spateCmp", "#ep", "spateEpoch", "#epo", "spateEpochOf", "#ps", "parentShardId");
}

static const char *attr_s(json_t *item, const char *name)
{
	return json_string_value(json_object_get(json_object_get(item, name), "S"));
}

static bool attr_n(json_t *item, const char *name, uint64_t *v)
{
	const char *s = json_string_value(json_object_get(json_object_get(item, name), "N"));
	if (!s)
		return false;
	char *end;
	*v = strtoull(s, &end, 10);
	return *s && !*end;
}

static json_t *num(uint64_t v)
{
	char b[24];
	snprintf(b, sizeof(b), "%" PRIu64, v);
	return json_pack("{s:s}", "N", b);
}

static json_t *str(const char *s)
{
	return json_pack("{s:s}", "S", s);
}

/* The names an expression uses, out of names(): DynamoDB refuses unused ones. */
static json_t *names_for(const char *expr1, const char *expr2)
{
	json_t *all = names(), *used = json_object();
	const char *k;
	json_t *v;
	json_object_foreach(all, k, v)
	{
		size_t n = strlen(k);
		bool found = false;
		for (int i = 0; i < 2 && !found; i++) {
			const char *e = i ? expr2 : expr1;
			for (const char *p = e ? strstr(e, k) : NULL; p && !found; p = strstr(p + 1, k)) {
				char after = p[n];
				found = !(after == '_' || (after >= 'a' && after <= 'z') ||
				          (after >= 'A' && after <= 'Z') || (after >= '0' && after <= '9'));
			}
		}
		if (found)
			json_object_set(used, k, v);
	}
	json_decref(all);
	return used;
}

/* An UpdateItem on key: SET/REMOVE expression upd, condition cond, values vals (taken
 * over), ReturnValues rv; *out the reply's Attributes (a new reference) when asked. */
static int ds_update(dstore_t *d, const char *key, const char *upd, const char *cond, json_t *vals,
                     const char *rv, json_t **out, char *errstr, size_t size)
{
	json_t *req = json_pack("{s:o,s:s,s:s,s:o,s:o,s:s}", "Key", key_of(key), "UpdateExpression", upd,
	                        "ConditionExpression", cond, "ExpressionAttributeNames", names_for(upd, cond),
	                        "ExpressionAttributeValues", vals, "ReturnValues", rv);
	if (!req)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "dynamodb store %s: out of memory", d->name);
	json_t *rep = NULL;
	int rc = ds_call(d, "UpdateItem", req, out ? &rep : NULL, errstr, size);
	if (rc == SPATE_OK && out) {
		*out = json_incref(json_object_get(rep, "Attributes"));
		json_decref(rep);
	}
	return rc;
}

/* GetItem (strongly consistent): SPATE_OK with *item (NULL when there is none), or an
 * error. */
static int ds_get(dstore_t *d, const char *key, json_t **item, char *errstr, size_t size)
{
	*item = NULL;
	json_t *req = json_pack("{s:o,s:b}", "Key", key_of(key), "ConsistentRead", 1);
	json_t *rep = NULL;
	int rc = ds_call(d, "GetItem", req, &rep, errstr, size);
	if (rc)
		return rc;
	json_t *it = json_object_get(rep, "Item");
	if (json_is_object(it) && json_object_size(it))
		*item = json_incref(it);
	json_decref(rep);
	return SPATE_OK;
}

/* The position as 128 hex digits, its eight words most significant first ("-" for
 * "beginning"): strings that compare as the positions do (as the redis store's cmp). */
static void ckpt_cmp(const sp_ckpt_t *c, char *buf, size_t size)
{
	snprintf(buf, size, "-");
	if (c->beginning)
		return;
	size_t n = 0;
	for (int i = 0; i < 5 && n < size; i++)
		n += (size_t)snprintf(buf + n, size - n, "%016" PRIx64, c->after.x[i]);
	for (int i = 0; i < 3 && n < size; i++)
		n += (size_t)snprintf(buf + n, size - n, "%016" PRIx64, c->after.w[i]);
}

/* KCL's checkpoint and checkpointSubSequenceNumber for the position sp_ckpt_fmt wrote. */
static void kcl_ckpt(const char *fmt, char *ck, size_t size, char *sub, size_t subsize)
{
	snprintf(sub, subsize, "0");
	if (!strcmp(fmt, "beginning")) {
		snprintf(ck, size, "TRIM_HORIZON");
		return;
	}
	const char *dot = strchr(fmt, '.');
	bool seq = dot && dot > fmt && dot[1];
	for (const char *p = fmt; seq && *p; p++)
		seq = p == dot || (*p >= '0' && *p <= '9');
	if (seq) { /* a Kinesis position SEQ.SUB */
		snprintf(ck, size, "%.*s", (int)(dot - fmt), fmt);
		snprintf(sub, subsize, "%s", dot + 1);
		return;
	}
	snprintf(ck, size, "%s", fmt);
}

static int lost_err(dstore_t *d, char *errstr, size_t size, const char *what)
{
	char ek[DS_KEY_MAX];
	ds_epoch_key(d, ek, sizeof(ek));
	return sp_err(errstr, size, SPATE_ERR_STORE_LOST,
	              "dynamodb store %s lost its data: %s (epoch marker item %s was %s when this process "
	              "started); spate stops rather than start over (the table emptied, deleted or "
	              "restored from an older backup?); `spate checkpoint reset` starts over deliberately",
	              d->name, what, ek, d->epoch);
}

/* ---- open and close ------------------------------------------------------------------ */

static const spate_conf_t *conf_of(sp_store_t *s)
{
	return s->eng ? sp_engine_conf(s->eng) : s->conf;
}

static bool table_name_ok(const char *t)
{
	size_t n = strlen(t);
	if (n < 3 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = t[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.'))
			return false;
	}
	return true;
}

/* DescribeTable: its TableStatus into status, and whether its key is leaseKey (S) alone. */
static int describe(dstore_t *d, char *status, size_t ssize, char *errstr, size_t size)
{
	json_t *rep = NULL;
	int rc = ds_call(d, "DescribeTable", json_object(), &rep, errstr, size);
	if (rc)
		return rc;
	json_t *t = json_object_get(rep, "Table");
	const char *st = json_string_value(json_object_get(t, "TableStatus"));
	snprintf(status, ssize, "%s", st ? st : "");
	json_t *ks = json_object_get(t, "KeySchema");
	bool ok = json_array_size(ks) == 1 &&
	          !strcmp(json_string_value(json_object_get(json_array_get(ks, 0), "AttributeName")) ?: "",
	                  "leaseKey") &&
	          !strcmp(json_string_value(json_object_get(json_array_get(ks, 0), "KeyType")) ?: "", "HASH");
	json_decref(rep);
	if (!ok)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "dynamodb store %s: table %s is not a lease table: its key must be leaseKey "
		              "(S) alone, as KCL's lease tables have it",
		              d->name, d->table);
	return SPATE_OK;
}

static int ensure_table(dstore_t *d, bool create, bool readonly, char *errstr, size_t size)
{
	char status[32] = "";
	int rc = describe(d, status, sizeof(status), errstr, size);
	if (rc == SPATE_ERR_NOT_FOUND) {
		if (readonly) {
			d->missing = true;
			return SPATE_OK;
		}
		if (!create)
			return sp_err(errstr, size, SPATE_ERR_NOT_FOUND,
			              "dynamodb store %s: table %s does not exist: create it (leaseKey, a "
			              "string, as its HASH key) or set dynamodb.create.table=true",
			              d->name, d->table);
		json_t *req =
		    json_pack("{s:[{s:s,s:s}],s:[{s:s,s:s}],s:s}", "AttributeDefinitions", "AttributeName",
		              "leaseKey", "AttributeType", "S", "KeySchema", "AttributeName", "leaseKey",
		              "KeyType", "HASH", "BillingMode", "PAY_PER_REQUEST");
		rc = ds_call(d, "CreateTable", req, NULL, errstr, size);
		/* another process created it meanwhile: ResourceInUseException, fine */
		if (rc && !strstr(errstr, "ResourceInUseException"))
			return rc;
		status[0] = 0;
	} else if (rc) {
		return rc;
	}
	int64_t deadline = sp_now_ms() + DS_ACTIVE_MS;
	while (strcmp(status, "ACTIVE") && strcmp(status, "UPDATING")) {
		if (sp_now_ms() >= deadline)
			return sp_err(errstr, size, SPATE_ERR_STORE,
			              "dynamodb store %s: table %s is not ACTIVE after %d s (status %s)",
			              d->name, d->table, DS_ACTIVE_MS / 1000, status[0] ? status : "unknown");
		if (status[0])
			ds_sleep_ms(200);
		rc = describe(d, status, sizeof(status), errstr, size);
		if (rc && rc != SPATE_ERR_NOT_FOUND)
			return rc;
		if (rc)
			status[0] = 0, ds_sleep_ms(200);
	}
	return SPATE_OK;
}

static void new_epoch(char *buf, size_t size)
{
	uint64_t v[2] = {0, 0};
	if (getrandom(v, sizeof(v), 0) != sizeof(v))
		v[0] = (uint64_t)sp_wall_ms();
	snprintf(buf, size, "%016" PRIx64 "%016" PRIx64, v[0], v[1]);
}

static int put_epoch(dstore_t *d, bool only_new, char *errstr, size_t size)
{
	char ek[DS_KEY_MAX];
	ds_epoch_key(d, ek, sizeof(ek));
	char fresh[40];
	new_epoch(fresh, sizeof(fresh));
	json_t *req = json_pack("{s:{s:{s:s},s:{s:s},s:{s:s}}}", "Item", "leaseKey", "S", ek, "spateEpochOf",
	                        "S", d->ns, "spateEpoch", "S", fresh);
	if (only_new) {
		json_object_set_new(req, "ConditionExpression", json_string("attribute_not_exists(#k)"));
		json_object_set_new(req, "ExpressionAttributeNames", json_pack("{s:s}", "#k", "leaseKey"));
	}
	int rc = ds_call(d, "PutItem", req, NULL, errstr, size);
	if (rc == DS_COND)
		return SPATE_OK; /* there is one: read it */
	if (rc == SPATE_OK && !only_new)
		snprintf(d->epoch, sizeof(d->epoch), "%s", fresh);
	return rc;
}

static int read_epoch(dstore_t *d, char *buf, size_t bsize, char *errstr, size_t size)
{
	char ek[DS_KEY_MAX];
	ds_epoch_key(d, ek, sizeof(ek));
	json_t *it = NULL;
	int rc = ds_get(d, ek, &it, errstr, size);
	if (rc)
		return rc;
	const char *v = it ? attr_s(it, "spateEpoch") : NULL;
	snprintf(buf, bsize, "%s", v ? v : "");
	json_decref(it);
	return SPATE_OK;
}

static void ds_free(dstore_t *d)
{
	if (!d)
		return;
	kin_http_free(d->http);
	kin_aws_clear(&d->aws);
	free(d);
}

static int ds_open_common(sp_store_t *s, bool readonly, char *errstr, size_t size)
{
	const char *table = s->arg ? s->arg : "";
	if (!table_name_ok(table))
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "store: dynamodb:%s: a table name is 3 to 255 of A-Z a-z 0-9 _ - . "
		              "(store=dynamodb:TABLE)",
		              table);
	dstore_t *d = calloc(1, sizeof(*d));
	if (!d)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	snprintf(d->table, sizeof(d->table), "%s", table);
	const spate_conf_t *conf = conf_of(s);
	const char *region = conf ? sp_conf_str(conf, "dynamodb.region") : "";
	if (!*region)
		region = kin_aws_env_region();
	/* unset: the AWS SDKs' variables, then the region's endpoint */
	const char *ep = conf ? sp_conf_str(conf, "dynamodb.endpoint") : "";
	if (!*ep && getenv("AWS_ENDPOINT_URL_DYNAMODB"))
		ep = getenv("AWS_ENDPOINT_URL_DYNAMODB");
	if (!*ep && getenv("AWS_ENDPOINT_URL"))
		ep = getenv("AWS_ENDPOINT_URL");
	snprintf(d->aws.target, sizeof(d->aws.target), "DynamoDB_20120810");
	snprintf(d->aws.ctype, sizeof(d->aws.ctype), "application/x-amz-json-1.0");
	char serr[600];
	int rc = kin_aws_setup(&d->aws, "dynamodb", "dynamodb.region", region, "dynamodb.endpoint", ep,
	                       "dynamodb store", serr, sizeof(serr));
	if (rc) {
		sp_err(errstr, size, rc, "store dynamodb:%s: %s", table, serr);
		ds_free(d);
		return rc;
	}
	snprintf(d->name, sizeof(d->name), "dynamodb:%s (region %s, endpoint %s)", d->table, d->aws.region,
	         d->aws.endpoint);
	d->timeout_ms = conf ? sp_conf_int(conf, "dynamodb.timeout.ms") : 2000;
	if (d->timeout_ms <= 0)
		d->timeout_ms = 2000;
	const char *ns = s->ns ? s->ns : s->eng ? sp_engine_pipeline_name(s->eng) : "pipeline";
	snprintf(d->ns, sizeof(d->ns), "%s", ns);
	d->http = kin_http_new(&d->aws, errstr, size);
	if (!d->http) {
		ds_free(d);
		return SPATE_ERR_STORE;
	}
	bool create = conf ? sp_conf_bool(conf, "dynamodb.create.table") : false;
	rc = ensure_table(d, create, readonly, errstr, size);
	if (!rc && !readonly)
		rc = put_epoch(d, true, errstr, size);
	if (!rc && !d->missing)
		rc = read_epoch(d, d->epoch, sizeof(d->epoch), errstr, size);
	if (rc) {
		ds_free(d);
		return rc == DS_COND ? SPATE_ERR_STORE : rc;
	}
	s->ctx = d;
	if (s->eng)
		sp_msg(s->eng, SP_MSG_DEBUG, "lease audit: store %s namespace %s epoch %s", d->name, d->ns,
		       d->epoch);
	return SPATE_OK;
}

static int ds_open(sp_store_t *s, char *errstr, size_t size)
{
	return ds_open_common(s, false, errstr, size);
}

static int ds_open_readonly(sp_store_t *s, char *errstr, size_t size)
{
	return ds_open_common(s, true, errstr, size);
}

static void ds_close(sp_store_t *s)
{
	ds_free(s->ctx);
	s->ctx = NULL;
}

/* ---- checkpoints --------------------------------------------------------------------- */

static int ds_epoch(sp_store_t *s, char *errstr, size_t size)
{
	dstore_t *d = s->ctx;
	char now[40];
	int rc = read_epoch(d, now, sizeof(now), errstr, size);
	if (rc == SPATE_ERR_NOT_FOUND)
		return lost_err(d, errstr, size, "the table is gone");
	if (rc)
		return rc;
	if (!now[0])
		return lost_err(d, errstr, size, "the epoch marker is gone");
	if (strcmp(now, d->epoch))
		return lost_err(d, errstr, size, "the epoch marker changed");
	return SPATE_OK;
}

static int ds_load(sp_store_t *s, const char *name, sp_ckpt_t *out, char *errstr, size_t size)
{
	dstore_t *d = s->ctx;
	if (d->missing)
		return sp_err(errstr, size, SPATE_ERR_NOT_FOUND, "dynamodb store %s: no checkpoint for %s",
		              d->name, name);
	char key[DS_KEY_MAX];
	ds_key(d, name, key, sizeof(key));
	json_t *it = NULL;
	int rc = ds_get(d, key, &it, errstr, size);
	if (rc)
		return rc;
	const char *ck = it ? attr_s(it, "spateCheckpoint") : NULL;
	if (!ck || !*ck)
		rc = sp_err(errstr, size, SPATE_ERR_NOT_FOUND, "dynamodb store %s: no checkpoint for %s",
		            d->name, name);
	else if (sp_ckpt_parse(ck, out))
		rc = sp_err(errstr, size, SPATE_ERR_CORRUPT,
		            "dynamodb store %s: item %s: spateCheckpoint holds \"%.80s\", not a checkpoint",
		            d->name, key, ck);
	json_decref(it);
	return rc;
}

/* After a failed condition: what the item says. want_owner ("" none), want_counter and
 * want_cmp (NULL: not a checkpoint) describe the state the write would have made: when
 * the item holds it, the write was ours (a retry whose first reply was lost). */
enum { DS_GONE, DS_LOST, DS_OURS, DS_BACKWARDS };

static int classify(dstore_t *d, const char *key, const char *want_owner, uint64_t want_counter,
                    const char *want_cmp, bool held, char *why, size_t wsize, char *errstr, size_t size,
                    int *what)
{
	json_t *it = NULL;
	int rc = ds_get(d, key, &it, errstr, size);
	if (rc == SPATE_ERR_NOT_FOUND) {
		*what = DS_LOST;
		snprintf(why, wsize, "the table is gone");
		return SPATE_OK;
	}
	if (rc)
		return rc;
	*what = DS_GONE;
	if (!it) {
		if (held) {
			*what = DS_LOST;
			snprintf(why, wsize, "a leased partition's item vanished");
		}
		return SPATE_OK;
	}
	const char *ep = attr_s(it, "spateEpoch");
	const char *o = attr_s(it, "leaseOwner");
	uint64_t c = 0;
	attr_n(it, "leaseCounter", &c);
	if (ep && strcmp(ep, d->epoch)) {
		*what = DS_LOST;
		snprintf(why, wsize, "a partition's item holds another epoch");
	} else if (want_owner && !strcmp(o ? o : "", want_owner) && c == want_counter) {
		if (!want_cmp) {
			*what = DS_OURS;
		} else {
			const char *cmp = attr_s(it, "spateCmp");
			int k = strcmp(cmp ? cmp : "", want_cmp);
			*what = k == 0 ? DS_OURS : k > 0 ? DS_BACKWARDS : DS_GONE;
		}
	}
	json_decref(it);
	return SPATE_OK;
}

static int save_one(dstore_t *d, const sp_store_entry_t *e, char *err, size_t esz)
{
	if (!e->owner || !e->owner[0])
		return sp_err(err, esz, SPATE_ERR_INVALID,
		              "dynamodb store %s: a checkpoint of %s without a lease (the dynamodb store "
		              "writes only under a lease: run the source in lease mode)",
		              d->name, e->name);
	char key[DS_KEY_MAX], ck[SPATE_POSITION_MAX], cmp[160], kck[SPATE_POSITION_MAX], sub[64];
	ds_key(d, e->name, key, sizeof(key));
	sp_ckpt_fmt(&e->ckpt, ck, sizeof(ck));
	ckpt_cmp(&e->ckpt, cmp, sizeof(cmp));
	kcl_ckpt(ck, kck, sizeof(kck), sub, sizeof(sub));
	json_t *vals = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", ":me", str(e->owner), ":c",
	                         num(e->counter), ":ep", str(d->epoch), ":x", str(ck), ":cmp", str(cmp),
	                         ":ck", str(kck), ":sub", json_pack("{s:s}", "N", sub), ":zero", num(0));
	int rc =
	    ds_update(d, key, "SET #x = :x, #cmp = :cmp, #ck = :ck, #sub = :sub, #sw = :zero",
	              "#c = :c AND #o = :me AND #ep = :ep AND (attribute_not_exists(#cmp) OR #cmp <= :cmp)",
	              vals, "NONE", NULL, err, esz);
	if (rc == SPATE_ERR_NOT_FOUND)
		return lost_err(d, err, esz, "the table is gone");
	if (rc != DS_COND)
		return rc;
	char why[128] = "";
	int what;
	rc = classify(d, key, e->owner, e->counter, cmp, true, why, sizeof(why), err, esz, &what);
	if (rc)
		return rc;
	if (what == DS_OURS)
		return SPATE_OK;
	if (what == DS_LOST)
		return lost_err(d, err, esz, why);
	if (what == DS_BACKWARDS)
		return sp_err(err, esz, SPATE_ERR_INVALID,
		              "dynamodb store %s: checkpoint of %s refused: %s is before the stored one",
		              d->name, e->name, ck);
	return sp_err(err, esz, SPATE_ERR_LEASE,
	              "dynamodb store %s: checkpoint of %s refused: owner %s counter %" PRIu64
	              " no longer holds its lease",
	              d->name, e->name, e->owner, e->counter);
}

static int ds_save(sp_store_t *s, const sp_store_entry_t *ents, size_t n, char *errstr, size_t size)
{
	dstore_t *d = s->ctx;
	int first = SPATE_OK;
	for (size_t i = 0; i < n; i++) {
		char err[1400] = "";
		int rc = d->missing ? sp_err(err, sizeof(err), SPATE_ERR_INVALID,
		                             "dynamodb store %s: opened read-only", d->name)
		                    : save_one(d, &ents[i], err, sizeof(err));
		if (ents[i].rc)
			*ents[i].rc = rc;
		if (rc && first == SPATE_OK) {
			first = rc;
			sp_err(errstr, size, rc, "%s", err);
		}
	}
	return first;
}

/* Every partition item of the namespace (Scan, strongly consistent, page by page). */
static int ds_scan(dstore_t *d, int (*fn)(void *arg, json_t *item), void *arg, char *errstr, size_t size)
{
	if (d->missing)
		return SPATE_OK;
	json_t *start = NULL;
	do {
		json_t *req = json_pack("{s:b,s:s,s:{s:s},s:{s:o}}", "ConsistentRead", 1, "FilterExpression",
		                        "#pl = :ns", "ExpressionAttributeNames", "#pl", "spatePipeline",
		                        "ExpressionAttributeValues", ":ns", str(d->ns));
		if (start)
			json_object_set_new(req, "ExclusiveStartKey", start);
		start = NULL;
		json_t *rep = NULL;
		int rc = ds_call(d, "Scan", req, &rep, errstr, size);
		if (rc == SPATE_ERR_NOT_FOUND)
			return lost_err(d, errstr, size, "the table is gone");
		if (rc)
			return rc == DS_COND ? SPATE_ERR_STORE : rc;
		size_t i;
		json_t *it;
		json_array_foreach(json_object_get(rep, "Items"), i, it)
		{
			if ((rc = fn(arg, it))) {
				json_decref(rep);
				return rc;
			}
		}
		json_t *last = json_object_get(rep, "LastEvaluatedKey");
		if (json_is_object(last) && json_object_size(last))
			start = json_incref(last);
		json_decref(rep);
	} while (start);
	return SPATE_OK;
}

struct list_ctx {
	void (*fn)(void *arg, const sp_store_entry_t *ent);
	void (*lfn)(void *arg, const sp_lease_t *l);
	void *arg;
};

static int list_one(void *arg, json_t *it)
{
	struct list_ctx *lc = arg;
	const char *name = attr_s(it, "spatePartition");
	if (!name)
		return SPATE_OK;
	sp_lease_t l;
	memset(&l, 0, sizeof(l));
	l.name = name;
	const char *o = attr_s(it, "leaseOwner");
	snprintf(l.owner, sizeof(l.owner), "%s", o ? o : "");
	attr_n(it, "leaseCounter", &l.counter);
	l.expired = -1; /* no clock here: the taker judges (engine/lease.c) */
	const char *ck = attr_s(it, "spateCheckpoint");
	if (ck && *ck && !sp_ckpt_parse(ck, &l.ckpt))
		l.has_ckpt = true;
	size_t i, n = 0;
	json_t *p;
	json_array_foreach(json_object_get(json_object_get(it, "parentShardId"), "SS"), i, p)
	{
		const char *ps = json_string_value(p);
		if (ps)
			n +=
			    (size_t)snprintf(l.parents + n, n < sizeof(l.parents) ? sizeof(l.parents) - n : 0,
			                     "%s%s", n ? "," : "", ps);
		if (n >= sizeof(l.parents))
			break;
	}
	if (lc->lfn)
		lc->lfn(lc->arg, &l);
	if (lc->fn && l.has_ckpt) {
		sp_store_entry_t e = {.name = name, .ckpt = l.ckpt};
		lc->fn(lc->arg, &e);
	}
	return SPATE_OK;
}

static int ds_list(sp_store_t *s, void (*fn)(void *arg, const sp_store_entry_t *ent), void *arg, char *errstr,
                   size_t size)
{
	struct list_ctx lc = {fn, NULL, arg};
	return ds_scan(s->ctx, list_one, &lc, errstr, size);
}

static int ds_lease_list(sp_store_t *s, void (*fn)(void *arg, const sp_lease_t *l), void *arg, char *errstr,
                         size_t size)
{
	struct list_ctx lc = {NULL, fn, arg};
	return ds_scan(s->ctx, list_one, &lc, errstr, size);
}

static int ds_delete(dstore_t *d, const char *key, bool *existed, char *errstr, size_t size)
{
	json_t *req = json_pack("{s:o,s:s}", "Key", key_of(key), "ReturnValues", "ALL_OLD");
	json_t *rep = NULL;
	int rc = ds_call(d, "DeleteItem", req, &rep, errstr, size);
	if (rc)
		return rc == DS_COND ? SPATE_ERR_STORE : rc;
	json_t *old = json_object_get(rep, "Attributes");
	if (existed)
		*existed = json_is_object(old) && json_object_size(old);
	json_decref(rep);
	return SPATE_OK;
}

struct del_ctx {
	dstore_t *d;
	char *errstr;
	size_t size;
};

static int del_one(void *arg, json_t *it)
{
	struct del_ctx *dc = arg;
	const char *key = attr_s(it, "leaseKey");
	return key ? ds_delete(dc->d, key, NULL, dc->errstr, dc->size) : SPATE_OK;
}

static int ds_reset(sp_store_t *s, const char *name, char *errstr, size_t size)
{
	dstore_t *d = s->ctx;
	if (d->missing)
		return sp_err(errstr, size, SPATE_ERR_NOT_FOUND, "dynamodb store %s: table %s does not exist",
		              d->name, d->table);
	if (name) {
		char key[DS_KEY_MAX];
		ds_key(d, name, key, sizeof(key));
		bool existed = false;
		int rc = ds_delete(d, key, &existed, errstr, size);
		if (rc)
			return rc;
		if (!existed)
			return sp_err(errstr, size, SPATE_ERR_NOT_FOUND,
			              "dynamodb store %s: no checkpoint for partition %s", d->name, name);
		return SPATE_OK;
	}
	struct del_ctx dc = {d, errstr, size};
	int rc = ds_scan(d, del_one, &dc, errstr, size);
	if (rc)
		return rc;
	/* a new epoch: processes still running against the old one stop */
	return put_epoch(d, false, errstr, size);
}

/* ---- leases -------------------------------------------------------------------------- */

static int lease_err(dstore_t *d, const char *what, const char *name, const char *owner, uint64_t counter,
                     char *errstr, size_t size)
{
	return sp_err(errstr, size, SPATE_ERR_LEASE,
	              "dynamodb store %s: %s of %s refused: owner %s counter %" PRIu64
	              " no longer holds the lease",
	              d->name, what, name, owner, counter);
}

static int ds_acquire(sp_store_t *s, const char *name, const char *owner, const sp_lease_t *seen, bool steal,
                      int64_t timeout_ms, sp_lease_t *out, char *errstr, size_t size)
{
	dstore_t *d = s->ctx;
	char key[DS_KEY_MAX];
	ds_key(d, name, key, sizeof(key));
	const char *so = seen ? seen->owner : "";
	uint64_t sc = seen ? seen->counter : 0;
	bool switched = strcmp(so, owner) != 0;
	/* KCL's rule: a lease is taken conditionally on the counter (and owner) last seen;
	 * expiry was judged by the caller (steal or not, the store checks the same) */
	const char *cond = sc == 0 ? "attribute_not_exists(#k)"
	                   : so[0] ? "#c = :sc AND #o = :so AND #ep = :ep"
	                           : "#c = :sc AND attribute_not_exists(#o) AND #ep = :ep";
	const char *upd =
	    switched
	        ? "SET #o = :me, #c = if_not_exists(#c, :zero) + :one, #sw = if_not_exists(#sw, :zero) "
	          "+ :one, #pl = :ns, #pt = :name, #ep = :ep"
	        : "SET #o = :me, #c = if_not_exists(#c, :zero) + :one, #pl = :ns, #pt = :name, #ep = :ep";
	json_t *vals = json_pack("{s:o,s:o,s:o,s:o,s:o,s:o}", ":me", str(owner), ":zero", num(0), ":one",
	                         num(1), ":ns", str(d->ns), ":name", str(name), ":ep", str(d->epoch));
	/* the partitions to be read to their end first (Kinesis parent shards), as KCL keeps
	 * them: parentShardId, a string set */
	char updp[512];
	const char *parents = seen ? seen->parents : "";
	if (parents[0]) {
		json_t *ss = json_array();
		for (const char *q = parents; *q;) {
			size_t n = strcspn(q, ",");
			if (n)
				json_array_append_new(ss, json_stringn(q, n));
			q += n + (q[n] == ',');
		}
		json_object_set_new(vals, ":ps", json_pack("{s:o}", "SS", ss));
		snprintf(updp, sizeof(updp), "%s, #ps = :ps", upd);
		upd = updp;
	}
	if (sc)
		json_object_set_new(vals, ":sc", num(sc));
	if (so[0])
		json_object_set_new(vals, ":so", str(so));
	json_t *attrs = NULL;
	int rc = ds_update(d, key, upd, cond, vals, "ALL_NEW", &attrs, errstr, size);
	if (rc == SPATE_ERR_NOT_FOUND)
		return lost_err(d, errstr, size, "the table is gone");
	if (rc == DS_COND) {
		char why[128] = "";
		int what;
		rc = classify(d, key, owner, sc + 1, NULL, false, why, sizeof(why), errstr, size, &what);
		if (rc)
			return rc;
		if (what == DS_LOST)
			return lost_err(d, errstr, size, why);
		if (what != DS_OURS)
			return sp_err(errstr, size, SPATE_ERR_LEASE,
			              "dynamodb store %s: lease of %s not taken: it changed meanwhile",
			              d->name, name);
		/* ours: read what it holds */
		json_t *it = NULL;
		if ((rc = ds_get(d, key, &it, errstr, size)))
			return rc;
		attrs = it;
	} else if (rc) {
		return rc;
	}
	memset(out, 0, sizeof(*out));
	out->name = name;
	snprintf(out->owner, sizeof(out->owner), "%s", owner);
	out->counter = sc + 1;
	attr_n(attrs, "leaseCounter", &out->counter);
	out->expired = 0;
	const char *ck = attr_s(attrs, "spateCheckpoint");
	out->has_ckpt = ck && *ck && !sp_ckpt_parse(ck, &out->ckpt);
	json_decref(attrs);
	(void)steal;
	(void)timeout_ms;
	return SPATE_OK;
}

/* renew and release: counter + 1, conditional on owner, counter and epoch */
static int ds_checked(dstore_t *d, bool release, const char *name, const char *owner, uint64_t *counter,
                      char *errstr, size_t size)
{
	char key[DS_KEY_MAX];
	ds_key(d, name, key, sizeof(key));
	json_t *vals = json_pack("{s:o,s:o,s:o,s:o}", ":me", str(owner), ":c", num(*counter), ":ep",
	                         str(d->epoch), ":one", num(1));
	int rc = ds_update(d, key, release ? "REMOVE #o SET #c = #c + :one" : "SET #c = #c + :one",
	                   "#c = :c AND #o = :me AND #ep = :ep", vals, "NONE", NULL, errstr, size);
	if (rc == SPATE_ERR_NOT_FOUND)
		return lost_err(d, errstr, size, "the table is gone");
	if (rc == DS_COND) {
		char why[128] = "";
		int what;
		rc = classify(d, key, release ? "" : owner, *counter + 1, NULL, true, why, sizeof(why),
		              errstr, size, &what);
		if (rc)
			return rc;
		if (what == DS_LOST)
			return lost_err(d, errstr, size, why);
		if (what != DS_OURS)
			return lease_err(d, release ? "release" : "renewal", name, owner, *counter, errstr,
			                 size);
	} else if (rc) {
		return rc;
	}
	*counter += 1;
	return SPATE_OK;
}

static int ds_renew(sp_store_t *s, const char *name, const char *owner, uint64_t *counter, int64_t timeout_ms,
                    char *errstr, size_t size)
{
	(void)timeout_ms;
	return ds_checked(s->ctx, false, name, owner, counter, errstr, size);
}

static int ds_release(sp_store_t *s, const char *name, const char *owner, uint64_t counter, char *errstr,
                      size_t size)
{
	return ds_checked(s->ctx, true, name, owner, &counter, errstr, size);
}

static const sp_opt_t dynamodb_opts[] = {
    {"dynamodb.region", SP_OPT_STR, 0, 0, NULL, "",
     "DynamoDB store: the AWS region (unset: AWS_REGION or AWS_DEFAULT_REGION)"},
    {"dynamodb.endpoint", SP_OPT_STR, 0, 0, NULL, "",
     "DynamoDB store: the endpoint URL (unset: AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL, else "
     "https://dynamodb.REGION.amazonaws.com)"},
    {"dynamodb.create.table", SP_OPT_BOOL, 0, 0, NULL, "false",
     "DynamoDB store: create the lease table when it does not exist (leaseKey as its HASH key, "
     "PAY_PER_REQUEST) and wait until it is ACTIVE"},
    {"dynamodb.timeout.ms", SP_OPT_INT, 1, 600000, NULL, "2000",
     "DynamoDB store: one operation, its retries of throttling and 5xx included (then it is retried "
     "until the lease deadline)"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

const sp_store_ops_t sp_store_dynamodb = {
    .version = SP_STORE_OPS_VERSION,
    .name = "dynamodb",
    .desc = "dynamodb:TABLE - leases and checkpoints in a KCL-shaped DynamoDB lease table, shared by "
            "many processes",
    .opts = dynamodb_opts,
    .syntax = "dynamodb:TABLE",
    .open = ds_open,
    .load = ds_load,
    .save = ds_save,
    .list = ds_list,
    .reset = ds_reset,
    .close = ds_close,
    .open_readonly = ds_open_readonly,
    .leases = true,
    .epoch = ds_epoch,
    .lease_list = ds_lease_list,
    .lease_acquire = ds_acquire,
    .lease_renew = ds_renew,
    .lease_release = ds_release,
};
