/* redis.c - the Redis checkpoint store with leases: store=redis://[user:password@]host:port[/db].
 *
 * Several spate processes share one Redis: each partition's lease and checkpoint live in
 * one hash, "spate:NS:{PARTITION}" (NS: the pipeline's name; the {hash tag} keeps all
 * of one partition's keys in one Redis Cluster slot), with the fields
 *
 *   owner   the process holding the lease ("" when nobody does)
 *   token   the fencing token (leaseCounter): raised by every acquire
 *   expiry  when the lease expires, in ms of the server's clock (TIME)
 *   ckpt    the checkpoint as sp_ckpt_fmt() writes it
 *   cmp     the same position as 128 hex digits ("" for "beginning"), so that Lua
 *           compares positions as big numbers by comparing strings
 *   epoch   the epoch marker the hash was written under
 *   parents the partitions to be read to their end first (Kinesis parent shards,
 *           comma-separated; KCL's parentShardId), written by an acquire that names them
 *
 * Every operation on a partition is one Lua script, so it is atomic on the server, and
 * reads the time with the server's TIME (Redis 5 and later replicate a script's effects,
 * not the script). acquire takes a lease only when the owner and token are still those
 * the caller saw, and, unless it steals, when the lease is free or expired; renew,
 * checkpoint and release each check that owner and token still match; a checkpoint
 * never moves backwards. A script answering 0 means the lease is gone.
 *
 * The epoch marker "spate:NS:epoch" is a random value written when the namespace is
 * first used (SET NX) and again by a reset of every checkpoint. A marker that vanished
 * or changed under a running process, or a partition hash that vanished while this
 * process held its lease, means the server lost its data (FLUSHALL, a restart without
 * persistence, a failover to an empty replica): SPATE_ERR_STORE_LOST naming the store,
 * never a silent start from scratch.
 *
 * The connection is re-made after a server restart: a command that fails on the
 * connection reconnects once and is sent again (every script is safe to repeat: a
 * repeated acquire answers 0, a repeated checkpoint writes the same value).
 *
 * rediss://... is the same over TLS (redis_conn.c: OpenSSL, since Debian 12's hiredis 0.14
 * has no TLS), with redis.tls.ca, redis.tls.cert and redis.tls.key.
 * @locality one thread at a time (the engine thread, or the CLI)
 */
#include "lease_store.h"
#include "redis_conn.h"
#include "sp_spi.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RS_KEY_MAX 1024

typedef struct rstore {
	char host[304];
	int port;
	int db;
	char user[128];
	char pass[256];
	char name[400]; /* redis[s]://host:port/db, what errors say (never the password) */
	char ns[160];
	int64_t timeout_ms;
	bool tls;                                    /* rediss:// */
	char ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX]; /* redis.tls.*: "" when unset */
	rconn_t *c;
	char epoch[40]; /* the marker seen at open */
} rstore_t;

/* ---- scripts ------------------------------------------------------------------------ */

#define LUA_NOW                                                                                              \
	"local t = redis.call('TIME') "                                                                      \
	"local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "

/* KEYS[1] the hash; ARGV owner, seen owner, seen token, steal, timeout ms, epoch,
 * parents ("" when none: the field is left as it is).
 * {1, token, ckpt} taken; {0} changed meanwhile; {-2} the hash is of another epoch */
static const char LUA_ACQUIRE[] = LUA_NOW
    "local h = redis.call('HMGET', KEYS[1], 'owner', 'token', 'expiry', 'epoch', 'ckpt') "
    "if h[4] and h[4] ~= ARGV[6] then return {-2} end "
    "local owner = h[1] or '' "
    "local token = tonumber(h[2] or '0') "
    "local exp = tonumber(h[3] or '0') "
    "if owner ~= ARGV[2] or token ~= tonumber(ARGV[3]) then return {0} end "
    "if ARGV[4] ~= '1' and owner ~= '' and exp > now then return {0} end "
    "token = redis.call('HINCRBY', KEYS[1], 'token', 1) "
    "redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'expiry', now + tonumber(ARGV[5]), 'epoch', ARGV[6]) "
    "if ARGV[7] and ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'parents', ARGV[7]) end "
    "return {1, token, h[5] or ''}";

/* the common checks of renew, checkpoint and release: ARGV[1] owner, ARGV[2] token,
 * ARGV[3] epoch */
#define LUA_CHECK                                                                                            \
	"local h = redis.call('HMGET', KEYS[1], 'owner', 'token', 'epoch', 'cmp') "                          \
	"if not h[3] or h[3] ~= ARGV[3] then return -2 end "                                                 \
	"if h[1] ~= ARGV[1] or tonumber(h[2]) ~= tonumber(ARGV[2]) then return 0 end "

/* ARGV[4] timeout ms: 1 renewed, 0 gone, -2 lost */
static const char LUA_RENEW[] =
    LUA_NOW LUA_CHECK "redis.call('HSET', KEYS[1], 'expiry', now + tonumber(ARGV[4])) return 1";

/* ARGV[4] ckpt, ARGV[5] cmp: 1 written, 0 gone, -2 lost, -3 it would move backwards */
static const char LUA_CKPT[] =
    LUA_CHECK "if ARGV[5] < (h[4] or '') then return -3 end "
              "redis.call('HSET', KEYS[1], 'ckpt', ARGV[4], 'cmp', ARGV[5]) return 1";

/* 1 released, 0 gone, -2 lost */
static const char LUA_RELEASE[] = LUA_CHECK "redis.call('HSET', KEYS[1], 'owner', '', 'expiry', 0) return 1";

/* {owner, token, expired (0/1), ckpt, parents} or {} when missing */
static const char LUA_LIST[] =
    LUA_NOW "local h = redis.call('HMGET', KEYS[1], 'owner', 'token', 'expiry', 'ckpt', 'parents') "
            "if not h[2] and not h[4] then return {} end "
            "local exp = tonumber(h[3] or '0') "
            "local owner = h[1] or '' "
            "local e = 1 "
            "if owner ~= '' and exp > now then e = 0 end "
            "return {owner, h[2] or '0', e, h[4] or '', h[5] or ''}";

/* ---- the connection ------------------------------------------------------------------ */

static void rs_close_conn(rstore_t *r)
{
	rconn_close(r->c);
	r->c = NULL;
}

/* AUTH or SELECT on a new connection; the server's words only in the error (they never
 * hold the password). */
static int rs_setup_cmd(rstore_t *r, rconn_t *c, int argc, const char **argv, const char *what, char *errstr,
                        size_t size)
{
	size_t lens[3];
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	redisReply *rep = rconn_cmd(c, argc, argv, lens);
	if (rep && rep->type != REDIS_REPLY_ERROR) {
		freeReplyObject(rep);
		return SPATE_OK;
	}
	int rc = sp_err(errstr, size, SPATE_ERR_STORE, "redis store %s: %s refused: %s", r->name, what,
	                rep ? rep->str : rconn_errstr(c));
	if (rep)
		freeReplyObject(rep);
	return rc;
}

static int rs_connect(rstore_t *r, char *errstr, size_t size)
{
	rs_close_conn(r);
	rconn_opts_t o = {.host = r->host,
	                  .port = r->port,
	                  .timeout_ms = r->timeout_ms,
	                  .tls = r->tls,
	                  .ca = r->ca,
	                  .cert = r->cert,
	                  .key = r->key};
	char why[400];
	rconn_t *c = rconn_open(&o, why, sizeof(why));
	if (!c)
		return sp_err(errstr, size, SPATE_ERR_STORE, "redis store %s: %s", r->name, why);
	int rc = SPATE_OK;
	if (r->pass[0]) {
		const char *a2[] = {"AUTH", r->pass}, *a3[] = {"AUTH", r->user, r->pass};
		rc = r->user[0] ? rs_setup_cmd(r, c, 3, a3, "AUTH", errstr, size)
		                : rs_setup_cmd(r, c, 2, a2, "AUTH", errstr, size);
	}
	if (!rc && r->db) {
		char db[16], what[24];
		snprintf(db, sizeof(db), "%d", r->db);
		snprintf(what, sizeof(what), "SELECT %d", r->db);
		const char *a[] = {"SELECT", db};
		rc = rs_setup_cmd(r, c, 2, a, what, errstr, size);
	}
	if (rc) {
		rconn_close(c);
		return rc;
	}
	r->c = c;
	return SPATE_OK;
}

/* Run a command; on a broken connection reconnect once and run it again; while the
 * server answers LOADING (a restarted server reading its AOF or RDB) send it again every
 * 10 ms for up to redis.timeout.ms. NULL with errstr set when it could not be run (a
 * transient SPATE_ERR_STORE). */
static redisReply *rs_cmd(rstore_t *r, int argc, const char **argv, const size_t *lens, char *errstr,
                          size_t size)
{
	int64_t loading_until = 0;
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!r->c && rs_connect(r, errstr, size))
			return NULL;
		redisReply *rep = rconn_cmd(r->c, argc, argv, lens);
		if (rep && rep->type == REDIS_REPLY_ERROR && !strncmp(rep->str, "LOADING", 7)) {
			int64_t now = sp_now_ms();
			if (!loading_until)
				loading_until = now + r->timeout_ms;
			if (now < loading_until) {
				freeReplyObject(rep);
				struct timespec ts = {0, 10 * 1000000};
				nanosleep(&ts, NULL);
				attempt--; /* not a broken connection: the same attempt again */
				continue;
			}
		}
		if (rep) {
			if (rep->type == REDIS_REPLY_ERROR) {
				sp_err(errstr, size, SPATE_ERR_STORE, "redis store %s: %s: %s", r->name,
				       argv[0], rep->str);
				freeReplyObject(rep);
				return NULL;
			}
			return rep;
		}
		sp_err(errstr, size, SPATE_ERR_STORE, "redis store %s: %s", r->name, rconn_errstr(r->c));
		rs_close_conn(r);
	}
	return NULL;
}

/* EVAL script with one key and n args. */
static redisReply *rs_eval(rstore_t *r, const char *script, const char *key, int n, const char **args,
                           char *errstr, size_t size)
{
	const char *argv[16];
	size_t lens[16];
	argv[0] = "EVAL";
	argv[1] = script;
	argv[2] = "1";
	argv[3] = key;
	for (int i = 0; i < n; i++)
		argv[4 + i] = args[i];
	for (int i = 0; i < 4 + n; i++)
		lens[i] = strlen(argv[i]);
	return rs_cmd(r, 4 + n, argv, lens, errstr, size);
}

static void rs_key(const rstore_t *r, const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "spate:%s:{%s}", r->ns, name);
}

static void rs_epoch_key(const rstore_t *r, char *buf, size_t size)
{
	snprintf(buf, size, "spate:%s:epoch", r->ns);
}

static int lost_err(rstore_t *r, char *errstr, size_t size, const char *what)
{
	char ek[RS_KEY_MAX];
	rs_epoch_key(r, ek, sizeof(ek));
	return sp_err(errstr, size, SPATE_ERR_STORE_LOST,
	              "redis store %s lost its data: %s (epoch marker %s was %s when this process started); "
	              "spate stops rather than start over (a FLUSHALL, a restart without persistence, or a "
	              "failover to an empty replica?); `spate checkpoint reset` starts over deliberately",
	              r->name, what, ek, r->epoch);
}

/* ---- open and close ------------------------------------------------------------------ */

static int parse_uri(rstore_t *r, const char *arg, char *errstr, size_t size)
{
	/* arg is the whole URI (sp_split_uri keeps "scheme://..."): redis[s]://[user:password@]host:port[/db] */
	r->tls = !strncmp(arg, "rediss://", 9);
	if (strncmp(arg, "redis://", 8) && !r->tls)
		return sp_err(errstr, size, SPATE_ERR_INVALID,
		              "store: redis needs a URI: store=redis://[user:password@]host:port[/db] (rediss:// "
		              "for TLS)");
	const char *scheme = r->tls ? "rediss" : "redis";
	const char *s = arg + strlen(scheme) + 3;
	const char *at = strrchr(s, '@');
	if (at) {
		const char *colon = memchr(s, ':', (size_t)(at - s));
		if (colon) {
			snprintf(r->user, sizeof(r->user), "%.*s", (int)(colon - s), s);
			snprintf(r->pass, sizeof(r->pass), "%.*s", (int)(at - colon - 1), colon + 1);
		} else {
			snprintf(r->pass, sizeof(r->pass), "%.*s", (int)(at - s), s);
		}
		s = at + 1;
	}
	const char *slash = strchr(s, '/');
	size_t hl = slash ? (size_t)(slash - s) : strlen(s);
	char hp[300];
	if (hl == 0 || hl >= sizeof(hp))
		return sp_err(errstr, size, SPATE_ERR_INVALID, "store: %s://: no host:port", scheme);
	memcpy(hp, s, hl);
	hp[hl] = 0;
	char *pc = strrchr(hp, ':');
	char *end = NULL;
	long port = 6379;
	if (pc) {
		*pc = 0;
		errno = 0;
		port = strtol(pc + 1, &end, 10);
		if (errno || !*(pc + 1) || *end || port < 1 || port > 65535)
			return sp_err(errstr, size, SPATE_ERR_INVALID, "store: %s://%s: bad port \"%s\"",
			              scheme, hp, pc + 1);
	}
	snprintf(r->host, sizeof(r->host), "%s", hp);
	r->port = (int)port;
	if (slash && slash[1]) {
		errno = 0;
		long db = strtol(slash + 1, &end, 10);
		if (errno || *end || db < 0 || db > 65535)
			return sp_err(errstr, size, SPATE_ERR_INVALID,
			              "store: %s://%s:%d: bad database \"%s\"", scheme, r->host, r->port,
			              slash + 1);
		r->db = (int)db;
	}
	snprintf(r->name, sizeof(r->name), "%s://%s:%d/%d", scheme, r->host, r->port, r->db);
	return SPATE_OK;
}

static int rs_open_common(sp_store_t *s, bool readonly, char *errstr, size_t size)
{
	rstore_t *r = calloc(1, sizeof(*r));
	if (!r)
		return sp_err(errstr, size, SPATE_ERR_NOMEM, "out of memory");
	int rc = parse_uri(r, s->arg ? s->arg : "", errstr, size);
	if (rc) {
		free(r);
		return rc;
	}
	const spate_conf_t *conf = ls_conf_of(s);
	r->timeout_ms = conf ? sp_conf_int(conf, "redis.timeout.ms") : 2000;
	if (r->timeout_ms <= 0)
		r->timeout_ms = 2000;
	if (conf) {
		snprintf(r->ca, sizeof(r->ca), "%s", sp_conf_str(conf, "redis.tls.ca"));
		snprintf(r->cert, sizeof(r->cert), "%s", sp_conf_str(conf, "redis.tls.cert"));
		snprintf(r->key, sizeof(r->key), "%s", sp_conf_str(conf, "redis.tls.key"));
	}
	if (!r->tls && (r->ca[0] || r->cert[0] || r->key[0])) {
		rc = sp_err(errstr, size, SPATE_ERR_INVALID,
		            "store %s: redis.tls.%s is set but the store is not TLS: name it rediss://", r->name,
		            r->ca[0] ? "ca" : r->cert[0] ? "cert" : "key");
		free(r);
		return rc;
	}
	const char *ns = s->ns ? s->ns : s->eng ? sp_engine_pipeline_name(s->eng) : "pipeline";
	snprintf(r->ns, sizeof(r->ns), "%s", ns);
	if ((rc = rs_connect(r, errstr, size))) {
		free(r);
		return rc;
	}
	char ek[RS_KEY_MAX];
	rs_epoch_key(r, ek, sizeof(ek));
	if (!readonly) {
		char fresh[40];
		ls_new_epoch(fresh, sizeof(fresh));
		const char *argv[] = {"SET", ek, fresh, "NX"};
		size_t lens[] = {3, strlen(ek), strlen(fresh), 2};
		redisReply *rep = rs_cmd(r, 4, argv, lens, errstr, size);
		if (!rep) {
			rs_close_conn(r);
			free(r);
			return SPATE_ERR_STORE;
		}
		freeReplyObject(rep);
	}
	const char *gv[] = {"GET", ek};
	size_t gl[] = {3, strlen(ek)};
	redisReply *rep = rs_cmd(r, 2, gv, gl, errstr, size);
	if (!rep) {
		rs_close_conn(r);
		free(r);
		return SPATE_ERR_STORE;
	}
	if (rep->type == REDIS_REPLY_STRING)
		snprintf(r->epoch, sizeof(r->epoch), "%s", rep->str);
	freeReplyObject(rep);
	s->ctx = r;
	ls_audit_open(s, r->name, r->ns, r->epoch);
	return SPATE_OK;
}

static int rs_open(sp_store_t *s, char *errstr, size_t size)
{
	return rs_open_common(s, false, errstr, size);
}

static int rs_open_readonly(sp_store_t *s, char *errstr, size_t size)
{
	return rs_open_common(s, true, errstr, size);
}

static void rs_close(sp_store_t *s)
{
	rstore_t *r = s->ctx;
	if (!r)
		return;
	rs_close_conn(r);
	memset(r->pass, 0, sizeof(r->pass));
	free(r);
	s->ctx = NULL;
}

/* ---- checkpoints --------------------------------------------------------------------- */

static int rs_epoch(sp_store_t *s, char *errstr, size_t size)
{
	rstore_t *r = s->ctx;
	char ek[RS_KEY_MAX];
	rs_epoch_key(r, ek, sizeof(ek));
	const char *gv[] = {"GET", ek};
	size_t gl[] = {3, strlen(ek)};
	redisReply *rep = rs_cmd(r, 2, gv, gl, errstr, size);
	if (!rep)
		return SPATE_ERR_STORE;
	int rc = SPATE_OK;
	if (rep->type != REDIS_REPLY_STRING)
		rc = lost_err(r, errstr, size, "the epoch marker is gone");
	else if (strcmp(rep->str, r->epoch))
		rc = lost_err(r, errstr, size, "the epoch marker changed");
	freeReplyObject(rep);
	return rc;
}

static int rs_load(sp_store_t *s, const char *name, sp_ckpt_t *out, char *errstr, size_t size)
{
	rstore_t *r = s->ctx;
	char key[RS_KEY_MAX];
	rs_key(r, name, key, sizeof(key));
	const char *argv[] = {"HGET", key, "ckpt"};
	size_t lens[] = {4, strlen(key), 4};
	redisReply *rep = rs_cmd(r, 3, argv, lens, errstr, size);
	if (!rep)
		return SPATE_ERR_STORE;
	int rc = SPATE_OK;
	if (rep->type != REDIS_REPLY_STRING || !rep->len)
		rc = sp_err(errstr, size, SPATE_ERR_NOT_FOUND, "redis store %s: no checkpoint for %s",
		            r->name, name);
	else if (sp_ckpt_parse(rep->str, out))
		rc = sp_err(errstr, size, SPATE_ERR_CORRUPT,
		            "redis store %s: %s: field ckpt holds \"%.80s\", not a checkpoint", r->name, key,
		            rep->str);
	freeReplyObject(rep);
	return rc;
}

static int rs_save(sp_store_t *s, const sp_store_entry_t *ents, size_t n, char *errstr, size_t size)
{
	rstore_t *r = s->ctx;
	int first = SPATE_OK;
	for (size_t i = 0; i < n; i++) {
		const sp_store_entry_t *e = &ents[i];
		char err[600] = "";
		int rc;
		if (!e->owner || !e->owner[0]) {
			rc = sp_err(err, sizeof(err), SPATE_ERR_INVALID,
			            "redis store %s: a checkpoint of %s without a lease (the redis store "
			            "writes only under "
			            "a lease: run the source in lease mode)",
			            r->name, e->name);
		} else {
			char key[RS_KEY_MAX], tok[24], ck[SPATE_POSITION_MAX], cmp[160];
			rs_key(r, e->name, key, sizeof(key));
			snprintf(tok, sizeof(tok), "%" PRIu64, e->counter);
			sp_ckpt_fmt(&e->ckpt, ck, sizeof(ck));
			ls_ckpt_hex(&e->ckpt, "", cmp, sizeof(cmp));
			const char *args[] = {e->owner, tok, r->epoch, ck, cmp};
			redisReply *rep = rs_eval(r, LUA_CKPT, key, 5, args, err, sizeof(err));
			if (!rep) {
				rc = SPATE_ERR_STORE;
			} else {
				long long v = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -9;
				freeReplyObject(rep);
				if (v == 1)
					rc = SPATE_OK;
				else if (v == 0)
					rc = sp_err(err, sizeof(err), SPATE_ERR_LEASE,
					            "redis store %s: checkpoint of %s refused: owner %s "
					            "counter %" PRIu64 " no longer holds its lease",
					            r->name, e->name, e->owner, e->counter);
				else if (v == -2)
					rc = lost_err(r, err, sizeof(err),
					              "a leased partition's hash vanished or changed epoch");
				else if (v == -3)
					rc = sp_err(err, sizeof(err), SPATE_ERR_INVALID,
					            "redis store %s: checkpoint of %s refused: %s is before "
					            "the stored one",
					            r->name, e->name, ck);
				else
					rc = sp_err(err, sizeof(err), SPATE_ERR_STORE,
					            "redis store %s: unexpected script reply", r->name);
			}
		}
		if (e->rc)
			*e->rc = rc;
		if (rc && first == SPATE_OK) {
			first = rc;
			sp_err(errstr, size, rc, "%s", err);
		}
	}
	return first;
}

/* Every partition hash of the namespace (SCAN): fn per key. */
static int rs_scan(rstore_t *r, int (*fn)(void *arg, const char *key, const char *name), void *arg,
                   char *errstr, size_t size)
{
	char pat[RS_KEY_MAX];
	snprintf(pat, sizeof(pat), "spate:%s:{*}", r->ns);
	size_t pre = strlen("spate:") + strlen(r->ns) + 2;
	char cursor[32] = "0";
	do {
		const char *argv[] = {"SCAN", cursor, "MATCH", pat, "COUNT", "1000"};
		size_t lens[6];
		for (int i = 0; i < 6; i++)
			lens[i] = strlen(argv[i]);
		redisReply *rep = rs_cmd(r, 6, argv, lens, errstr, size);
		if (!rep)
			return SPATE_ERR_STORE;
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2) {
			freeReplyObject(rep);
			return sp_err(errstr, size, SPATE_ERR_STORE, "redis store %s: unexpected SCAN reply",
			              r->name);
		}
		snprintf(cursor, sizeof(cursor), "%s", rep->element[0]->str);
		redisReply *keys = rep->element[1];
		for (size_t i = 0; i < keys->elements; i++) {
			const char *k = keys->element[i]->str;
			size_t kl = strlen(k);
			if (kl < pre + 1)
				continue;
			char name[RS_KEY_MAX];
			snprintf(name, sizeof(name), "%.*s", (int)(kl - pre - 1), k + pre);
			int rc = fn(arg, k, name);
			if (rc) {
				freeReplyObject(rep);
				return rc;
			}
		}
		freeReplyObject(rep);
	} while (strcmp(cursor, "0"));
	return SPATE_OK;
}

struct list_ctx {
	rstore_t *r;
	void (*fn)(void *arg, const sp_store_entry_t *ent);
	void (*lfn)(void *arg, const sp_lease_t *l);
	void *arg;
	char *errstr;
	size_t size;
};

static int list_one(void *arg, const char *key, const char *name)
{
	struct list_ctx *lc = arg;
	redisReply *rep = rs_eval(lc->r, LUA_LIST, key, 0, NULL, lc->errstr, lc->size);
	if (!rep)
		return SPATE_ERR_STORE;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 4) {
		freeReplyObject(rep);
		return SPATE_OK; /* gone meanwhile */
	}
	sp_lease_t l;
	memset(&l, 0, sizeof(l));
	l.name = name;
	snprintf(l.owner, sizeof(l.owner), "%s", rep->element[0]->str ? rep->element[0]->str : "");
	l.counter = strtoull(rep->element[1]->str ? rep->element[1]->str : "0", NULL, 10);
	l.expired = (int)rep->element[2]->integer;
	const char *ck = rep->element[3]->str;
	if (ck && *ck && !sp_ckpt_parse(ck, &l.ckpt))
		l.has_ckpt = true;
	if (rep->elements > 4 && rep->element[4]->str)
		snprintf(l.parents, sizeof(l.parents), "%s", rep->element[4]->str);
	freeReplyObject(rep);
	ls_deliver(lc->fn, lc->lfn, lc->arg, &l);
	return SPATE_OK;
}

static int rs_list(sp_store_t *s, void (*fn)(void *arg, const sp_store_entry_t *ent), void *arg, char *errstr,
                   size_t size)
{
	struct list_ctx lc = {s->ctx, fn, NULL, arg, errstr, size};
	return rs_scan(s->ctx, list_one, &lc, errstr, size);
}

static int rs_lease_list(sp_store_t *s, void (*fn)(void *arg, const sp_lease_t *l), void *arg, char *errstr,
                         size_t size)
{
	struct list_ctx lc = {s->ctx, NULL, fn, arg, errstr, size};
	return rs_scan(s->ctx, list_one, &lc, errstr, size);
}

static int del_one(void *arg, const char *key, const char *name)
{
	struct list_ctx *lc = arg;
	const char *argv[] = {"DEL", key};
	size_t lens[] = {3, strlen(key)};
	redisReply *rep = rs_cmd(lc->r, 2, argv, lens, lc->errstr, lc->size);
	if (!rep)
		return SPATE_ERR_STORE;
	freeReplyObject(rep);
	return SPATE_OK;
}

static int rs_reset(sp_store_t *s, const char *name, char *errstr, size_t size)
{
	rstore_t *r = s->ctx;
	if (name) {
		char key[RS_KEY_MAX];
		rs_key(r, name, key, sizeof(key));
		const char *argv[] = {"DEL", key};
		size_t lens[] = {3, strlen(key)};
		redisReply *rep = rs_cmd(r, 2, argv, lens, errstr, size);
		if (!rep)
			return SPATE_ERR_STORE;
		long long n = rep->integer;
		freeReplyObject(rep);
		if (!n)
			return sp_err(errstr, size, SPATE_ERR_NOT_FOUND,
			              "redis store %s: no checkpoint for partition %s", r->name, name);
		return SPATE_OK;
	}
	struct list_ctx lc = {r, NULL, NULL, NULL, errstr, size};
	int rc = rs_scan(r, del_one, &lc, errstr, size);
	if (rc)
		return rc;
	/* a new epoch: processes still running against the old one stop */
	ls_new_epoch(r->epoch, sizeof(r->epoch));
	char ek[RS_KEY_MAX];
	rs_epoch_key(r, ek, sizeof(ek));
	const char *argv[] = {"SET", ek, r->epoch};
	size_t lens[] = {3, strlen(ek), strlen(r->epoch)};
	redisReply *rep = rs_cmd(r, 3, argv, lens, errstr, size);
	if (!rep)
		return SPATE_ERR_STORE;
	freeReplyObject(rep);
	return SPATE_OK;
}

/* ---- leases -------------------------------------------------------------------------- */

static int rs_acquire(sp_store_t *s, const char *name, const char *owner, const sp_lease_t *seen, bool steal,
                      int64_t timeout_ms, sp_lease_t *out, char *errstr, size_t size)
{
	rstore_t *r = s->ctx;
	char key[RS_KEY_MAX], tok[24], tmo[24];
	rs_key(r, name, key, sizeof(key));
	snprintf(tok, sizeof(tok), "%" PRIu64, seen ? seen->counter : 0);
	snprintf(tmo, sizeof(tmo), "%" PRId64, timeout_ms);
	const char *args[] = {owner,    seen ? seen->owner : "",  tok, steal ? "1" : "0", tmo,
	                      r->epoch, seen ? seen->parents : ""};
	redisReply *rep = rs_eval(r, LUA_ACQUIRE, key, 7, args, errstr, size);
	if (!rep)
		return SPATE_ERR_STORE;
	int rc;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1) {
		rc =
		    sp_err(errstr, size, SPATE_ERR_STORE, "redis store %s: unexpected script reply", r->name);
	} else if (rep->element[0]->integer == 1 && rep->elements == 3) {
		memset(out, 0, sizeof(*out));
		out->name = name;
		snprintf(out->owner, sizeof(out->owner), "%s", owner);
		out->counter = (uint64_t)rep->element[1]->integer;
		out->expired = 0;
		const char *ck = rep->element[2]->str;
		out->has_ckpt = ck && *ck && !sp_ckpt_parse(ck, &out->ckpt);
		rc = SPATE_OK;
	} else if (rep->element[0]->integer == -2) {
		rc = lost_err(r, errstr, size, "a partition's hash holds another epoch");
	} else {
		rc = sp_err(errstr, size, SPATE_ERR_LEASE,
		            "redis store %s: lease of %s not taken: it changed meanwhile", r->name, name);
	}
	freeReplyObject(rep);
	return rc;
}

/* renew and release: one checked script; 1, 0, -2 */
static int rs_checked(rstore_t *r, const char *script, const char *what, const char *name, const char *owner,
                      uint64_t counter, int64_t timeout_ms, char *errstr, size_t size)
{
	char key[RS_KEY_MAX], tok[24], tmo[24];
	rs_key(r, name, key, sizeof(key));
	snprintf(tok, sizeof(tok), "%" PRIu64, counter);
	snprintf(tmo, sizeof(tmo), "%" PRId64, timeout_ms);
	const char *args[] = {owner, tok, r->epoch, tmo};
	redisReply *rep = rs_eval(r, script, key, timeout_ms >= 0 ? 4 : 3, args, errstr, size);
	if (!rep)
		return SPATE_ERR_STORE;
	long long v = rep->type == REDIS_REPLY_INTEGER ? rep->integer : -9;
	freeReplyObject(rep);
	if (v == 1)
		return SPATE_OK;
	if (v == 0)
		return sp_err(errstr, size, SPATE_ERR_LEASE,
		              "redis store %s: %s of %s refused: owner %s counter %" PRIu64
		              " no longer holds the lease",
		              r->name, what, name, owner, counter);
	if (v == -2)
		return lost_err(r, errstr, size, "a leased partition's hash vanished or changed epoch");
	return sp_err(errstr, size, SPATE_ERR_STORE, "redis store %s: unexpected script reply", r->name);
}

static int rs_renew(sp_store_t *s, const char *name, const char *owner, uint64_t *counter, int64_t timeout_ms,
                    char *errstr, size_t size)
{
	return rs_checked(s->ctx, LUA_RENEW, "renewal", name, owner, *counter, timeout_ms, errstr, size);
}

static int rs_release(sp_store_t *s, const char *name, const char *owner, uint64_t counter, char *errstr,
                      size_t size)
{
	return rs_checked(s->ctx, LUA_RELEASE, "release", name, owner, counter, -1, errstr, size);
}

static const sp_opt_t redis_opts[] = {
    {"redis.timeout.ms", SP_OPT_INT, 1, 600000, NULL, "2000",
     "Redis store: connect and command timeout (a command that times out is retried until the lease "
     "deadline)"},
    {"redis.tls.ca", SP_OPT_STR, 0, 0, NULL, "",
     "Redis store over TLS (rediss://): the CA certificates (a PEM file) the server's certificate must chain "
     "to; unset: the system's"},
    {"redis.tls.cert", SP_OPT_STR, 0, 0, NULL, "",
     "Redis store over TLS: this client's certificate chain (a PEM file), for a server that asks for one "
     "(tls-auth-clients)"},
    {"redis.tls.key", SP_OPT_STR, 0, 0, NULL, "",
     "Redis store over TLS: the private key (a PEM file) of redis.tls.cert"},
    {NULL, 0, 0, 0, NULL, NULL, NULL},
};

/* what redis:// and rediss:// share: everything but the scheme (the open reads it) */
#define RS_OPS                                                                                               \
	.version = SP_STORE_OPS_VERSION, .open = rs_open, .load = rs_load, .save = rs_save, .list = rs_list,    \
	.reset = rs_reset, .close = rs_close, .open_readonly = rs_open_readonly, .leases = true,                \
	.epoch = rs_epoch, .lease_list = rs_lease_list, .lease_acquire = rs_acquire, .lease_renew = rs_renew,  \
	.lease_release = rs_release

const sp_store_ops_t sp_store_redis = {
    RS_OPS,
    .name = "redis",
    .desc =
        "redis://[user:password@]host:port[/db] - leases and checkpoints in Redis, shared by many processes",
    .opts = redis_opts, /* the redis.* keys of both */
    .syntax = "redis://[user:password@]host:port[/db]",
};

const sp_store_ops_t sp_store_rediss = {
    RS_OPS,
    .name = "rediss",
    .desc = "rediss://[user:password@]host:port[/db] - the redis store over TLS (redis.tls.ca, redis.tls.cert, "
            "redis.tls.key)",
    .syntax = "rediss://[user:password@]host:port[/db]",
};
