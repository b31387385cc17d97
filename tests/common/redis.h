/* redis.h - a redis-server for the tests: started on a free 127.0.0.1 port with its files
 * in a fresh directory (AOF on, appendfsync always), stopped even when a test fails (the
 * child gets SIGKILL when the test process dies). */
#ifndef SPATE_TESTS_REDIS_H
#define SPATE_TESTS_REDIS_H

#include <stdbool.h>

typedef struct t_redis {
	int pid;
	int port;
	char dir[256];
	char uri[64]; /* redis://127.0.0.1:PORT */
	/* when set, the next (re)start passes --key-load-delay: microseconds per key it
	 * loads, so a restarted server answers LOADING for that long times its keys */
	int key_load_delay_us;
} t_redis_t;

/* Start redis-server (from PATH) and wait until it answers PING. Aborts the test when it
 * does not come up. */
void t_redis_start(t_redis_t *r);
/* SIGTERM (it writes its AOF and exits) and wait; then, when restart is set, start it
 * again on the same port and directory and wait until it has loaded its AOF (unless
 * key_load_delay_us is set: then until it answers). */
void t_redis_restart(t_redis_t *r, bool restart);
/* Stop it (SIGKILL when SIGTERM is not enough) and remove its directory. */
void t_redis_stop(t_redis_t *r);
/* Run a command (printf-style, hiredis' format) and return the integer or string reply
 * as a malloc'd string ("" for nil), or NULL on error. */
char *t_redis_cmd(const t_redis_t *r, const char *fmt, ...);

#endif
