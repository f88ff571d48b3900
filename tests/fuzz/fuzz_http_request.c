/* libFuzzer harness: the HTTP server's request parsing, through a real http_server on a
 * private loop made once. Each input is sent on a new loopback connection by a client
 * socket in this same thread: connect (the kernel completes it against the listen
 * backlog), write the input, let the loop run until it stops making progress, then
 * half-close and run the loop until the server has closed the connection. Answers are read
 * and dropped. A server that does not close a connection whose client has gone (within
 * two seconds, while its own timeouts are minutes away) is a hang and stops the run. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "pdstrace/http_server.h"
#include "pdstrace/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

#define QUIET_ROUNDS 4   /* loop iterations without progress before the client half-closes */
#define MAX_ROUNDS   256 /* and at most this many before it does anyway */
#define CLOSE_NS     2000000000ull

static uv_loop_t loop;
static struct http_server *srv;
static int port;
static unsigned handled; /* requests answered, for progress */

/* Touches every accessor (ASan checks the strings) and answers 200, or an error body for
 * paths under /e, with a header echoed back when the request sent one. */
static void handler(struct http_exchange *x, void *arg)
{
    size_t len;
    const char *body = http_exchange_body(x, &len);
    const char *echo = http_exchange_header(x, "X-Echo");
    size_t sum = strlen(http_exchange_method(x)) + strlen(http_exchange_query(x)) +
                 strlen(http_exchange_request_id(x)) + (len > 0 ? (unsigned char)body[len - 1] : 0);

    (void)arg;
    handled++;
    if (echo != NULL)
        (void)http_exchange_add_header(x, "X-Echo", echo);
    if (strncmp(http_exchange_path(x), "/e", 2) == 0) {
        http_exchange_respond_error(x, 400, "invalid_field", "path", "fuzz");
        return;
    }
    http_exchange_respond(x, 200, "text/plain", sum % 2 ? "odd" : "even", sum % 2 ? 3 : 4);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct http_server_config cfg = {
        .host = "127.0.0.1",
        .max_header_bytes = 8192,
        .max_body_bytes = 16384,
        .header_timeout_ms = 60000,
        .body_timeout_ms = 60000,
        .idle_timeout_ms = 60000,
        .max_connections = 16,
        .handler = handler,
    };

    (void)argc;
    (void)argv;
    signal(SIGPIPE, SIG_IGN);
    log_set_level(LOG_LEVEL_ERROR);
    if (uv_loop_init(&loop) != 0 || http_server_new(&srv, &loop, &cfg) != 0)
        abort();
    port = http_server_port(srv);
    return 0;
}

static int client_connect(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct pollfd p;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        abort();
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS)
        abort();
    p = (struct pollfd){.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, 1000) != 1)
        abort();
    return fd;
}

/* Writes what the socket takes now; the rest goes out in later rounds. */
static void client_send(int fd, const uint8_t **d, size_t *n)
{
    while (*n > 0) {
        ssize_t w = send(fd, *d, *n, MSG_NOSIGNAL);
        if (w <= 0) {
            if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                *n = 0; /* the server has closed: the rest would go nowhere */
            return;
        }
        *d += w;
        *n -= (size_t)w;
    }
}

/* Reads and drops what has arrived. Returns the byte count, or -1 once the server has
 * closed its side (EOF or reset). */
static ssize_t client_drain(int fd)
{
    char sink[16384];
    ssize_t total = 0;
    for (;;) {
        ssize_t r = recv(fd, sink, sizeof sink, 0);
        if (r > 0) {
            total += r;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return total;
        return -1;
    }
}

/* Sends the input and runs the loop until nothing happens for a few rounds. Returns false
 * when the server closed the connection on its own. */
static bool exchange(int fd, const uint8_t *d, size_t n)
{
    unsigned quiet = 0;
    for (unsigned round = 0; round < MAX_ROUNDS && quiet < QUIET_ROUNDS; round++) {
        unsigned before = handled;
        size_t left = n;
        client_send(fd, &d, &n);
        uv_run(&loop, UV_RUN_NOWAIT);
        ssize_t got = client_drain(fd);
        if (got < 0)
            return false;
        quiet = (got == 0 && handled == before && left == n) ? quiet + 1 : 0;
    }
    return true;
}

/* Half-closes and runs the loop until the server has closed and forgotten the
 * connection. The EOF goes out even when the server has already shut its side, since it
 * then lingers, reading, until the client's EOF. */
static void finish(int fd, bool open)
{
    uint64_t deadline = uv_hrtime() + CLOSE_NS;
    shutdown(fd, SHUT_WR);
    while (open || http_server_connections(srv) > 0) {
        if (uv_hrtime() > deadline)
            __builtin_trap(); /* the server kept a connection its client had ended */
        uv_run(&loop, UV_RUN_NOWAIT);
        if (open && client_drain(fd) < 0)
            open = false;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    int fd = client_connect();
    finish(fd, exchange(fd, d, n));
    close(fd);
    return 0;
}
