/* http.c - the I/O thread of an AWS JSON-protocol client (the Kinesis connector, the
 * DynamoDB store): libcurl's multi-socket interface driven from an io_uring loop.
 *
 * One thread per connection object (the source has one, the sink another) serves every
 * request: socket readiness is a POLL_ADD request in the ring for each socket libcurl
 * asks about (one-shot, re-armed after libcurl has acted on it; a change of interest
 * cancels the old poll), libcurl's timer is the deadline of the ring's wait, and a read
 * of an eventfd in the ring wakes the thread for new requests. libcurl keeps the
 * connections alive and reuses them, signs each request (CURLOPT_AWS_SIGV4) and speaks
 * TLS. The thread only moves bytes: a finished request goes back through its done
 * callback, which only queues it; parsing (JSON, base64, KPL) happens on the thread that
 * takes it (the engine thread for the source, a worker for the sink), so a large reply
 * never stalls this loop.
 *
 * @locality kin_http_submit and kin_http_call from any thread; everything else here runs
 * on the I/O thread.
 */
#include "aws.h"

#include <curl/curl.h>
#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Ring entries: polls of the sockets in use (at most KIN_MAX_CONNS, each maybe with a
 * cancelled one still in flight) and the eventfd read. */
#define KIN_RING_ENTRIES 256

/* One socket libcurl watches (curl_multi_assign'ed). */
typedef struct ksock {
	curl_socket_t fd;
	int want;           /* POLLIN / POLLOUT */
	struct ktok *armed; /* the poll in the ring, or NULL */
	bool removed;       /* libcurl is done with it: freed at the end of the turn */
	struct ksock *next; /* the live list, then the removed list */
	struct ksock *prev;
} ksock_t;

/* The user_data of one POLL_ADD; s is NULL once the poll was cancelled or orphaned. */
typedef struct ktok {
	ksock_t *s;
	int events;
} ktok_t;

struct kin_http {
	const kin_aws_t *aws;
	CURLM *multi;
	struct io_uring ring;
	bool ring_ok;
	int evfd;
	uint64_t evbuf;
	pthread_t th;
	bool th_started;
	_Atomic bool stop;
	/* requests handed in, not yet taken by the thread (under mu) */
	pthread_mutex_t mu;
	pthread_cond_t cv; /* kin_http_call waits for its request here */
	kin_req_t *in_head, *in_tail;
	/* I/O thread only */
	int64_t timer_at; /* libcurl's deadline (monotonic ms), -1 none */
	ksock_t *live, *dead;
	kin_req_t *active; /* requests libcurl runs (linked by next / prev) */
	int ntok;          /* polls in the ring (their tokens not yet freed) */
	int running;
};

/* How long the thread waits for its cancelled polls to complete when it stops. */
#define KIN_DRAIN_MS 2000

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

kin_req_t *kin_req_new(const char *op, char *body, size_t len)
{
	kin_req_t *r = calloc(1, sizeof(*r));
	if (!r) {
		free(body);
		return NULL;
	}
	r->op = op;
	r->body = body;
	r->body_len = len;
	return r;
}

void kin_req_free(kin_req_t *r)
{
	if (!r)
		return;
	free(r->body);
	free(r->resp);
	free(r);
}

/* ---- the ring --------------------------------------------------------------------- */

static struct io_uring_sqe *get_sqe(kin_http_t *h)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&h->ring);
	if (!sqe) { /* full: hand what is queued to the kernel first */
		io_uring_submit(&h->ring);
		sqe = io_uring_get_sqe(&h->ring);
	}
	return sqe;
}

static void arm(kin_http_t *h, ksock_t *s)
{
	ktok_t *t = malloc(sizeof(*t));
	struct io_uring_sqe *sqe = t ? get_sqe(h) : NULL;
	if (!sqe) {
		free(t);
		return; /* libcurl's timeout ends the transfer; nothing hangs forever */
	}
	t->s = s;
	t->events = s->want;
	io_uring_prep_poll_add(sqe, s->fd, (unsigned)s->want);
	io_uring_sqe_set_data(sqe, t);
	s->armed = t;
	h->ntok++;
}

static void disarm(kin_http_t *h, ksock_t *s)
{
	if (!s->armed)
		return;
	struct io_uring_sqe *sqe = get_sqe(h);
	if (sqe) {
		io_uring_prep_cancel(sqe, s->armed, 0);
		io_uring_sqe_set_data(sqe, NULL);
	}
	s->armed->s = NULL; /* its completion frees it */
	s->armed = NULL;
}

static void arm_wake(kin_http_t *h)
{
	struct io_uring_sqe *sqe = get_sqe(h);
	if (!sqe)
		return;
	io_uring_prep_read(sqe, h->evfd, &h->evbuf, sizeof(h->evbuf), 0);
	io_uring_sqe_set_data(sqe, &h->evbuf);
}

/* ---- libcurl's callbacks ------------------------------------------------------------- */

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	kin_http_t *h = userp;
	ksock_t *s = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			disarm(h, s);
			s->removed = true;
			if (s->prev)
				s->prev->next = s->next;
			else
				h->live = s->next;
			if (s->next)
				s->next->prev = s->prev;
			s->next = h->dead;
			h->dead = s;
			curl_multi_assign(h->multi, fd, NULL);
		}
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;
		s->fd = fd;
		s->next = h->live;
		if (h->live)
			h->live->prev = s;
		h->live = s;
		curl_multi_assign(h->multi, fd, s);
	}
	int want = (what & CURL_POLL_IN ? POLLIN : 0) | (what & CURL_POLL_OUT ? POLLOUT : 0);
	if (s->armed && s->armed->events != want)
		disarm(h, s);
	s->want = want;
	if (!s->armed && want)
		arm(h, s);
	return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
	kin_http_t *h = userp;
	h->timer_at = timeout_ms < 0 ? -1 : sp_now_ms() + timeout_ms;
	return 0;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userp)
{
	kin_req_t *r = userp;
	size_t n = size * nmemb;
	if (r->resp_len + n + 1 > r->resp_cap) {
		size_t cap = r->resp_cap ? r->resp_cap : 16384;
		while (cap < r->resp_len + n + 1)
			cap *= 2;
		char *b = realloc(r->resp, cap);
		if (!b)
			return 0; /* libcurl fails the transfer (CURLE_WRITE_ERROR) */
		r->resp = b;
		r->resp_cap = cap;
	}
	memcpy(r->resp + r->resp_len, ptr, n);
	r->resp_len += n;
	r->resp[r->resp_len] = 0;
	return n;
}

/* ---- requests ----------------------------------------------------------------------- */

static void finish(kin_req_t *r, int rc)
{
	r->curl_rc = rc;
	r->done_ms = sp_now_ms();
	if (!r->resp) { /* a body, even empty, for the parsers */
		r->resp = calloc(1, 1);
		r->resp_cap = r->resp ? 1 : 0;
	}
	r->done(r);
}

static void start(kin_http_t *h, kin_req_t *r)
{
	CURL *e = curl_easy_init();
	char target[160], ctype[96];
	snprintf(target, sizeof(target), "X-Amz-Target: %s.%s", h->aws->target, r->op);
	snprintf(ctype, sizeof(ctype), "Content-Type: %s", h->aws->ctype);
	struct curl_slist *hd = NULL, *t;
	const char *lines[] = {ctype, target, "Expect:", h->aws->token_hdr[0] ? h->aws->token_hdr : NULL};
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		if (!lines[i])
			continue;
		t = curl_slist_append(hd, lines[i]);
		if (!t)
			break;
		hd = t;
	}
	if (!e || !hd) {
		if (e)
			curl_easy_cleanup(e);
		curl_slist_free_all(hd);
		snprintf(r->curl_err, sizeof(r->curl_err), "out of memory");
		finish(r, CURLE_OUT_OF_MEMORY);
		return;
	}
	char url[600];
	snprintf(url, sizeof(url), "%s/", h->aws->endpoint);
	r->easy = e;
	r->hdrs = hd;
	r->curl_err[0] = 0;
	r->sent_ms = sp_now_ms();
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hd);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
	curl_easy_setopt(e, CURLOPT_AWS_SIGV4, h->aws->sigv4);
	curl_easy_setopt(e, CURLOPT_USERPWD, h->aws->userpwd);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_err);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
	                 (long)(r->timeout_ms > 0 ? r->timeout_ms : KIN_REQUEST_TIMEOUT_MS));
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	                 (long)(r->timeout_ms > 0 && r->timeout_ms < KIN_CONNECT_TIMEOUT_MS
	                            ? r->timeout_ms
	                            : KIN_CONNECT_TIMEOUT_MS));
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* what libcurl can decode */
	CURLMcode mc = curl_multi_add_handle(h->multi, e);
	if (mc == CURLM_OK) {
		r->prev = NULL;
		r->next = h->active;
		if (h->active)
			h->active->prev = r;
		h->active = r;
	} else {
		r->easy = NULL;
		r->hdrs = NULL;
		curl_easy_cleanup(e);
		curl_slist_free_all(hd);
		snprintf(r->curl_err, sizeof(r->curl_err), "%s", curl_multi_strerror(mc));
		finish(r, CURLE_FAILED_INIT);
	}
}

static void unlink_active(kin_http_t *h, kin_req_t *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		h->active = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->next = r->prev = NULL;
}

/* Hand every finished transfer back. */
static void reap(kin_http_t *h)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(h->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURL *e = m->easy_handle;
		CURLcode rc = m->data.result;
		kin_req_t *r = NULL;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
		unlink_active(h, r);
		curl_multi_remove_handle(h->multi, e);
		curl_easy_cleanup(e);
		curl_slist_free_all(r->hdrs);
		r->easy = NULL;
		r->hdrs = NULL;
		if (rc != CURLE_OK && !r->curl_err[0])
			snprintf(r->curl_err, sizeof(r->curl_err), "%s", curl_easy_strerror(rc));
		finish(r, rc);
	}
}

static void take_new(kin_http_t *h)
{
	pthread_mutex_lock(&h->mu);
	kin_req_t *r = h->in_head;
	h->in_head = h->in_tail = NULL;
	pthread_mutex_unlock(&h->mu);
	while (r) {
		kin_req_t *next = r->next;
		r->next = NULL;
		start(h, r);
		r = next;
	}
}

static void free_dead(kin_http_t *h)
{
	while (h->dead) {
		ksock_t *s = h->dead;
		h->dead = s->next;
		free(s);
	}
}

static void *loop(void *arg)
{
	kin_http_t *h = arg;
	arm_wake(h);
	while (!atomic_load(&h->stop)) {
		struct io_uring_cqe *cqe = NULL;
		int64_t now = sp_now_ms();
		int rc;
		if (h->timer_at >= 0 && h->timer_at <= now) {
			h->timer_at = -1;
			curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &h->running);
			reap(h);
			free_dead(h);
			continue;
		}
		io_uring_submit(&h->ring);
		if (h->timer_at >= 0) {
			int64_t ms = h->timer_at - now;
			struct __kernel_timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
			rc = io_uring_wait_cqe_timeout(&h->ring, &cqe, &ts);
		} else {
			rc = io_uring_wait_cqe(&h->ring, &cqe);
		}
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EAGAIN) {
			/* the ring failed: fall back to a short sleep so libcurl's timeouts still run */
			struct timespec ts = {0, 10 * 1000000};
			nanosleep(&ts, NULL);
		}
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&h->ring, head, cqe)
		{
			seen++;
			void *ud = io_uring_cqe_get_data(cqe);
			int res = cqe->res;
			if (!ud)
				continue; /* a cancel's own completion */
			if (ud == &h->evbuf) {
				take_new(h);
				arm_wake(h);
				continue;
			}
			ktok_t *t = ud;
			ksock_t *s = t->s;
			free(t);
			h->ntok--;
			if (!s)
				continue; /* cancelled, or its socket was removed */
			s->armed = NULL;
			int ev = 0;
			if (res >= 0) {
				ev |= (res & POLLIN) ? CURL_CSELECT_IN : 0;
				ev |= (res & POLLOUT) ? CURL_CSELECT_OUT : 0;
				ev |= (res & (POLLERR | POLLHUP)) ? CURL_CSELECT_ERR : 0;
			} else {
				ev = CURL_CSELECT_ERR;
			}
			curl_multi_socket_action(h->multi, s->fd, ev, &h->running);
			if (!s->removed && !s->armed && s->want)
				arm(h, s); /* one-shot: watch it again */
		}
		io_uring_cq_advance(&h->ring, seen);
		reap(h);
		free_dead(h);
	}
	/* stopping: end what still runs, then wait for the ring's polls to complete so
	 * that every token is freed */
	take_new(h);
	while (h->active) {
		kin_req_t *r = h->active;
		unlink_active(h, r);
		curl_multi_remove_handle(h->multi, r->easy);
		curl_easy_cleanup(r->easy);
		curl_slist_free_all(r->hdrs);
		r->easy = r->hdrs = NULL;
		snprintf(r->curl_err, sizeof(r->curl_err), "the connection was closed");
		finish(r, CURLE_ABORTED_BY_CALLBACK);
	}
	for (ksock_t *s = h->live; s; s = s->next)
		disarm(h, s);
	io_uring_submit(&h->ring);
	int64_t until = sp_now_ms() + KIN_DRAIN_MS;
	while (h->ntok > 0 && sp_now_ms() < until) {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100 * 1000000};
		if (io_uring_wait_cqe_timeout(&h->ring, &cqe, &ts) < 0)
			continue;
		void *ud = io_uring_cqe_get_data(cqe);
		if (ud && ud != &h->evbuf) {
			free(ud);
			h->ntok--;
		}
		io_uring_cqe_seen(&h->ring, cqe);
	}
	return NULL;
}

/* ---- the object ----------------------------------------------------------------------- */

kin_http_t *kin_http_new(const kin_aws_t *a, char *errstr, size_t size)
{
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		sp_err(errstr, size, SPATE_ERR_SOURCE, "%s: libcurl: %s", a->endpoint,
		       curl_easy_strerror(curl_init_rc));
		return NULL;
	}
	kin_http_t *h = calloc(1, sizeof(*h));
	if (!h) {
		sp_err(errstr, size, SPATE_ERR_NOMEM, "%s: out of memory", a->endpoint);
		return NULL;
	}
	h->aws = a;
	h->evfd = -1;
	h->timer_at = -1;
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
	int rc = io_uring_queue_init(KIN_RING_ENTRIES, &h->ring, 0);
	if (rc < 0) {
		sp_err(errstr, size, SPATE_ERR_SOURCE, "%s: io_uring_queue_init: %s", a->endpoint,
		       strerror(-rc));
		goto fail;
	}
	h->ring_ok = true;
	h->evfd = eventfd(0, EFD_CLOEXEC);
	h->multi = curl_multi_init();
	if (h->evfd < 0 || !h->multi) {
		sp_err(errstr, size, SPATE_ERR_SOURCE, "%s: cannot set up the I/O loop: %s", a->endpoint,
		       h->evfd < 0 ? strerror(errno) : "curl_multi_init failed");
		goto fail;
	}
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)KIN_MAX_CONNS);
	if ((rc = pthread_create(&h->th, NULL, loop, h))) {
		sp_err(errstr, size, SPATE_ERR_SOURCE, "%s: cannot start the I/O thread: %s", a->endpoint,
		       strerror(rc));
		goto fail;
	}
	h->th_started = true;
	return h;
fail:
	kin_http_free(h);
	return NULL;
}

static void wake(kin_http_t *h)
{
	uint64_t one = 1;
	ssize_t w = write(h->evfd, &one, sizeof(one));
	(void)w; /* EAGAIN: the counter is non-zero, the thread wakes anyway */
}

void kin_http_submit(kin_http_t *h, kin_req_t *r)
{
	r->next = NULL;
	r->status = 0;
	r->curl_rc = 0;
	r->resp_len = 0;
	if (r->resp)
		r->resp[0] = 0;
	pthread_mutex_lock(&h->mu);
	if (h->in_tail)
		h->in_tail->next = r;
	else
		h->in_head = r;
	h->in_tail = r;
	pthread_mutex_unlock(&h->mu);
	wake(h);
}

static void sync_done(kin_req_t *r)
{
	kin_http_t *h = r->arg;
	pthread_mutex_lock(&h->mu);
	r->finished = true;
	pthread_cond_broadcast(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

void kin_http_call(kin_http_t *h, kin_req_t *r)
{
	r->done = sync_done;
	r->arg = h;
	r->finished = false;
	kin_http_submit(h, r);
	pthread_mutex_lock(&h->mu);
	while (!r->finished)
		pthread_cond_wait(&h->cv, &h->mu);
	pthread_mutex_unlock(&h->mu);
}

void kin_http_free(kin_http_t *h)
{
	if (!h)
		return;
	if (h->th_started) {
		atomic_store(&h->stop, true);
		wake(h);
		pthread_join(h->th, NULL);
	}
	if (h->multi)
		curl_multi_cleanup(h->multi);
	free_dead(h);
	while (h->live) {
		ksock_t *s = h->live;
		h->live = s->next;
		free(s);
	}
	if (h->ring_ok)
		io_uring_queue_exit(&h->ring);
	if (h->evfd >= 0)
		close(h->evfd);
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->cv);
	free(h);
}
