/* dynalite.h - Criterion helpers for the DynamoDB store's tests: run dynalite (npm) as a
 * child process on a free port of 127.0.0.1, and call the DynamoDB API directly (libcurl)
 * to create, look at and empty tables.
 *
 * t_dynalite_start() runs `node tests/tools/dynalite.js NODE_MODULES` (the modules folder
 * in SPATE_KINESALITE_MODULES, set by tests/meson.build to the one scripts/deps.sh
 * installs kinesalite and dynalite into) with its stdin and stdout on pipes, and waits
 * for its "listening" line. If the test process dies, the pipe closes and dynalite exits;
 * it also gets SIGKILL with its parent (PR_SET_PDEATHSIG). Stop it in the suite's .fini
 * (t_dynalite_fini) so a failing test still stops it.
 *
 * Never skips: a missing node or dynalite fails the test, naming what to install. The
 * helpers fail with t_require (tests/common/engine.h), so they work off the main thread.
 */
#ifndef SPATE_TESTS_DYNALITE_H
#define SPATE_TESTS_DYNALITE_H

typedef struct t_dyn t_dyn_t;

/* Start dynalite and set the AWS_* variables of this process (inherited by the CLI) to
 * test credentials, AWS_REGION and AWS_ENDPOINT_URL_DYNAMODB to its endpoint. */
t_dyn_t *t_dynalite_start(void);
/* "http://127.0.0.1:PORT", valid until t_dynalite_stop. */
const char *t_dyn_endpoint(const t_dyn_t *d);
/* Stop it (stdin closed, SIGTERM, then SIGKILL after a bound). Frees d. */
void t_dynalite_stop(t_dyn_t *d);
/* Stop every dynalite still running in this process (Criterion .fini). */
void t_dynalite_fini(void);

/* Call op with the JSON body; returns the HTTP status (0: no reply) and the reply body
 * in *out (malloc'd, may be NULL). */
long t_dyn_call(const t_dyn_t *d, const char *op, const char *body, char **out);
/* t_dyn_call that must answer 200 (fails the test otherwise); the reply, malloc'd. */
char *t_dyn_ok(const t_dyn_t *d, const char *op, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Create a lease table (leaseKey HASH) and wait until it is ACTIVE. */
void t_dyn_create_table(const t_dyn_t *d, const char *table);
/* Delete every item of the table (Scan, DeleteItem): the table "loses its data". */
void t_dyn_empty_table(const t_dyn_t *d, const char *table);
/* The string attribute attr of the item leaseKey=key (malloc'd), or NULL when there is
 * no such item or attribute; numbers are returned as their digits. */
char *t_dyn_attr(const t_dyn_t *d, const char *table, const char *key, const char *attr);

#endif
