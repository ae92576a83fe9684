/* SPDX-License-Identifier: Apache-2.0 */
/* main.c -- kbridged's command line: run the daemon in the foreground (or,
 * with processes > 1, the supervisor of its worker processes), check a
 * config file, hash a password for auth.users, print the config
 * reference, version or help.
 * Exit codes: 0 clean, 1 start-up or runtime failure, 2 usage or invalid config. */
#include <event2/event.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "adapter.h"
#include "config.h"
#include "definitions_store.h"
#include "http.h"
#include "log.h"
#include "password.h"
#include "server.h"
#include "supervisor.h"
#include "tls.h"
#include "version.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#define DEFAULT_CONFIG_PATH SYSCONFDIR "/kbridge/kbridge.yaml"

static void usage(FILE *out)
{
    char protocols[256];
    adapter_registry_names(adapter_registry_builtin(), protocols, sizeof(protocols));
    fprintf(out,
            "Usage: kbridged [-c FILE]\n"
            "       kbridged --check-config FILE\n"
            "       kbridged --hash-password < PASSWORD\n"
            "       kbridged --config-reference | --version | --help\n"
            "\n"
            "kbridged bridges STOMP, AMQP 1.0 and AMQP 0-9-1 clients to Apache Kafka.\n"
            "It runs in the foreground and logs to stderr.\n"
            "\n"
            "  -c, --config FILE       configuration file (default " DEFAULT_CONFIG_PATH ")\n"
            "      --check-config FILE validate FILE (and its TLS files) and exit: 0 valid,\n"
            "                          2 invalid\n"
            "      --hash-password     read a password (one line) from stdin, print its\n"
            "                          yescrypt hash for auth.users[].password_hash\n"
            "      --config-reference  print every configuration key (Markdown) and exit\n"
            "  -V, --version           print the version and exit\n"
            "  -h, --help              print this help and exit\n"
            "\n"
            "Signals: SIGHUP reloads users, ACLs, limits, log settings and TLS certificates;\n"
            "SIGTERM or SIGINT drains (stop accepting, wait for Kafka to confirm) and exits 0.\n"
            "With processes: N > 1 this process supervises N workers and passes them on.\n"
            "\n"
            "Protocols a listener may serve (listeners.NAME.protocols): %s; and %s,\n"
            "the operations endpoint.\n",
            protocols, OPS_HTTP_PROTOCOL);
}

/* --hash-password: one line from stdin (not echoed on a terminal), its
 * yescrypt hash on stdout. */
static int main_hash_password(void)
{
    struct termios saved;
    bool terminal = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (terminal) {
        struct termios quiet = saved;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        fprintf(stderr, "Password: ");
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    }
    char *line = NULL;
    size_t size = 0;
    ssize_t len = getline(&line, &size, stdin);
    if (terminal) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
        fprintf(stderr, "\n");
    }
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = '\0';
    int code = 0;
    char hash[256], err[256];
    if (len <= 0) {
        fprintf(stderr, "kbridged: --hash-password: no password on stdin\n");
        code = 2;
    } else if (password_hash_new(line, hash, sizeof(hash), err, sizeof(err)) < 0) {
        fprintf(stderr, "kbridged: --hash-password: %s\n", err);
        code = 1;
    } else {
        printf("%s\n", hash);
    }
    if (line) {
        explicit_bzero(line, size);
        free(line);
    }
    return code;
}

/* --check-config: every TLS listener's files load (cert, key, CA, ciphers). */
static int main_check_tls(const struct config *config, char *err, size_t err_size)
{
    for (size_t i = 0; i < config->listener_count; i++) {
        if (!tls_configured(&config->listeners[i]))
            continue;
        struct tls_context *tls = tls_context_new(&config->listeners[i], NULL, err, err_size);
        if (!tls)
            return -1;
        tls_context_free(tls);
    }
    return 0;
}

static int main_run(const char *check_path, const char *config_path, bool reference,
                    const struct adapter_registry *adapters,
                    const struct config_section *const *sections, size_t section_count);

int main(int argc, char **argv)
{
    enum { OPT_CHECK_CONFIG = 256, OPT_CONFIG_REFERENCE, OPT_HASH_PASSWORD };
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", required_argument, NULL, OPT_CHECK_CONFIG},
        {"config-reference", no_argument, NULL, OPT_CONFIG_REFERENCE},
        {"hash-password", no_argument, NULL, OPT_HASH_PASSWORD},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = DEFAULT_CONFIG_PATH;
    const char *check_path = NULL;
    bool reference = false;
    bool hash_password = false;
    opterr = 0;
    int option;
    while ((option = getopt_long(argc, argv, ":c:Vh", options, NULL)) != -1) {
        switch (option) {
        case 'c': config_path = optarg; break;
        case OPT_CHECK_CONFIG: check_path = optarg; break;
        case OPT_CONFIG_REFERENCE: reference = true; break;
        case OPT_HASH_PASSWORD: hash_password = true; break;
        case 'V': printf("kbridged %s\n", KBRIDGE_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        case ':':
            fprintf(stderr, "kbridged: option '%s' needs a value; see kbridged --help\n",
                    argv[optind - 1]);
            return 2;
        default:
            fprintf(stderr, "kbridged: unknown option '%s'; see kbridged --help\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kbridged: unexpected argument '%s'; see kbridged --help\n", argv[optind]);
        return 2;
    }
    if (hash_password)
        return main_hash_password();

    const struct adapter_registry *adapters = adapter_registry_builtin();
    /* the built-in adapters' own config sections ("stomp: ...") */
    const struct config_section **sections =
        calloc(adapters->count ? adapters->count : 1, sizeof(*sections));
    if (!sections) {
        fprintf(stderr, "kbridged: out of memory\n");
        return 1;
    }
    size_t section_count = adapter_registry_config_sections(adapters, sections);
    int code = main_run(check_path, config_path, reference, adapters, sections, section_count);
    free(sections);
    return code;
}

/* What main does once the options are read; exit code as main's. */
static int main_run(const char *check_path, const char *config_path, bool reference,
                    const struct adapter_registry *adapters,
                    const struct config_section *const *sections, size_t section_count)
{
    char err[1024];
    struct config *config = NULL;
    if (reference) {
        config_write_reference(stdout, sections, section_count);
        return 0;
    }
    if (check_path) {
        if (config_load_sections(check_path, sections, section_count, &config, err, sizeof(err)) <
            0) {
            fprintf(stderr, "kbridged: invalid configuration: %s\n", err);
            return 2;
        }
        if (server_check_listeners(config, adapters, err, sizeof(err)) < 0 ||
            main_check_tls(config, err, sizeof(err)) < 0) {
            fprintf(stderr, "kbridged: invalid configuration: %s: %s\n", check_path, err);
            config_free(config);
            return 2;
        }
        if (supervisor_check_config(config, supervisor_process_count(config), err, sizeof(err)) <
            0) {
            fprintf(stderr, "kbridged: invalid configuration: %s: %s\n", check_path, err);
            config_free(config);
            return 2;
        }
        if (config->definitions.file &&
            definitions_file_check(config->definitions.file, err, sizeof(err)) < 0) {
            fprintf(stderr, "kbridged: invalid configuration: %s: definitions.file: %s\n",
                    check_path, err);
            config_free(config);
            return 2;
        }
        config_free(config);
        printf("%s: configuration is valid\n", check_path);
        return 0;
    }

    if (config_load_sections(config_path, sections, section_count, &config, err, sizeof(err)) < 0) {
        fprintf(stderr, "kbridged: invalid configuration: %s\n", err);
        return 2;
    }
    /* processes > 1: fork the workers now, before any thread or Kafka handle
     * exists; this process goes on as the supervisor (supervisor.c). */
    uint32_t processes = supervisor_process_count(config);
    if (supervisor_check_config(config, processes, err, sizeof(err)) < 0 ||
        (processes > 1 && server_check_listeners(config, adapters, err, sizeof(err)) < 0)) {
        fprintf(stderr, "kbridged: invalid configuration: %s: %s\n", config_path, err);
        config_free(config);
        return 2;
    }
    config->processes = processes;
    if (processes > 1) {
        struct config *worker_config = NULL;
        int code = supervisor_run(config, processes, &worker_config);
        if (!worker_config)
            return code;
        config = worker_config; /* this process is a worker: run the node */
    }
    struct server *server = server_new(config, adapters, err, sizeof(err));
    supervisor_worker_serving(); /* a worker: signals passed on meanwhile arrive now */
    if (!server) {
        log_error("server", "cannot start: %s", err);
        libevent_global_shutdown();
        return 1;
    }
    int code = server_run(server);
    server_free(server);
    log_info("server", "stopped");
    libevent_global_shutdown();
    return code;
}
