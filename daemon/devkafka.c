/* SPDX-License-Identifier: Apache-2.0 */
/* devkafka.c -- main() of kbridge-devkafka: a standalone in-memory Kafka
 * (librdkafka's mock cluster, through kafka_mock.h) for development and
 * tests. Prints the bootstrap list as the first stdout line, then answers
 * fault-injection commands read one per line from stdin with one line each
 * ("ok" or "error: ..."). Runs until SIGTERM or SIGINT, even after stdin is
 * closed. See docs/devkafka.md. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka_mock.h"
#include "log.h"
#include "version.h" /* KBRIDGE_VERSION: autoconf PACKAGE_VERSION, or "dev" */

#define PROGRAM "kbridge-devkafka"
#define LOG_COMPONENT "devkafka"
#define MAX_BROKERS 32
#define MAX_PARTITIONS 10000
#define COMMAND_LINE_MAX 4096

struct options {
    int brokers;
    int partitions;
    const char **topics; /* "NAME" or "NAME:PARTITIONS", from argv */
    int topic_count;
    enum log_level log_level;
};

/* Written by the signal handler, read by the main loop. */
static int signal_pipe[2] = {-1, -1};

static void usage(FILE *stream)
{
    fprintf(stream,
            "Usage: " PROGRAM " [OPTIONS]\n"
            "In-memory Kafka cluster (librdkafka mock) for development and tests.\n"
            "\n"
            "  --brokers N             number of brokers, 1..%d (default 1)\n"
            "  --partitions N          partitions of topics created by --topic or\n"
            "                          'topic create' without a count (default 4)\n"
            "  --topic NAME[:N]        create a topic at start (repeatable)\n"
            "  --log-level LEVEL       error, warn, info or debug (default info)\n"
            "  --help                  show this help and exit\n"
            "  --version               show the version and exit\n"
            "\n"
            "Prints the bootstrap servers as the first line on stdout, then reads\n"
            "commands from stdin, one per line, answering each with 'ok' or\n"
            "'error: ...':\n"
            "  broker ID|all down | broker ID|all up | broker ID|all rtt MS\n"
            "  errors REQUEST COUNT ERROR | clear REQUEST\n"
            "  topic create NAME [PARTITIONS [REPLICATION]]\n"
            "  leader TOPIC PARTITION BROKER|none\n"
            "  coordinator group|txn KEY BROKER\n"
            "  ping\n"
            "Runs until SIGTERM or SIGINT (closing stdin does not stop it).\n"
            "Data lives in memory only.\n",
            MAX_BROKERS);
}

static void on_signal(int signo)
{
    int saved_errno = errno;
    unsigned char byte = (unsigned char)signo;
    ssize_t ignored = write(signal_pipe[1], &byte, 1);
    (void)ignored;
    errno = saved_errno;
}

/* Self-pipe for SIGTERM/SIGINT; SIGPIPE ignored so a vanished reader of
 * stdout does not kill the cluster. 0 ok, -1 with err filled. */
static int setup_signals(char *err, size_t err_size)
{
    if (pipe(signal_pipe) != 0) {
        snprintf(err, err_size, "cannot create signal pipe: %s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        int flags = fcntl(signal_pipe[i], F_GETFL);
        if (flags < 0 || fcntl(signal_pipe[i], F_SETFL, flags | O_NONBLOCK) != 0 ||
            fcntl(signal_pipe[i], F_SETFD, FD_CLOEXEC) != 0) {
            snprintf(err, err_size, "cannot configure signal pipe: %s", strerror(errno));
            return -1;
        }
    }
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = on_signal;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGTERM, &action, NULL) != 0 || sigaction(SIGINT, &action, NULL) != 0) {
        snprintf(err, err_size, "cannot install signal handlers: %s", strerror(errno));
        return -1;
    }
    struct sigaction ignore;
    memset(&ignore, 0, sizeof(ignore));
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGPIPE, &ignore, NULL);
    return 0;
}

static void close_signal_pipe(void)
{
    for (int i = 0; i < 2; i++) {
        if (signal_pipe[i] >= 0)
            close(signal_pipe[i]);
        signal_pipe[i] = -1;
    }
}

static int parse_int_option(const char *flag, const char *value, int min, int max, int *out)
{
    char *end = NULL;
    errno = 0;
    long number = value && *value ? strtol(value, &end, 10) : 0;
    if (!value || !*value || errno != 0 || *end != '\0' || number < min || number > max) {
        fprintf(stderr, PROGRAM ": %s: '%s' is not a number in %d..%d\n", flag, value ? value : "",
                min, max);
        return -1;
    }
    *out = (int)number;
    return 0;
}

/* Parse argv into opts. Returns 0 to run, 1 when --help/--version were
 * handled, 2 on a usage error (already reported on stderr). */
static int parse_options(int argc, char **argv, struct options *opts)
{
    opts->brokers = 1;
    opts->partitions = 4;
    opts->topics = NULL;
    opts->topic_count = 0;
    opts->log_level = LOG_LEVEL_INFO;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(arg, "--version") == 0) {
            printf(PROGRAM " " KBRIDGE_VERSION "\n");
            return 1;
        }

        /* Options with a value: "--flag VALUE" or "--flag=VALUE". */
        static const char *const valued[] = {"--brokers", "--partitions", "--topic", "--log-level"};
        const char *flag = NULL;
        const char *value = NULL;
        for (size_t k = 0; k < sizeof(valued) / sizeof(valued[0]); k++) {
            size_t len = strlen(valued[k]);
            if (strcmp(arg, valued[k]) == 0) {
                flag = valued[k];
                if (i + 1 >= argc) {
                    fprintf(stderr, PROGRAM ": %s needs a value (see --help)\n", flag);
                    return 2;
                }
                value = argv[++i];
                break;
            }
            if (strncmp(arg, valued[k], len) == 0 && arg[len] == '=') {
                flag = valued[k];
                value = arg + len + 1;
                break;
            }
        }
        if (!flag) {
            if (arg[0] == '-')
                fprintf(stderr, PROGRAM ": unknown option '%s' (see --help)\n", arg);
            else
                fprintf(stderr, PROGRAM ": unexpected argument '%s' (see --help)\n", arg);
            return 2;
        }

        if (strcmp(flag, "--brokers") == 0) {
            if (parse_int_option(flag, value, 1, MAX_BROKERS, &opts->brokers) != 0)
                return 2;
        } else if (strcmp(flag, "--partitions") == 0) {
            if (parse_int_option(flag, value, 1, MAX_PARTITIONS, &opts->partitions) != 0)
                return 2;
        } else if (strcmp(flag, "--log-level") == 0) {
            if (log_level_parse(value, &opts->log_level) != 0) {
                fprintf(stderr, PROGRAM ": --log-level: '%s' is not error, warn, info or debug\n",
                        value);
                return 2;
            }
        } else { /* --topic */
            if (!*value || *value == ':') {
                fprintf(stderr, PROGRAM ": --topic: '%s' has no topic name\n", value);
                return 2;
            }
            const char **grown =
                realloc(opts->topics, (size_t)(opts->topic_count + 1) * sizeof(*opts->topics));
            if (!grown) {
                fprintf(stderr, PROGRAM ": out of memory\n");
                return 2;
            }
            opts->topics = grown;
            opts->topics[opts->topic_count++] = value;
        }
    }
    return 0;
}

/* Create the --topic topics; 0 ok, -1 after logging why. */
static int create_start_topics(struct kafka_mock *mock, const struct options *opts)
{
    for (int i = 0; i < opts->topic_count; i++) {
        char name[256];
        const char *spec = opts->topics[i];
        const char *colon = strrchr(spec, ':');
        int partitions = 0; /* the default */
        size_t name_len = colon ? (size_t)(colon - spec) : strlen(spec);
        if (name_len >= sizeof(name)) {
            log_error(LOG_COMPONENT, "--topic %s: topic name too long", spec);
            return -1;
        }
        memcpy(name, spec, name_len);
        name[name_len] = '\0';
        if (colon) {
            char *end = NULL;
            errno = 0;
            long number = strtol(colon + 1, &end, 10);
            if (!colon[1] || errno != 0 || *end != '\0' || number < 1 || number > MAX_PARTITIONS) {
                log_error(LOG_COMPONENT, "--topic %s: partitions '%s' is not a number in 1..%d",
                          spec, colon + 1, MAX_PARTITIONS);
                return -1;
            }
            partitions = (int)number;
        }
        char err[512];
        if (kafka_mock_topic_create(mock, name, partitions, err, sizeof(err)) != 0) {
            log_error(LOG_COMPONENT, "--topic %s: %s", spec, err);
            return -1;
        }
    }
    return 0;
}

/* Answer one stdin line (without its newline) unless it is blank or a comment. */
static void handle_line(struct kafka_mock *mock, char *line)
{
    size_t len = strlen(line);
    if (len > 0 && line[len - 1] == '\r')
        line[--len] = '\0';
    const char *start = line + strspn(line, " \t");
    if (*start == '\0' || *start == '#')
        return;

    char reply[1024];
    kafka_mock_command(mock, start, reply, sizeof(reply));
    log_debug(LOG_COMPONENT, "command '%s' -> %s", start, reply);
    printf("%s\n", reply);
    fflush(stdout);
}

/* Line assembly over read(2), so poll() and buffering never disagree. */
struct line_reader {
    char buffer[COMMAND_LINE_MAX];
    size_t used;
    bool discarding; /* inside a line that was too long */
};

/* Feed `len` bytes; answers every complete line. */
static void reader_feed(struct kafka_mock *mock, struct line_reader *reader, const char *data,
                        size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c == '\n') {
            if (reader->discarding) {
                reader->discarding = false;
            } else {
                reader->buffer[reader->used] = '\0';
                handle_line(mock, reader->buffer);
            }
            reader->used = 0;
            continue;
        }
        if (reader->discarding)
            continue;
        if (reader->used + 1 >= sizeof(reader->buffer)) {
            printf("error: command longer than %d bytes\n", COMMAND_LINE_MAX - 1);
            fflush(stdout);
            reader->discarding = true;
            reader->used = 0;
            continue;
        }
        reader->buffer[reader->used++] = c;
    }
}

/* At EOF: answer a last line that had no newline. */
static void reader_finish(struct kafka_mock *mock, struct line_reader *reader)
{
    if (!reader->discarding && reader->used > 0) {
        reader->buffer[reader->used] = '\0';
        handle_line(mock, reader->buffer);
    }
    reader->used = 0;
    reader->discarding = false;
}

/* Serve stdin commands until a signal arrives; returns the signal number. */
static int serve(struct kafka_mock *mock)
{
    static struct line_reader reader;
    bool stdin_open = true;

    for (;;) {
        struct pollfd fds[2] = {
            {.fd = signal_pipe[0], .events = POLLIN},
            {.fd = STDIN_FILENO, .events = POLLIN},
        };
        nfds_t nfds = stdin_open ? 2 : 1;
        if (poll(fds, nfds, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error(LOG_COMPONENT, "poll failed: %s", strerror(errno));
            return SIGTERM;
        }
        if (fds[0].revents & POLLIN) {
            unsigned char signo = 0;
            if (read(signal_pipe[0], &signo, 1) == 1)
                return signo;
        }
        if (stdin_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) {
            char chunk[4096];
            ssize_t n = (fds[1].revents & POLLNVAL) ? 0 : read(STDIN_FILENO, chunk, sizeof(chunk));
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (n > 0) {
                reader_feed(mock, &reader, chunk, (size_t)n);
            } else {
                if (n < 0)
                    log_warn(LOG_COMPONENT, "reading stdin failed: %s", strerror(errno));
                reader_finish(mock, &reader);
                stdin_open = false;
                log_info(LOG_COMPONENT, "stdin closed; running until SIGTERM or SIGINT");
            }
        }
    }
}

/* Make sure fds 0..2 are open, so a closed stdin (`<&-`) is never reused by
 * the signal pipe or a broker socket and then read as commands. */
static void ensure_standard_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
            continue;
        int null_fd = open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
        if (null_fd >= 0 && null_fd != fd) {
            dup2(null_fd, fd);
            close(null_fd);
        }
    }
}

int main(int argc, char **argv)
{
    ensure_standard_fds();

    struct options opts;
    int parsed = parse_options(argc, argv, &opts);
    if (parsed != 0) {
        free(opts.topics);
        return parsed == 1 ? 0 : 2;
    }
    log_set_level(opts.log_level);

    char err[512];
    if (setup_signals(err, sizeof(err)) != 0) {
        log_error(LOG_COMPONENT, "%s", err);
        free(opts.topics);
        close_signal_pipe();
        return 1;
    }

    struct kafka_mock *mock = kafka_mock_start(opts.brokers, opts.partitions, err, sizeof(err));
    if (!mock) {
        log_error(LOG_COMPONENT, "%s", err);
        free(opts.topics);
        close_signal_pipe();
        return 1;
    }
    if (create_start_topics(mock, &opts) != 0) {
        kafka_mock_stop(mock);
        free(opts.topics);
        close_signal_pipe();
        return 1;
    }
    free(opts.topics);
    opts.topics = NULL;

    printf("%s\n", kafka_mock_bootstraps(mock));
    fflush(stdout);
    log_info(LOG_COMPONENT, PROGRAM ": %d broker%s at %s, data in memory only", opts.brokers,
             opts.brokers == 1 ? "" : "s", kafka_mock_bootstraps(mock));

    int signo = serve(mock);
    log_info(LOG_COMPONENT, "%s received, stopping", signo == SIGINT ? "SIGINT" : "SIGTERM");
    kafka_mock_stop(mock);
    close_signal_pipe();
    return 0;
}
