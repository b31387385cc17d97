/* cmds.h - the verbs of the `spate` command; each takes argv with argv[0] = the verb
 * and returns the process exit code. */
#ifndef SPATE_CLI_CMDS_H
#define SPATE_CLI_CMDS_H

int spate_cmd_run(int argc, char **argv);
int spate_cmd_config(int argc, char **argv);
int spate_cmd_log(int argc, char **argv);
int spate_cmd_produce(int argc, char **argv);
int spate_cmd_checkpoint(int argc, char **argv);
int spate_cmd_bench(int argc, char **argv);
int spate_cmd_top(int argc, char **argv);

/* Run the pipeline conf describes (consumes conf): signals, summary, summary.json.
 * Returns the exit code. */
struct spate_conf_s;
int spate_cli_run_conf(struct spate_conf_s *conf);
int spate_cmd_dlq(int argc, char **argv);

/* Read a config file of key=value lines (# comments) into conf. On an error prints
 * "FILE:LINE: message" naming the key and returns -1. Warns when the file holds a secret
 * and other users may read it. */
struct spate_conf_s;
int spate_cli_load_config(struct spate_conf_s *conf, const char *path);
/* Set kafka.NAME from each SPATE_KAFKA_NAME in the environment ('_' as '.', lower case).
 * 0, or -1 after printing the variable's name (never its value). */
int spate_cli_load_env(struct spate_conf_s *conf);
/* True when key (with val) is a secret: its name holds password, secret, token or .pem,
 * or val is a URI with user:password@. */
_Bool spate_cli_secret(const char *key, const char *val);
/* -X key=value into conf: 0, or -1 after printing why (naming the key, never a secret). */
int spate_cli_set_x(struct spate_conf_s *conf, const char *kv);
/* argv[*i] as a -X option ("-X key=value", moving *i past the value, or "-Xkey=value"):
 * 0 taken into conf, -1 refused (printed, naming the key), 1 not a -X option. */
int spate_cli_opt_x(struct spate_conf_s *conf, int argc, char **argv, int *i);
/* Warn (stderr) when -X key=val puts a secret on the command line. */
void spate_cli_warn_arg(const char *key, const char *val);

#endif
